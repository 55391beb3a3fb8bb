"""The training loop: collect a batch, update PPO, log, evaluate, repeat.

    for batch in Collector(env, policy):         # num_envs x rollout_steps frames
        metrics = ppo_update(batch)              # GAE, then epochs of clipped-loss steps
        tracker.log_metrics(metrics, step=frames)
        if it is time: evaluate greedily; stop if solved; checkpoint

`Trainer` owns everything a run needs and everything a checkpoint must hold to resume it:
weights, optimizer, counters, RNG states and the envs' own state. Between two batches the
whole run is in `state_dict()`, so a stop request, a checkpoint and a resume all happen
there. Evaluation time is kept off the training clock: ``train_seconds`` is learning alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchrl.collectors import Collector

from ppo_torchrl.checkpoint import save_checkpoint
from ppo_torchrl.config import PPOConfig
from ppo_torchrl.envs import make_env, restore_env, snapshot_env, solved_threshold
from ppo_torchrl.episodes import EpisodeReturns
from ppo_torchrl.evaluate import EvalResult, evaluate_policy
from ppo_torchrl.explain import last_update_stats
from ppo_torchrl.models import make_actor_critic
from ppo_torchrl.objectives import make_advantage, make_loss
from ppo_torchrl.progress import QuietReporter, Stopwatch
from ppo_torchrl.tracking import NullTracker, Tracker, plot_learning_curve
from ppo_torchrl.update import NonFiniteError, make_update


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss); the message is one line."""


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
    interrupted: bool = False
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
class Progress:
    """Counters and history of a run: all plain data, saved whole in checkpoints."""

    frames: int = 0
    episodes: int = 0
    updates: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    solved_at: int | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    episode_frames: list[int] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    eval_points: list[tuple[int, float, float, int]] = field(default_factory=list)  # frames, mean, std, n


