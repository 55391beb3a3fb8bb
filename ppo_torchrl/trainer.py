"""The training loop: collect a batch, update PPO, log, evaluate, repeat.

    for batch in Collector(env, policy):         # num_envs x rollout_steps frames
        metrics = ppo_update(batch)              # GAE, then epochs of clipped-loss steps
        tracker.log_metrics(metrics, step=frames)
        if it is time: evaluate greedily; stop if solved

`train(cfg)` wires the factories together and returns a `TrainResult`. Evaluation time is
kept off the training clock, so ``train_seconds`` measures learning alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchrl.collectors import Collector

from ppo_torchrl.checkpoint import save_checkpoint
from ppo_torchrl.config import PPOConfig
from ppo_torchrl.envs import make_env, solved_threshold
from ppo_torchrl.episodes import EpisodeReturns
from ppo_torchrl.evaluate import EvalResult, evaluate_policy
from ppo_torchrl.explain import last_update_stats
from ppo_torchrl.models import make_actor_critic
from ppo_torchrl.objectives import make_advantage, make_loss
from ppo_torchrl.progress import QuietReporter
from ppo_torchrl.tracking import NullTracker, Tracker, plot_learning_curve
from ppo_torchrl.update import PPOUpdate, make_optimizer


@dataclass
class TrainResult:
    final_eval_mean: float
    final_eval_std: float
    eval_episodes: int
    frames: int
    episodes: int
    updates: int
    train_seconds: float
    eval_seconds: float
    solved: bool
    solved_at_frames: int | None
    run_id: str | None
    checkpoint: str | None
    last_update: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        keys = (
            "final_eval_mean",
            "final_eval_std",
            "frames",
            "train_seconds",
            "solved",
            "solved_at_frames",
            "run_id",
        )
        return {k: v for k, v in asdict(self).items() if k in keys}


@dataclass
class _Counters:
    frames: int = 0
    episodes: int = 0
    updates: int = 0
    episode_frames: list[int] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    eval_points: list[tuple[int, float]] = field(default_factory=list)


class _Stopwatch:
    """Wall time with pauses, so evaluation can be kept off the training clock."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self._since: float | None = time.perf_counter()

    def stop(self) -> float:
        if self._since is not None:
            self.elapsed += time.perf_counter() - self._since
            self._since = None
        return self.elapsed

    @contextmanager
    def paused(self) -> Iterator[None]:
        running = self._since is not None
        self.stop()
        try:
            yield
        finally:
            if running:
                self._since = time.perf_counter()

    def seconds(self) -> float:
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.elapsed + running


