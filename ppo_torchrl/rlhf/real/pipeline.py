"""`python -m ppo_torchrl.rlhf --model smollm2-135m`: RL on a real LM with a rule reward.

No SFT and no reward model: the instruction-tuned model is pi_ref, the rule is the reward.
Steps: load the model (GGUF or Hugging Face folder), wrap it with LoRA, measure the base
model's greedy exact-answer rate on held-out problems, run PPO or GRPO updates until
``rl_updates`` or ``time_budget``, measure again. One MLflow run holds the config, every
update's metrics (reward, exact and format rates, KL, entropy, length, clip fraction,
value loss, seconds and tokens/s per phase), a table of sample responses every
``sample_every`` updates, the curves and the trained adapter (loadable with
``peft.PeftModel.from_pretrained``; `load_trained` here).
"""

from __future__ import annotations

import copy
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ppo_torchrl.device import resolve_device
from ppo_torchrl.files import DiskWriteError
from ppo_torchrl.rlhf.common import finish_summary, open_run, plot_score_and_kl, tracked
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.real.arithmetic import Problem, split_problems
from ppo_torchrl.rlhf.real.checkpoint import NAME, Checkpoints, restore
from ppo_torchrl.rlhf.real.hub import LoRASettings, check_extra, load_lm, locate, with_adapter
from ppo_torchrl.rlhf.real.stage import Completions, RuleRLStage
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


def run_rule_pipeline(
    cfg: RLHFConfig,
    say: Callable[[str], None] = print,
    loaded: tuple | None = None,
    resume: tuple[dict[str, Any], Path] | None = None,
) -> dict[str, Any]:
    """Train and report. ``resume``: (a checkpoint's state, its file), from `checkpoint.load_state`.
    A signal (KeyboardInterrupt) ends the MLflow run KILLED and leaves the last update's
    checkpoint; files the disk refuses are listed in ``summary["write_errors"]``."""
    device = resolve_device(cfg.device)
    started = time.perf_counter()
    tokenizer, lm, critic_lm, load_seconds = load_policy_model(cfg, device, say, loaded)
    held_out, pool = split_problems(random.Random(cfg.seed), cfg.ops, cfg.max_operand, cfg.eval_prompts)
    folder = (resume[0]["tracking"], resume[1].parent) if resume else None
    tracker, out_dir = open_run(cfg, f"rlhf-{cfg.algo}-{cfg.model or 'local'}", folder, hold_metrics=True)
    checkpoints = Checkpoints(out_dir / NAME, resume[0]["update"] if resume else None)
    summary: dict[str, Any] = {
        "algo": cfg.algo,
        "model": cfg.model or str(cfg.model_path),
        "device": str(device),
        "load_seconds": load_seconds,
        "held_out_problems": len(held_out),
        "training_problems": len(pool),
        "kl_in": cfg.kl_in,
    }
    try:
        with tracked(tracker):
            stage = RuleRLStage(cfg, tokenizer, lm, critic_lm)
            if resume:
                restore(stage, *resume)
                base, history = resume[0]["base"], resume[0]["history"]
                done = history[-1]["elapsed_seconds"]
                say(f"resumed from {resume[1]} after update {len(history)} ({done:.0f} s of RL)")
            else:
                base, history = stage.evaluate(held_out), []
                say(
                    f"base model: held-out greedy exact {base['exact']:.1f}% (format {base['format']:.1f}%), "
                    f"{len(held_out)} problems, {base['seconds']:.0f} s"
                )
            summary.update(
                base_exact=base["exact"], base_format=base["format"], base_eval_seconds=base["seconds"]
            )
            _train(cfg, stage, pool, tracker, out_dir, say, history, base, checkpoints)
            elapsed = history[-1]["elapsed_seconds"] if history else 0.0
            errors = [checkpoints.save_final(stage, len(history), elapsed, history, base, tracker)]
            after = stage.evaluate(held_out)
            summary.update(
                updates=len(history),
                rl_seconds=sum(h["update_wall_seconds"] for h in history),
                final_exact=after["exact"],
                final_format=after["format"],
                final_kl_to_ref=after["kl_to_ref"],
                final_response_length=after["response_length"],
                gain_pp=after["exact"] - base["exact"],
                peak_rss_gib=_peak_rss_gib(),
            )
            for phase in ("generate", "score", "update"):
                summary[f"{phase}_tokens_per_second"] = _mean(history, f"{phase}_tokens_per_second")
                summary[f"{phase}_seconds_per_update"] = _mean(history, f"{phase}_seconds")
            if device.type == "cuda":
                summary["peak_cuda_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            errors += _save(cfg, stage, tokenizer, out_dir, history, summary, held_out, base, after, tracker)
            summary["total_seconds"] = time.perf_counter() - started
            errors.append(
                _write(
                    out_dir / "summary.json", lambda: finish_summary(tracker, out_dir, summary, len(history))
                )
            )
    except KeyboardInterrupt:
        kept = checkpoints.describe()
        say(
            f"stopped; checkpoint: {kept}"
            + (f"\nresume with: python -m ppo_torchrl.rlhf --resume {out_dir}" if checkpoints.update else "")
        )
        raise
    summary.update(run_id=tracker.run_id, output_dir=str(out_dir), checkpoint=checkpoints.describe())
    summary["write_errors"] = [e for e in errors if e]
    return summary


def _train(
    cfg: RLHFConfig,
    stage: RuleRLStage,
    pool: list[Problem],
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
        f"(beta {cfg.beta:g}), LoRA rank {cfg.lora_rank}"
        + (f", {cfg.time_budget:g}-minute budget" if budget else "")
    )
    for update in range(len(history) + 1, cfg.rl_updates + 1):
        elapsed = time.perf_counter() - began
        last = history[-1]["update_wall_seconds"] if history else 0.0
        if budget and elapsed + last > budget:
            say(f"time budget: stopping after {update - 1} updates ({elapsed:.0f} s)")
            break
        t0 = time.perf_counter()
        metrics, done = stage.step(stage.batch_problems(pool, update - 1))
        metrics["update_wall_seconds"] = time.perf_counter() - t0
        metrics["elapsed_seconds"] = time.perf_counter() - began
        history.append({"update": update, **metrics})
        tracker.log_metrics(metrics, update)
        if update % cfg.sample_every == 0 or update == 1:
            _log_table(out_dir, tracker, update, done)
        saving = time.perf_counter()
        checkpoints.save(stage, update, metrics["elapsed_seconds"], history, base, tracker)
        metrics["checkpoint_seconds"] = time.perf_counter() - saving
        if update % PROGRESS_EVERY == 0 or update == 1:
            say(
                f"  update {update} ({metrics['elapsed_seconds']:.0f} s): reward {metrics['reward']:.3f}, "
                f"exact {metrics['exact']:.0f}%, KL {metrics['kl_to_ref']:.3f}, length "
                f"{metrics['response_length']:.1f}; "
                f"generate {metrics['generate_tokens_per_second']:.0f} tok/s, "
                f"update {metrics['update_seconds']:.1f} s, checkpoint {metrics['checkpoint_seconds']:.1f} s"
            )


def _log_table(out_dir: Path, tracker: Tracker, update: int, done: Completions) -> None:
    """Sample prompts and responses in MLflow's table-artifact layout (columns + data)."""
    rows = [
        [p.question, p.answer, text] for p, text in list(zip(done.problems, done.texts, strict=True))[:16]
    ]
    path = out_dir / "tables" / f"samples_update_{update:04d}.json"
    table = json.dumps({"columns": ["prompt", "answer", "response"], "data": rows}, indent=1)
    try:
        path.parent.mkdir(exist_ok=True)
        path.write_text(table)
    except OSError as err:
        print(f"warning: {DiskWriteError(path, err)}; samples of update {update} not kept", file=sys.stderr)
        return
    tracker.log_artifact(path, "tables")


def _write(path: Path, write: Callable[[], object]) -> str | None:
    """Run ``write`` (it writes ``path``): None, or the line that says the disk refused it."""
    try:
        write()
    except Exception as err:  # OSError; safetensors and matplotlib wrap a full disk in their own
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0][:160]
        return f"cannot write {path} ({reason})"
    return None


