"""The console, checkpoint, tracking and summary side of ``train --num-seeds N``.

One MLflow run stands for the whole batch of seeds (``<env>-seeds<first>-<last>``): the
config as params, every evaluation's IQM, minimum and solved count over seeds, each seed's
final greedy return (``eval/final_seed<k>``) and their IQM, the learning curves with a 95%
band, a per-seed table and the checkpoint holding every seed.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.errors import DiskWriteError

EVALS_PER_RUN = 25  # torch-native evaluations over a run at most: the learning curves' points


def eval_every(cfg: PPOConfig) -> int:
    """Frames per seed between evaluations: ``eval_every_frames``, widened so that a long run
    makes at most EVALS_PER_RUN of them (each evaluates every seed; 0: only at the end)."""
    if not cfg.eval_every_frames:
        return 0
    batch = cfg.frames_per_batch
    wanted = max(cfg.eval_every_frames, cfg.frames // EVALS_PER_RUN)
    return max(batch, wanted // batch * batch)


def run_seeds(
    cfg: PPOConfig,
    tracker: Any,
    device: torch.device,
    should_stop: Callable[[], bool],
    summary_json: str | None,
    resume: tuple[dict[str, Any], Path] | None = None,
) -> int:
    """Train, evaluate, checkpoint and report every seed, from the checkpoint ``resume``
    (its state and file) if given; the process's exit status."""
    from ppo_torchrl.run.checkpoint import save_checkpoint
    from ppo_torchrl.run.plots import plot_curves
    from ppo_torchrl.run.seeds_checkpoint import restore, seeds_state
    from ppo_torchrl.run.seeds_trainer import SeedsTrainer
    from ppo_torchrl.run.stats import curve_band, summarize

    trainer = SeedsTrainer(cfg, device)
    if resume is not None:
        restore(trainer, *resume)
    seeds = trainer.seeds
    threshold = cfg.threshold()
    name = f"{cfg.env.split(':')[-1]}-seeds{seeds[0]}-{seeds[-1]}"
    run_dir = Path(cfg.checkpoint_dir) / (tracker.run_id or f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if resume is not None:
        run_dir = resume[1].parent
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker.open(run_dir)
    print(
        f"=== PPO on {cfg.env}, {len(seeds)} seeds in one program ===  seeds {seeds[0]}..{seeds[-1]}, "
        f"{cfg.num_envs} envs x {cfg.rollout_steps} steps per seed, {cfg.frames:,} frames per seed, "
        f"device {device}"
    )
    if tracker.run_id:
        print(f"MLflow run {tracker.run_id} in {tracker.uri}")
    start = trainer.frames // cfg.frames_per_batch
    if resume is not None:
        print(f"resumed from {resume[1]} at {trainer.frames:,} frames per seed")
    trainer.first_iteration = start
    every = eval_every(cfg)
    next_eval, interrupted = (trainer.frames // every + 1) * every if every else 0, False
    for iteration in range(start, trainer.iterations):
        if should_stop():
            interrupted = True
            break
        trainer.iterate(iteration)
        if (every and trainer.frames >= next_eval) or iteration == trainer.iterations - 1:
            next_eval += every
            _report(trainer, tracker, threshold)
    path = run_dir / "final.pt"
    errors: list[str] = []
    for name, kind in (("final.pt", "latest"), ("best.pt", "best")):
        if kind == "best" and (interrupted or not trainer.evals[0]):
            continue
        try:
            save_checkpoint(run_dir / name, seeds_state(trainer, kind, tracker.state()))
        except DiskWriteError as err:
            errors.append(str(err))
    if interrupted:
        tracker.end("KILLED", wait=3.0)
        print(
            f"interrupted at {trainer.frames:,} frames per seed; every seed's state in {path}; "
            f"resume with: python -m ppo_torchrl.train --resume {path}",
            file=sys.stderr,
        )
        return 130
    final, final_std = trainer.final_evaluation()
    result = trainer.result(final, final_std, threshold)
    result.checkpoint = str(path)
    stats = summarize(final)
    per_seed = {f"final_seed{s}": v for s, v in zip(seeds, final, strict=True)}
    tracker.log_metrics(
        {
            **per_seed,
            "final_iqm": stats["iqm"],
            "final_iqm_ci_low": stats["iqm_ci95"][0],
            "final_iqm_ci_high": stats["iqm_ci95"][1],
            "final_mean": stats["mean"],
            "final_min": stats["min"],
        },
        step=trainer.frames,
    )
    tracker.flush()
    curves = [[(p.frames, p.mean) for p in points] for points in trainer.evals]
    band = curve_band(curves)
    (run_dir / "seeds.json").write_text(json.dumps({**result.summary(), "curve_band": band}, indent=2) + "\n")
    (run_dir / "seeds.md").write_text(_table(result, threshold))
    plot = plot_curves({f"{len(seeds)} seeds": curves}, threshold, run_dir / "learning_curves.png", name)
    for artifact in (run_dir / "seeds.json", run_dir / "seeds.md", plot, path, run_dir / "best.pt"):
        if artifact.exists():
            tracker.log_artifact(artifact)
    solved = sum(f >= threshold for f in final) if threshold is not None else 0
    tracker.set_tags(
        {
            "env": cfg.env,
            "algorithm": "PPO",
            "seeds": f"{seeds[0]}..{seeds[-1]}",
            "solved": f"{solved}/{len(seeds)}",
        }
    )
    tracker.end("FINISHED")
    print(_table(result, threshold), end="")
    lo, hi = stats["iqm_ci95"]
    print(
        f"final greedy IQM {stats['iqm']:.1f} [95% CI {lo:.1f}, {hi:.1f}] over {len(seeds)} seeds, "
        f"min {stats['min']:.1f}; {solved}/{len(seeds)} seeds >= {threshold}\n"
        f"Wall time: {trainer.train_seconds:.1f} s training "
        f"({len(seeds) * trainer.frames / trainer.train_seconds:,.0f} frames/s over all seeds), "
        f"+{trainer.eval_seconds:.1f} s evaluation; the first update took "
        f"{trainer.first_iteration_seconds:.1f} s (warm-up{', compilation' if cfg.compile else ''})\n"
        f"Checkpoint (every seed): {path}; each seed at its best evaluation: {run_dir / 'best.pt'}\n"
        f"one seed: python -m ppo_torchrl.evaluate {path} --seed-index K"
    )
    if summary_json:
        Path(summary_json).write_text(json.dumps(result.summary(), indent=2) + "\n")
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    return 3 if errors else 0


def _report(trainer: Any, tracker: Any, threshold: float | None) -> None:
    """Evaluate every seed (torch-native env), print one line and log the spread."""
    from ppo_torchrl.run.stats import iqm

    means = trainer.evaluate().tolist()
    solved = sum(m >= threshold for m in means) if threshold is not None else 0
    episode_mean, _ = trainer.program.take_episodes()
    finite = [r for r in episode_mean.tolist() if not math.isnan(r)]
    fps = len(trainer.seeds) * trainer.frames / max(trainer.train_seconds, 1e-9)
    print(
        f"[{trainer.frames:>9,} frames/seed] greedy IQM {iqm(means):6.1f}  min {min(means):6.1f}  "
        f"solved {solved}/{len(means)}  | train return {sum(finite) / max(len(finite), 1):6.1f}  "
        f"| {fps:,.0f} frames/s"
    )
    metrics = {k: float(v.mean()) for k, v in trainer.last_metrics.items()}
    tracker.log_metrics(
        {**metrics, "eval_return_iqm": iqm(means), "eval_return_min": min(means), "eval_solved_seeds": solved,
         "frames_per_second": fps},
        step=trainer.frames,
    )  # fmt: skip
    tracker.flush()


def _table(result: Any, threshold: float | None) -> str:
    lines = [
        "| seed | final greedy return | stable solve at frames | at train seconds |",
        "|---|---|---|---|",
    ]
    for seed, mean, std, point in zip(
        result.seeds, result.final, result.final_std, result.stable, strict=True
    ):
        at = f"{point.frames:,} | {point.train_seconds:.1f}" if point else "- | -"
        lines.append(f"| {seed} | {mean:.1f} ± {std:.1f} | {at} |")
    return "\n".join(lines) + "\n"
