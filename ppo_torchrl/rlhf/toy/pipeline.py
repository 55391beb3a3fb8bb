"""The toy RLHF pipeline: SFT -> reward model -> PPO (or GRPO), tracked as nested MLflow runs.

Data come from code (`task.py`); held-out prompts are drawn first and kept out of every
training set. Results: the true-rule score (0-100) of the SFT reference (S0) and of the
RL policy on the held-out prompts, the mean KL(pi || pi_ref), the reward model's held-out
pair accuracy, sample completions before and after RL, a plot of true score and KL
against updates, and the final policy saved with ``save_pretrained`` (loadable again with
``--model-path``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ppo_torchrl.device import resolve_device
from ppo_torchrl.fields import ConfigError
from ppo_torchrl.rlhf.common import finish_summary, open_run, plot_score_and_kl, tracked
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.toy.lm import load_models, reward_model_from
from ppo_torchrl.rlhf.toy.reward import pair_accuracy, train_reward_model
from ppo_torchrl.rlhf.toy.sft import train_sft
from ppo_torchrl.rlhf.toy.stage import RLStage
from ppo_torchrl.rlhf.toy.task import Example, best_constant_score, make_examples, preference_pairs
from ppo_torchrl.tracking.child import ChildTracker, child_run
from ppo_torchrl.tracking.mlflow_run import MlflowTracker
from ppo_torchrl.tracking.tracker import NullTracker, Tracker

Training = Callable[[int], list[Example]]  # n -> n fresh training prompts, none held out
Log = Callable[[dict[str, float], int], None]

# The config fields each stage's nested run records, by name prefix.
STAGE_PARAMS = {
    "sft": ("sft_",),
    "reward_model": ("rm_",),
    "rl": (
        "rl_",
        "prompts_per_update",
        "group_size",
        "max_new_tokens",
        "beta",
        "kl_estimator",
        "gamma",
        "lam",
        "clip_epsilon",
        "entropy_coef",
        "critic_coef",
        "epochs",
        "minibatch_size",
        "max_grad_norm",
        "target_kl",
    ),
}


def stage_trackers(cfg: RLHFConfig, parent: Tracker) -> dict[str, Tracker]:
    """One nested run per stage, made now while the store is known to answer; each is then
    started, logged and ended through the parent's journal (tracking/child.py)."""
    if not isinstance(parent, MlflowTracker):
        return {name: NullTracker() for name in STAGE_PARAMS}
    out: dict[str, Tracker] = {}
    for name, prefixes in STAGE_PARAMS.items():
        params = {k: v for k, v in cfg.to_dict().items() if k.startswith(prefixes)}
        out[name] = ChildTracker(parent, child_run(parent, name, params))
    return out


def end_unstarted(stages: dict[str, Tracker]) -> None:
    """Stages the pipeline never reached (it failed or was stopped before them) end KILLED,
    tagged so, instead of staying SCHEDULED."""
    for tracker in stages.values():
        if isinstance(tracker, ChildTracker) and not tracker.started:
            tracker.set_tags({"ppo_torchrl.skipped": "the pipeline stopped before this stage"})
            tracker.end("KILLED")


def held_out_split(cfg: RLHFConfig, rng: random.Random) -> tuple[list[Example], Training]:
    """Held-out prompts, and a factory of training prompts that never repeats one of them."""
    held_out = make_examples(cfg.eval_size, rng, cfg.min_digits, cfg.max_digits)
    taken = {e.digits for e in held_out}

    def training(n: int) -> list[Example]:
        out: list[Example] = []
        while len(out) < n:
            out += [
                e
                for e in make_examples(n - len(out), rng, cfg.min_digits, cfg.max_digits)
                if e.digits not in taken
            ]
        return out

    return held_out, training


def run_sft(cfg: RLHFConfig, policy: nn.Module, tokenizer, training: Training, log: Log) -> dict[str, Any]:
    """Stage 1: fine-tune ``policy`` in place on noisy demonstrations; it becomes pi_ref."""
    return train_sft(
        policy,
        tokenizer,
        training(cfg.sft_demos),
        wrong_share=cfg.sft_wrong_share,
        epochs=cfg.sft_epochs,
        batch_size=cfg.sft_batch,
        lr=cfg.sft_lr,
        seed=cfg.seed,
        log=log,
    )


def run_reward_model(
    cfg: RLHFConfig,
    policy: nn.Module,
    tokenizer,
    training: Training,
    held_out: list[Example],
    rng: random.Random,
    log: Log,
) -> tuple[nn.Module, dict[str, Any]]:
    """Stage 2: a reward model initialised from the SFT model, trained on noisy preference
    pairs; its pair accuracy is measured on held-out prompts against the rule itself."""
    pairs = preference_pairs(training(cfg.rm_pairs), rng, cfg.rm_label_noise)
    reward_model = reward_model_from(policy, tokenizer, cfg.seed).to(next(policy.parameters()).device)
    results = train_reward_model(
        reward_model,
        tokenizer,
        pairs,
        epochs=cfg.rm_epochs,
        batch_size=cfg.rm_batch,
        lr=cfg.rm_lr,
        seed=cfg.seed,
        log=log,
    )
    results["rm_heldout_accuracy"] = pair_accuracy(
        reward_model, tokenizer, preference_pairs(held_out, rng, label_noise=0.0)
    )
    return reward_model, results