def train(
    cfg: PPOConfig,
    tracker: Tracker | None = None,
    reporter: QuietReporter | None = None,
    run_dir: str | Path | None = None,
) -> TrainResult:
    tracker = tracker or NullTracker()
    reporter = reporter or QuietReporter()
    torch.manual_seed(cfg.seed)
    threshold = solved_threshold(cfg)
    env = make_env(cfg)
    actor, critic = make_actor_critic(cfg, env)
    loss_module = make_loss(cfg, actor, critic)
    optimizer = make_optimizer(loss_module, cfg.lr)
    ppo_update = PPOUpdate(
        loss_module=loss_module,
        optimizer=optimizer,
        advantage_module=make_advantage(cfg, critic),
        epochs=cfg.epochs,
        minibatch_size=cfg.minibatch_size,
        max_grad_norm=cfg.max_grad_norm,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    collector = Collector(
        env,
        actor,
        frames_per_batch=cfg.frames_per_batch,
        total_frames=-1,  # the loop below enforces the frame and episode budgets
        auto_register_policy_transforms=False,
        track_traj_ids=False,  # unused here, and ~10% of collection time
    )
    run_dir = Path(run_dir or Path(cfg.checkpoint_dir) / (tracker.run_id or _stamp(cfg)))
    c = _Counters()
    solved_at: int | None = None
    last_eval: EvalResult | None = None
    next_eval, next_checkpoint = cfg.eval_every_frames, cfg.checkpoint_every_frames
    batch = None
    metrics: dict[str, float] = {}

    def checkpoint(name: str) -> Path:
        return save_checkpoint(
            run_dir / name,
            {
                "config": cfg.to_dict(),
                "actor": actor.state_dict(),
                "critic": critic.state_dict(),
                "optimizer": optimizer.state_dict(),
                "counters": {"frames": c.frames, "episodes": c.episodes, "updates": c.updates},
            },
        )

    def evaluate() -> EvalResult:
        nonlocal eval_seconds
        with clock.paused():
            started = time.perf_counter()
            result = evaluate_policy(actor, cfg.env, cfg.eval_episodes, cfg.seed)
            eval_seconds += time.perf_counter() - started
        c.eval_points.append((c.frames, result.mean))
        tracker.log_metrics({"eval_return": result.mean}, step=c.frames)
        return result

    episode_returns = EpisodeReturns()
    reporter.start(cfg.frames, threshold)
    eval_seconds = 0.0
    clock = _Stopwatch()
    try:
        for batch in collector:
            c.frames += batch.numel()
            returns = episode_returns(batch)
            c.episodes += len(returns)
            c.episode_returns += returns
            c.episode_frames += [c.frames] * len(returns)
            reporter.episodes(returns, solved_at is not None)

            if cfg.anneal_lr:
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * max(0.0, 1.0 - (c.frames - batch.numel()) / cfg.frames)
            if cfg.reward_scale != 1.0:
                batch["next", "reward"] = batch["next", "reward"] * cfg.reward_scale
            metrics = ppo_update(batch)
            c.updates += 1
            fps = c.frames / max(clock.seconds(), 1e-9)
            metrics.update(lr=optimizer.param_groups[0]["lr"], frames_per_second=fps)
            if returns:
                metrics["episode_return"] = sum(returns) / len(returns)
            tracker.log_metrics(metrics, step=c.frames)
            reporter.update(c.frames, fps)

            if threshold is not None and cfg.eval_every_frames and c.frames >= next_eval:
                next_eval += cfg.eval_every_frames
                last_eval = evaluate()
                if last_eval.mean >= threshold and solved_at is None:
                    solved_at = c.frames
                reporter.evaluation(c.frames, last_eval, solved_at is not None)
                if solved_at is not None and cfg.stop_when_solved:
                    break
            if c.frames >= cfg.frames or (cfg.episodes and c.episodes >= cfg.episodes):
                break
            if cfg.checkpoint_every_frames and c.frames >= next_checkpoint:
                next_checkpoint += cfg.checkpoint_every_frames
                checkpoint("last.pt")
    finally:
        collector.shutdown()
    train_seconds = clock.stop()

    if last_eval is None or c.eval_points[-1][0] != c.frames:
        last_eval = evaluate()
        if threshold is not None and last_eval.mean >= threshold and solved_at is None:
            solved_at = c.frames
    final = checkpoint("final.pt")
    curve = plot_learning_curve(
        c.episode_frames,
        c.episode_returns,
        c.eval_points,
        threshold,
        run_dir / "learning_curve.png",
        f"PPO on {cfg.env} (seed {cfg.seed})",
    )
    tracker.log_artifact(final, "checkpoints")
    tracker.log_artifact(curve)
    result = TrainResult(
        final_eval_mean=last_eval.mean,
        final_eval_std=last_eval.std,
        eval_episodes=len(last_eval.returns),
        frames=c.frames,
        episodes=c.episodes,
        updates=c.updates,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        solved=solved_at is not None,
        solved_at_frames=solved_at,
        run_id=tracker.run_id,
        checkpoint=str(final),
        last_update=last_update_stats(actor, batch, cfg, metrics) if metrics else {},
    )
    reporter.finish(result)
    return result


def _stamp(cfg: PPOConfig) -> str:
    return f"{cfg.env}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
