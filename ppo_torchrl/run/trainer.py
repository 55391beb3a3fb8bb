"""The training loop: collect a batch, update PPO, log, evaluate, repeat.

    while the budget lasts:
        frames, returns, metrics = learner.learn()   # num_envs x rollout_steps frames, GAE,
                                                     # then epochs of clipped-loss steps
        tracker.log_metrics(metrics, step=frames)
        if it is time: evaluate greedily; stop if solved; checkpoint

The learner is one of two routes (learners.py): the many-seeds program with one seed for a
torch-native env (CartPole-v1, Acrobot-v1), TorchRL's Collector and PPOUpdate for the rest;
the loop cannot tell which. `Trainer` owns everything a run needs and everything a checkpoint
must hold to resume it: weights, optimizer, counters, RNG states and the envs' own state.
Between two batches the whole run is in `state_dict()`, so a stop request, a checkpoint and a
resume all happen there. Evaluation time is kept off the training clock: ``train_seconds`` is
learning alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ppo_torchrl.core.update import NonFiniteError
from ppo_torchrl.device import resolve_device
from ppo_torchrl.run.checkpoint import check_weights, save_checkpoint
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.errors import DiskWriteError, TrainingError, warn_disk
from ppo_torchrl.run.evaluation import EvalResult, evaluate_policy
from ppo_torchrl.run.learners import make_learner
from ppo_torchrl.run.outputs import finish_run, record_run_video, run_videos
from ppo_torchrl.run.progress import QuietReporter, Stopwatch
from ppo_torchrl.run.results import EvalPoint, Progress, TrainResult, train_result
from ppo_torchrl.tracking.tracker import NullTracker, Tracker


class Trainer:
    def __init__(
        self,
        cfg: PPOConfig,
        tracker: Tracker | None = None,
        reporter: QuietReporter | None = None,
        run_dir: str | Path | None = None,
        program: bool | None = None,
    ) -> None:
        """``program`` picks the route (learners.py) where a checkpoint fixes it; None: the
        config's own."""
        self.cfg = cfg
        self.tracker: Tracker = tracker or NullTracker()  # may be replaced before `run`
        self.reporter = reporter or QuietReporter()
        self.device = resolve_device(cfg.device)
        if cfg.torch_threads:  # process-wide; HalfCheetah beside another process: 5.9k vs 1.1k frames/s
            torch.set_num_threads(cfg.torch_threads)
        self.threshold = cfg.threshold()
        # Networks, update and (torch-native) envs on cfg.device; which route learns: learners.py.
        self.learner = make_learner(cfg, self.device, program)
        self.actor, self.critic = self.learner.actor, self.learner.critic
        self.progress = Progress(next_eval=cfg.eval_every_frames, next_checkpoint=cfg.checkpoint_every_frames)
        self._run_dir = Path(run_dir) if run_dir else None
        self.last_checkpoint: Path | None = None
        self.write_errors: list[str] = []  # end-of-run files the disk refused
        self.clock = Stopwatch(running=False)

    @property
    def run_dir(self) -> Path:
        """The run's folder: given, else ``checkpoint_dir/<MLflow run id or a time stamp>``."""
        if self._run_dir is None:
            env_name = self.cfg.env.rpartition(":")[2].replace("/", "_")  # module:id names the id
            name = self.tracker.run_id or f"{env_name}-seed{self.cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
            self._run_dir = Path(self.cfg.checkpoint_dir) / name
        return self._run_dir

    # --- checkpoints ------------------------------------------------------------------------
    def state_dict(self, kind: str = "latest") -> dict[str, Any]:
        """Everything needed to continue this run exactly where it stands (between batches);
        ``kind`` "best" marks the snapshot of its best evaluation (not to be resumed)."""
        return {
            "kind": kind,
            "config": self.cfg.to_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "progress": self.progress.to_state(),
            **self.learner.state_dict(),  # optimizer, rng, env, episode_carry, reward_norm, program
            "tracking": self.tracker.state(),
        }

    def load_state_dict(self, state: dict[str, Any], path: str | Path = "") -> None:
        """Continue from a checkpoint `load_checkpoint` has read and checked. Weights that do not
        fit this run's networks raise CheckpointError before anything else is touched."""
        check_weights(state, self.actor, self.critic, path, self.learner.optimizer)
        self.progress = Progress(**state["progress"])
        self.learner.load_state_dict(state)

    def checkpoint(self, name: str) -> Path | None:
        """Write ``name`` in the run folder; None (and one line) if the disk refuses it: the
        run goes on, and the next checkpoint tries again."""
        self.progress.train_seconds = self.clock.seconds()
        try:
            path = save_checkpoint(self.run_dir / name, self.state_dict())
        except DiskWriteError as err:
            warn_disk(err, "training goes on and the next checkpoint retries", self.last_checkpoint)
            return None
        # Metrics reach the store only once the checkpoint that covers them is on disk, so
        # a run killed and resumed logs every step exactly once (checkpoints carry the rest).
        self.tracker.flush()
        self.last_checkpoint = path
        return path

    # --- the loop ----------------------------------------------------------------------------
    def evaluate(self) -> EvalResult:
        """A greedy evaluation, off the training clock; a new best is kept as best.pt."""
        p = self.progress
        with self.clock.paused():  # evaluating, and keeping its best, is not training
            started = time.perf_counter()
            cfg = self.cfg
            result = evaluate_policy(self.actor, cfg.env, cfg.eval_episodes, cfg.seed, cfg.env_kwargs)
            p.eval_points.append(
                EvalPoint(p.frames, self.clock.seconds(), result.mean, result.std, len(result.returns))
            )
            self.tracker.log_metrics(
                {"eval_return": result.mean, "eval_return_std": result.std}, step=p.frames
            )
            if self.threshold is not None and result.mean >= self.threshold and p.solved_at is None:
                p.solved_at = p.frames
            if p.best_mean is None or result.mean > p.best_mean:
                p.best_frames, p.best_mean = p.frames, result.mean
                p.train_seconds = self.clock.seconds()
                try:
                    save_checkpoint(self.run_dir / "best.pt", self.state_dict(kind="best"))
                except DiskWriteError as err:
                    warn_disk(err, "best.pt keeps an earlier evaluation", self.last_checkpoint)
            if cfg.video_every_eval:
                self._video(f"eval-{p.frames:09d}")
            p.eval_seconds += time.perf_counter() - started
        self.reporter.evaluation(p.frames, result, p.solved_at is not None)
        return result

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> TrainResult:
        """Train until a budget is spent or the env is solved; ``should_stop`` is asked after
        every update and, when it answers True, the run checkpoints and returns early."""
        p = self.progress
        self.tracker.open(self.run_dir)  # records go to the run folder's journal from here on
        self.reporter.start(self.cfg.frames, self.threshold, p.episode_returns)
        self.clock = Stopwatch(already=p.train_seconds)
        metrics, interrupted = {}, False
        try:
            while not self.finished():
                metrics = self._learn()
                self._after_update()
                if not self.finished() and should_stop():
                    interrupted = True
                    break
        finally:
            self.learner.shutdown()
        p.train_seconds = self.clock.stop()
        if interrupted:
            kept = self.checkpoint("last.pt") or self.last_checkpoint
            return self._result(metrics, kept, interrupted=True)
        if not p.eval_points or p.eval_points[-1][0] != p.frames:
            self.evaluate()
        if self.cfg.video and not self.cfg.video_every_eval:  # (that one filmed every evaluation)
            self._video("final")
        # last.pt always holds the latest state, so a resume after a kill in the lines below
        # finds the run complete instead of training (and logging) its end again.
        self.checkpoint("last.pt")
        final, logged, errors = finish_run(
            self.tracker, self.cfg, p, self.threshold, self.run_dir, self.actor, self.state_dict()
        )
        self.write_errors += errors
        result = self._result(metrics, final or self.last_checkpoint)
        result.write_errors = list(self.write_errors)
        if logged is not None:
            result.model_uri, result.registered_model = logged.uri, logged.registered
        self.reporter.finish(result)
        return result

    def finished(self) -> bool:
        cfg, p = self.cfg, self.progress
        return (
            p.frames >= cfg.frames
            or bool(cfg.episodes and p.episodes >= cfg.episodes)
            or (p.solved_at is not None and cfg.stop_when_solved)
        )

    @property
    def last_batch(self) -> Any:
        """The batch of the last update, with GAE's advantages (for --explain)."""
        return self.learner.last_batch

    def _learn(self) -> dict[str, float]:
        p = self.progress
        try:
            learned = self.learner.learn(p.frames)
        except NonFiniteError as err:
            kept = self.last_checkpoint or "none written yet"
            raise TrainingError(
                f"update {p.updates + 1} (at {p.frames + self.cfg.frames_per_batch:,} frames): {err}; "
                f"training stopped, last good checkpoint: {kept}"
            ) from None
        p.add_batch(learned.frames, learned.returns)
        self.reporter.episodes(learned.returns, p.solved_at is not None)
        p.updates += 1
        fps = p.frames / max(self.clock.seconds(), 1e-9)
        metrics = {**learned.metrics, "frames_per_second": fps}
        if learned.returns:
            metrics["episode_return"] = sum(learned.returns) / len(learned.returns)
        self.tracker.log_metrics(metrics, step=p.frames)
        self.reporter.update(p.frames, fps)
        return metrics

    def _after_update(self) -> None:
        """Evaluate and checkpoint when due (the end of the run writes its own checkpoint)."""
        cfg, p = self.cfg, self.progress
        if cfg.eval_every_frames and p.frames >= p.next_eval:
            p.next_eval += cfg.eval_every_frames
            self.evaluate()
        if cfg.checkpoint_every_frames and p.frames >= p.next_checkpoint and not self.finished():
            p.next_checkpoint += cfg.checkpoint_every_frames
            self.checkpoint("last.pt")

    def _video(self, name: str) -> None:
        try:
            video = record_run_video(self.actor, self.cfg, self.run_dir, name)
        except OSError as err:
            warn_disk(err, "no video", self.last_checkpoint)
            return
        self.tracker.log_artifact(video.path, "videos")
        self.reporter.video(video)

    def _result(
        self, metrics: dict[str, float], checkpoint: Path | None, interrupted: bool = False
    ) -> TrainResult:
        return train_result(
            self.progress,
            self.threshold,
            stop_when_solved=self.cfg.stop_when_solved,
            interrupted=interrupted,
            last_update=metrics,
            run_id=self.tracker.run_id,
            checkpoint=checkpoint,
            best_checkpoint=self.run_dir / "best.pt",
            videos=run_videos(self.run_dir),
        )


def train(
    cfg: PPOConfig,
    tracker: Tracker | None = None,
    reporter: QuietReporter | None = None,
    run_dir: str | Path | None = None,
) -> TrainResult:
    """Train PPO with ``cfg`` from scratch and return the result."""
    return Trainer(cfg, tracker, reporter, run_dir).run()