def run_pipeline(cfg: RLHFConfig, say=print) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    rng = random.Random(cfg.seed)
    held_out, training = held_out_split(cfg, rng)
    try:
        tokenizer, policy = load_models(cfg.model_path, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.seed)
    except (OSError, ValueError) as err:  # what transformers raises for a folder it cannot read
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"model_path: no causal LM and tokenizer in {cfg.model_path}: {reason}") from None
    policy.to(device)
    source = cfg.model_path or f"random-init GPT-2 ({cfg.n_layer} layers, {cfg.n_embd} dims)"
    n_params = sum(p.numel() for p in policy.parameters())
    say(f"models: {source}, {n_params:,} parameters; vocab {len(tokenizer)}; device {device}")
    parent, out_dir = open_run(cfg, f"rlhf-{cfg.algo}")
    stages = stage_trackers(cfg, parent)
    summary: dict[str, Any] = {
        "algo": cfg.algo,
        "model": source,
        "device": str(device),
        "best_constant_score": 100 * best_constant_score(held_out),
    }
    with tracked(parent):
        try:
            _run_stages(cfg, policy, tokenizer, training, held_out, rng, stages, out_dir, summary, say)
        finally:
            end_unstarted(stages)
        policy.save_pretrained(out_dir / "policy")
        tokenizer.save_pretrained(out_dir / "policy")
        finish_summary(parent, out_dir, summary, 0)
    return summary


def _run_stages(
    cfg: RLHFConfig,
    policy: nn.Module,
    tokenizer,
    training: Training,
    held_out: list[Example],
    rng: random.Random,
    stages: dict[str, Tracker],
    out_dir: Path,
    summary: dict[str, Any],
    say: Callable[[str], None],
) -> None:
    """SFT, reward model and RL, each in its own nested run; results go into ``summary``."""
    started = time.perf_counter()
    with tracked(stages["sft"]) as t:
        say(f"[1/3] SFT on {cfg.sft_demos:,} demonstrations, {cfg.sft_wrong_share:.0%} of them wrong")
        summary.update(run_sft(cfg, policy, tokenizer, training, t.log_metrics))
        t.flush()
    with tracked(stages["reward_model"]) as t:
        say(
            f"[2/3] reward model on {cfg.rm_pairs:,} preference pairs, "
            f"{cfg.rm_label_noise:.0%} labels flipped"
        )
        reward_model, results = run_reward_model(
            cfg, policy, tokenizer, training, held_out, rng, t.log_metrics
        )
        summary.update(results)
        t.log_metrics({"rm_heldout_accuracy": summary["rm_heldout_accuracy"]}, 0)
        t.flush()
        say(f"      held-out pair accuracy {summary['rm_heldout_accuracy']:.1%}")
    with tracked(stages["rl"]) as t:
        rl = RLStage(cfg, tokenizer, policy, reward_model)
        before, before_greedy = rl.evaluate(held_out), rl.evaluate(held_out, greedy=True)
        summary.update(S0=before["score"], S0_greedy=before_greedy["score"])
        say(
            f"[3/3] {cfg.algo.upper()}: SFT reference S0 = {before['score']:.1f} "
            f"(greedy {before_greedy['score']:.1f}); {cfg.rl_updates} updates"
        )
        samples_before = rl.samples(held_out[:12])
        history: list[dict[str, float]] = []

        def log(metrics: dict[str, float], step: int) -> None:
            history.append({"update": step, **metrics})
            t.log_metrics(metrics, step)
            if step % 10 == 0 or step == cfg.rl_updates:
                say(
                    f"      update {step}: true score {metrics['true_score']:.1f}, reward model "
                    f"{metrics['reward_model_score']:+.2f}, KL {metrics['kl_to_ref']:.3f}"
                )

        summary.update(rl.train(training(cfg.rl_updates * cfg.prompts_per_update), log))
        after, after_greedy = rl.evaluate(held_out), rl.evaluate(held_out, greedy=True)
        summary.update(
            final_score=after["score"],
            final_score_greedy=after_greedy["score"],
            final_kl_to_ref=after["kl_to_ref"],
            final_response_length=after["response_length"],
        )
        samples_after = rl.samples(held_out[:12])
        t.log_metrics(
            {"heldout_score": after["score"], "heldout_kl_to_ref": after["kl_to_ref"]}, cfg.rl_updates
        )
        _write_artifacts(out_dir, history, samples_before, samples_after, summary, cfg)
        for name in ("curves.png", "samples.txt", "summary.json"):
            t.log_artifact(out_dir / name)
        t.flush()
    summary["total_seconds"] = time.perf_counter() - started


def _write_artifacts(
    out_dir: Path,
    history: list[dict[str, float]],
    before: list[str],
    after: list[str],
    summary: dict[str, Any],
    cfg: RLHFConfig,
) -> None:
    name = cfg.algo.upper()
    plot_score_and_kl(
        out_dir / "curves.png",
        [h["update"] for h in history],
        f"{name} update",
        ("true-rule score (0-100)", [h["true_score"] for h in history]),
        [(summary["S0"], f"SFT reference S0 = {summary['S0']:.1f}", ":")],
        ("KL to the SFT reference (nats per completion)", [h["kl_to_ref"] for h in history]),
    )
    text = ["Before RL (SFT reference):", *before, "", f"After {name}:", *after]
    (out_dir / "samples.txt").write_text("\n".join(text) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