class Trainer:
    def __init__(
        self,
        cfg: PPOConfig,
        tracker: Tracker | None = None,
        reporter: QuietReporter | None = None,
        run_dir: str | Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.tracker = tracker or NullTracker()
        self.reporter = reporter or QuietReporter()
        torch.manual_seed(cfg.seed)
        self.threshold = solved_threshold(cfg)
        self.env = make_env(cfg)
        self.actor, self.critic = make_actor_critic(cfg, self.env)
        self.loss_module = make_loss(cfg, self.actor, self.critic)
        self.ppo_update = make_update(cfg, self.loss_module, make_advantage(cfg, self.critic))
        self.optimizer = self.ppo_update.optimizer
        self.collector = Collector(
            self.env,
            self.actor,
            frames_per_batch=cfg.frames_per_batch,
            total_frames=-1,  # the loop enforces the frame and episode budgets
            auto_register_policy_transforms=False,
            track_traj_ids=False,  # unused here, and ~10% of collection time
        )
        self.episode_returns = EpisodeReturns()
        self.progress = Progress(next_eval=cfg.eval_every_frames, next_checkpoint=cfg.checkpoint_every_frames)
        self.run_dir = Path(run_dir or Path(cfg.checkpoint_dir) / (self.tracker.run_id or _stamp(cfg)))
        self.last_checkpoint: Path | None = None
        self.clock = Stopwatch(running=False)

    # --- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly where it stands (between batches)."""
        return {
            "config": self.cfg.to_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "counters": {
                "frames": self.progress.frames,
                "episodes": self.progress.episodes,
                "updates": self.progress.updates,
            },
            "progress": asdict(self.progress),
            "rng": {"torch": torch.get_rng_state(), "update": self.ppo_update.generator.get_state()},
            "env": snapshot_env(self.env),
            "episode_carry": self.episode_returns.carry,
            "tracking": self.tracker.state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = Progress(**state["progress"])
        self.progress.eval_points = [tuple(p) for p in self.progress.eval_points]
        # Restore the envs through TorchRL's own reset path; where a backend cannot
        # restore its envs, the episodes in flight restart and their partial returns go.
        restored = restore_env(self.env, state["env"])
        self.collector.reset()
        self.episode_returns.carry = state["episode_carry"] if restored else None
        torch.set_rng_state(state["rng"]["torch"])
        self.ppo_update.generator.set_state(state["rng"]["update"])

    def checkpoint(self, name: str) -> Path:
        self.progress.train_seconds = self.clock.seconds()
        path = save_checkpoint(self.run_dir / name, self.state_dict())
        # Metrics reach the store only once the checkpoint that covers them is on disk, so
        # a run killed and resumed logs every step exactly once (checkpoints carry the rest).
        self.tracker.flush()
        self.last_checkpoint = path
        return path

    # --- the loop ----------------------------------------------------------------------------
    def evaluate(self) -> EvalResult:
        p = self.progress
        with self.clock.paused():
            started = time.perf_counter()
            result = evaluate_policy(self.actor, self.cfg.env, self.cfg.eval_episodes, self.cfg.seed)
            p.eval_seconds += time.perf_counter() - started
        p.eval_points.append((p.frames, result.mean, result.std, len(result.returns)))
        self.tracker.log_metrics({"eval_return": result.mean}, step=p.frames)
        if self.threshold is not None and result.mean >= self.threshold and p.solved_at is None:
            p.solved_at = p.frames
        self.reporter.evaluation(p.frames, result, p.solved_at is not None)
        return result

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> TrainResult:
        """Train until a budget is spent or the env is solved; ``should_stop`` is asked after
        every update and, when it answers True, the run checkpoints and returns early."""
        cfg, p = self.cfg, self.progress
        self.reporter.start(cfg.frames, self.threshold, p.episode_returns)
        self.clock = Stopwatch(already=p.train_seconds)
        batch, metrics, interrupted = None, {}, False
        try:
            batches = iter(self.collector)
            while not self.finished():
                batch = next(batches)
                metrics = self._learn(batch)
                self._after_update()
                if not self.finished() and should_stop():
                    interrupted = True
                    break
        finally:
            self.collector.shutdown()
        p.train_seconds = self.clock.stop()
        if interrupted:
            return self._result(None, self.checkpoint("last.pt"), interrupted=True)
        if not p.eval_points or p.eval_points[-1][0] != p.frames:
            self.evaluate()
        # last.pt always holds the latest state, so a resume after a kill in the lines below
        # finds the run complete instead of training (and logging) its end again.
        self.checkpoint("last.pt")
        final = save_checkpoint(self.run_dir / "final.pt", self.state_dict())
        curve = plot_learning_curve(
            p.episode_frames,
            p.episode_returns,
            [e[:2] for e in p.eval_points],
            self.threshold,
            self.run_dir / "learning_curve.png",
            f"PPO on {cfg.env} (seed {cfg.seed})",
        )
        self.tracker.log_artifact(final, "checkpoints")
        self.tracker.log_artifact(curve)
        stats = last_update_stats(self.actor, batch, cfg, metrics) if metrics else {}
        result = self._result(stats, final)
        self.reporter.finish(result)
        return result

    def finished(self) -> bool:
        cfg, p = self.cfg, self.progress
        return (
            p.frames >= cfg.frames
            or bool(cfg.episodes and p.episodes >= cfg.episodes)
            or (p.solved_at is not None and cfg.stop_when_solved)
        )

    def _learn(self, batch: Any) -> dict[str, float]:
        cfg, p = self.cfg, self.progress
        p.frames += batch.numel()
        returns = self.episode_returns(batch)
        p.episodes += len(returns)
        p.episode_returns += returns
        p.episode_frames += [p.frames] * len(returns)
        self.reporter.episodes(returns, p.solved_at is not None)
        if cfg.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr * max(0.0, 1.0 - (p.frames - batch.numel()) / cfg.frames)
        if cfg.reward_scale != 1.0:
            batch["next", "reward"] = batch["next", "reward"] * cfg.reward_scale
        try:
            metrics = self.ppo_update(batch)
        except NonFiniteError as err:
            kept = self.last_checkpoint or "none written yet"
            raise TrainingError(
                f"update {p.updates + 1} (at {p.frames:,} frames): {err}; "
                f"training stopped, last good checkpoint: {kept}"
            ) from None
        p.updates += 1
        fps = p.frames / max(self.clock.seconds(), 1e-9)
        metrics.update(lr=self.optimizer.param_groups[0]["lr"], frames_per_second=fps)
        if returns:
            metrics["episode_return"] = sum(returns) / len(returns)
        self.tracker.log_metrics(metrics, step=p.frames)
        self.reporter.update(p.frames, fps)
        return metrics

    def _after_update(self) -> None:
        """Evaluate and checkpoint when due (the end of the run writes its own checkpoint)."""
        cfg, p = self.cfg, self.progress
        if self.threshold is not None and cfg.eval_every_frames and p.frames >= p.next_eval:
            p.next_eval += cfg.eval_every_frames
            self.evaluate()
        if cfg.checkpoint_every_frames and p.frames >= p.next_checkpoint and not self.finished():
            p.next_checkpoint += cfg.checkpoint_every_frames
            self.checkpoint("last.pt")

    def _result(
        self, stats: dict[str, float] | None, checkpoint: Path, interrupted: bool = False
    ) -> TrainResult:
        p = self.progress
        _, mean, std, n = p.eval_points[-1] if p.eval_points else (p.frames, math.nan, math.nan, 0)
        return TrainResult(
            final_eval_mean=mean,
            final_eval_std=std,
            eval_episodes=n,
            frames=p.frames,
            episodes=p.episodes,
            updates=p.updates,
            train_seconds=p.train_seconds,
            eval_seconds=p.eval_seconds,
            solved=p.solved_at is not None,
            solved_at_frames=p.solved_at,
            run_id=self.tracker.run_id,
            checkpoint=str(checkpoint),
            interrupted=interrupted,
            last_update=stats or {},
        )


def train(
    cfg: PPOConfig,
    tracker: Tracker | None = None,
    reporter: QuietReporter | None = None,
    run_dir: str | Path | None = None,
) -> TrainResult:
    """Train PPO with ``cfg`` from scratch and return the result."""
    return Trainer(cfg, tracker, reporter, run_dir).run()


def _stamp(cfg: PPOConfig) -> str:
    return f"{cfg.env}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
