"""`python -m ppo_torchrl.rlhf --model-path DIR --prompts FILE --reward FILE.py:FUNC`: RL on a real
LM with the user's task (or ``--task arithmetic``, the example task).

No SFT and no reward model stage here (``python -m ppo_torchrl.rlhf sft`` / ``reward-model``
make those from files): the model given is pi_ref, the task's rewards are the reward.
Steps: read the task (rows, reward functions, a reward model) and check it, load the model
(GGUF or Hugging Face folder), wrap it with LoRA, try every reward on a first small batch,
measure the base model's greedy held-out reward, run PPO or GRPO updates until
``rl_updates`` or ``time_budget``, measure again. One MLflow run holds the config, every
update's metrics (the total reward and each function's, KL and beta, entropy, length, clip
fraction, value loss, seconds and tokens/s per phase), a table of sample responses every
``sample_every`` updates and the held-out answers before and after, the curves and the
trained adapter (loadable with ``peft.PeftModel.from_pretrained``; `load_trained` here).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ppo_torchrl.device import resolve_device
from ppo_torchrl.rlhf.common import finish_summary, open_run, tracked
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.real.checkpoint import NAME, Checkpoints, restore
from ppo_torchrl.rlhf.real.hub import LoRASettings, check_extra, load_lm, locate, with_adapter
from ppo_torchrl.rlhf.real.outputs import sample_table, save_outputs, write
from ppo_torchrl.rlhf.real.rewards import RewardError, reward_model_function
from ppo_torchrl.rlhf.real.stage import TaskRLStage
from ppo_torchrl.rlhf.real.task import Task, check_rewards, load_task
from ppo_torchrl.tracking.tracker import Tracker

PROGRESS_EVERY = 5


def load_policy_model(
    cfg: RLHFConfig, device: torch.device, say: Callable[[str], None] = print, loaded: tuple | None = None
):
    """(tokenizer, policy LM with its adapter, critic LM or None, load seconds). ``loaded``:
    a (tokenizer, LM) already in memory (tests load the real model once per session)."""
    folder, gguf = locate(cfg.model, cfg.model_path, cfg.gguf_file, say)
    check_extra(gguf is not None, cfg.lora_rank > 0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # fp32: CPUs lack fast bf16
    started = time.perf_counter()
    tokenizer, lm = loaded if loaded is not None else load_lm(folder, gguf, dtype)
    lm.to(dtype)
    seconds = time.perf_counter() - started
    n = sum(p.numel() for p in lm.parameters())
    lora = LoRASettings(cfg.lora_rank, cfg.lora_alpha, tuple(cfg.lora_targets.split(",")))
    base_copy = copy.deepcopy(lm) if cfg.algo == "ppo" and cfg.value_model == "copy" else None
    torch.manual_seed(cfg.seed)
    policy = with_adapter(lm, lora, cfg.gradient_checkpointing).to(device)
    critic = with_adapter(base_copy, lora, cfg.gradient_checkpointing).to(device) if base_copy else None
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    say(
        f"model: {folder / (gguf or '')} ({type(lm).__name__}, "
        f"{n:,} parameters, {trainable:,} trainable, {dtype}) loaded in {seconds:.1f} s; "
        f"pad {tokenizer.pad_token!r}, eos {tokenizer.eos_token!r}; device {device}"
    )
    return tokenizer, policy, critic, seconds


def load_trained(cfg: RLHFConfig, adapter_dir: str | Path, device: str = "cpu"):
    """(tokenizer, LM with a saved adapter) — the policy a run wrote to ``<output>/adapter``."""
    from peft import PeftModel

    folder, gguf = locate(cfg.model, cfg.model_path, cfg.gguf_file)
    tokenizer, lm = load_lm(folder, gguf, torch.float32)
    return tokenizer, PeftModel.from_pretrained(lm, str(adapter_dir)).to(device).eval()


def run_task_pipeline(
    cfg: RLHFConfig,
    say: Callable[[str], None] = print,
    loaded: tuple | None = None,
    resume: tuple[dict[str, Any], Path] | None = None,
) -> dict[str, Any]:
    """Train and report. ``resume``: (a checkpoint's state, its file), from `checkpoint.load_state`.
    A signal (KeyboardInterrupt) ends the MLflow run KILLED and leaves the last update's
    checkpoint; a reward that fails mid-run ends it FAILED with the checkpoint kept
    (`RewardError`); files the disk refuses are listed in ``summary["write_errors"]``."""
    device = resolve_device(cfg.device)
    started = time.perf_counter()
    reward_model = reward_model_function(cfg.reward_model, device) if cfg.reward_model else None
    task = load_task(cfg, reward_model)  # files and functions checked before the model loads
    tokenizer, lm, critic_lm, load_seconds = load_policy_model(cfg, device, say, loaded)
    stage = TaskRLStage(cfg, tokenizer, lm, task.rewards, critic_lm)
    stage.pool = task.train
    check_rewards(task, lambda rows: _greedy(stage, rows))  # before any run or folder exists
    folder = (resume[0]["tracking"], resume[1].parent) if resume else None
    tracker, out_dir = open_run(cfg, f"rlhf-{cfg.algo}-{cfg.model or 'local'}", folder, hold_metrics=True)
    checkpoints = Checkpoints(out_dir / NAME, resume[0]["update"] if resume else None)
    summary: dict[str, Any] = {
        "algo": cfg.algo,
        "task": task.name,
        "model": cfg.model or str(cfg.model_path),
        "device": str(device),
        "load_seconds": load_seconds,
        "rewards": {r.name: r.weight for r in task.rewards.rewards},
        "held_out_prompts": len(task.held_out),
        "training_prompts": len(task.train),
        "kl_in": cfg.kl_in,
    }
    history: list[dict] = []
    try:
        with tracked(tracker):
            if resume:
                restore(stage, *resume)
                base, history = resume[0]["base"], resume[0]["history"]
                done = history[-1]["elapsed_seconds"]
                say(f"resumed from {resume[1]} after update {len(history)} ({done:.0f} s of RL)")
            else:
                base = stage.evaluate(task.held_out)
                say(
                    f"base model: held-out greedy {_rewards_line(base)}, {len(task.held_out)} prompts, "
                    f"{base['seconds']:.0f} s"
                )
            _record_eval(summary, "base", base, task)
            _train(cfg, stage, tracker, out_dir, say, history, base, checkpoints)
            elapsed = history[-1]["elapsed_seconds"] if history else 0.0
            errors = [checkpoints.save_final(stage, len(history), elapsed, history, base, tracker)]
            after = stage.evaluate(task.held_out)
            _record_eval(summary, "final", after, task)
            summary.update(
                updates=len(history),
                rl_seconds=sum(h["update_wall_seconds"] for h in history),
                final_kl_to_ref=after["kl_to_ref"],
                final_response_length=after["response_length"],
                eval_reward_gain=after["reward"] - base["reward"],
                final_beta=stage.kl.beta,
                peak_rss_gib=_peak_rss_gib(),
            )
            for phase in ("generate", "score", "update"):
                summary[f"{phase}_tokens_per_second"] = _mean(history, f"{phase}_tokens_per_second")
                summary[f"{phase}_seconds_per_update"] = _mean(history, f"{phase}_seconds")
            if device.type == "cuda":
                summary["peak_cuda_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            errors += save_outputs(
                stage, tokenizer, out_dir, history, summary, task.held_out, base, after, tracker
            )
            summary["total_seconds"] = time.perf_counter() - started
            errors.append(
                write(
                    out_dir / "summary.json", lambda: finish_summary(tracker, out_dir, summary, len(history))
                )
            )
    except KeyboardInterrupt:
        say(f"stopped; checkpoint: {checkpoints.describe()}" + _resume_hint(checkpoints, out_dir))
        raise
    except RewardError as err:  # the user's function failed mid-run: the run ended FAILED
        raise RewardError(
            f"{err} in update {len(history) + 1}; checkpoint: {checkpoints.describe()}"
            + _resume_hint(checkpoints, out_dir).replace("\n", "; ")
        ) from None
    summary.update(run_id=tracker.run_id, output_dir=str(out_dir), checkpoint=checkpoints.describe())
    summary["write_errors"] = [e for e in errors if e]
    return summary


def _resume_hint(checkpoints: Checkpoints, out_dir: Path) -> str:
    return f"\nresume with: python -m ppo_torchrl.rlhf --resume {out_dir}" if checkpoints.update else ""


def _greedy(stage: TaskRLStage, rows: list[dict]) -> tuple[list[str], list[list[int]]]:
    done = stage.generate(rows, greedy=True)
    return done.texts, done.ids


def _rewards_line(result: dict[str, Any]) -> str:
    parts = ", ".join(f"{name} {value:.3g}" for name, value in result["rewards"].items())
    return f"reward {result['reward']:.3f} ({parts})"


def _record_eval(summary: dict[str, Any], when: str, result: dict[str, Any], task: Task) -> None:
    """``{when}_eval_reward`` (the weighted total, greedy, held out) and each function's mean;
    for the arithmetic task also its exact-answer and format rates in percent, as before."""
    summary[f"{when}_eval_reward"] = result["reward"]
    summary[f"{when}_eval_rewards"] = dict(result["rewards"])
    summary[f"{when}_eval_seconds"] = result["seconds"]
    if task.name == "arithmetic":
        summary[f"{when}_exact"] = 100 * result["rewards"]["exact"]
        summary[f"{when}_format"] = 100 * result["rewards"]["bare"]
        if when == "final":
            summary["gain_pp"] = summary["final_exact"] - summary["base_exact"]


def _train(
    cfg: RLHFConfig,
    stage: TaskRLStage,
    tracker: Tracker,
    out_dir: Path,
    say: Callable[[str], None],
    history: list[dict],
    base: dict[str, Any],
    checkpoints: Checkpoints,
) -> None:
    """Updates until ``rl_updates`` or the time budget (counted on from a resumed run's);
    each one's metrics into ``history`` and the tracker, then a checkpoint."""
    budget = cfg.time_budget * 60
    began = time.perf_counter() - (history[-1]["elapsed_seconds"] if history else 0.0)
    say(
        f"{cfg.algo.upper()}: {cfg.prompts_per_update} completions per update, KL in the {cfg.kl_in} "
        f"(beta {cfg.beta:g}"
        + (f", target {cfg.kl_target:g}" if cfg.kl_target else "")
        + f"), LoRA rank {cfg.lora_rank}"
        + (f", {cfg.time_budget:g}-minute budget" if budget else "")
    )
    for update in range(len(history) + 1, cfg.rl_updates + 1):
        elapsed = time.perf_counter() - began
        last = history[-1]["update_wall_seconds"] if history else 0.0
        if budget and elapsed + last > budget:
            say(f"time budget: stopping after {update - 1} updates ({elapsed:.0f} s)")
            break
        t0 = time.perf_counter()
        metrics, done = stage.step(stage.next_batch())
        metrics["update_wall_seconds"] = time.perf_counter() - t0
        metrics["elapsed_seconds"] = time.perf_counter() - began
        history.append({"update": update, **metrics})
        tracker.log_metrics(metrics, update)
        if update % cfg.sample_every == 0 or update == 1:
            sample_table(out_dir, tracker, update, done, stage.last_rewards)
        saving = time.perf_counter()
        checkpoints.save(stage, update, metrics["elapsed_seconds"], history, base, tracker)
        metrics["checkpoint_seconds"] = time.perf_counter() - saving
        if update % PROGRESS_EVERY == 0 or update == 1:
            parts = "".join(
                f", {k.removeprefix('reward/')} {v:.3g}"
                for k, v in metrics.items()
                if k.startswith("reward/")
            )
            say(
                f"  update {update} ({metrics['elapsed_seconds']:.0f} s): "
                f"reward {metrics['reward']:.3f}{parts}, "
                f"KL {metrics['kl_to_ref']:.3f} (beta {metrics['beta']:.3g}), length "
                f"{metrics['response_length']:.1f}; "
                f"generate {metrics['generate_tokens_per_second']:.0f} tok/s, "
                f"update {metrics['update_seconds']:.1f} s, checkpoint {metrics['checkpoint_seconds']:.1f} s"
            )


def _mean(history: list[dict], key: str) -> float:
    values = [h[key] for h in history if key in h]
    return sum(values) / len(values) if values else 0.0


def _peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