def _save(
    cfg: RLHFConfig,
    stage: RuleRLStage,
    tokenizer: Any,
    out_dir: Path,
    history: list[dict],
    summary: dict[str, Any],
    held_out: list[Problem],
    base: dict[str, Any],
    after: dict[str, Any],
    tracker: Tracker,
) -> list[str | None]:
    """The trained adapter (and value head), sample answers, history and curves: written and
    logged; what the disk refuses comes back as lines and is not logged."""
    adapter = out_dir / "adapter"

    def save_adapter() -> None:
        stage.lm.save_pretrained(adapter)
        tokenizer.save_pretrained(adapter)
        if cfg.algo == "ppo":
            torch.save(stage.value_head.state_dict(), adapter / "value_head.pt")

    errors = [_write(adapter, save_adapter)]
    if errors[0] is None:
        for path in sorted(adapter.iterdir()):
            tracker.log_artifact(path, "adapter")
    lines = [
        f"{p.question}  [{p.answer}]\n  base: {b!r}\n  trained: {a!r}"
        for p, b, a in list(zip(held_out, base["texts"], after["texts"], strict=True))[:24]
    ]
    files = {
        "samples.txt": lambda path: path.write_text("\n".join(lines) + "\n"),
        "history.json": lambda path: path.write_text(json.dumps(history, indent=1) + "\n"),
        "curves.png": lambda path: _plot(path, history, summary),
    }
    for name, write in files.items():
        path = out_dir / name
        errors.append(_write(path, lambda path=path, write=write: write(path)))
        if errors[-1] is None:
            tracker.log_artifact(path)
    return errors


def _plot(path: Path, history: list[dict], summary: dict) -> None:
    plot_score_and_kl(
        path,
        [h["elapsed_seconds"] / 60 for h in history],
        "minutes of RL",
        ("exact-answer rate, sampled (%)", [h["exact"] for h in history]),
        [
            (summary["base_exact"], f"base, held-out greedy {summary['base_exact']:.1f}%", ":"),
            (summary["final_exact"], f"trained, held-out greedy {summary['final_exact']:.1f}%", "--"),
        ],
        ("KL to the reference (nats per response)", [h["kl_to_ref"] for h in history]),
    )


def _mean(history: list[dict], key: str) -> float:
    values = [h[key] for h in history if key in h]
    return sum(values) / len(values) if values else 0.0


def _peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
