"""What a run leaves behind at its end: final.pt, the learning curve, videos of the greedy
policy, and the policy itself as an MLflow model (optionally registered).

All of it is made from the run's actor as it stands, off the training clock. A model that
cannot be logged or registered at the end of a run (a server that refuses it, a network
that went away) costs the run nothing it has already: the failure is one line, the run
ends FINISHED with its checkpoints, and `python -m ppo_torchrl.export` still works on them.
A file the disk refuses is one line each too, and the run still reports its evaluation.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from tensordict.nn import TensorDictModuleBase

from ppo_torchrl.run.checkpoint import save_checkpoint
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.errors import DiskWriteError
from ppo_torchrl.run.greedy_io import greedy_policy, numpy_policy, sample_observations
from ppo_torchrl.run.results import Progress
from ppo_torchrl.run.video import Video, record_video
from ppo_torchrl.tracking.model import warn_not_logged
from ppo_torchrl.tracking.tracker import Tracker

VIDEO_FOLDER = "videos"


def plot_run(cfg: PPOConfig, progress: Progress, threshold: float | None, run_dir: Path) -> Path:
    from ppo_torchrl.run.plots import plot_learning_curve  # matplotlib: only when drawn

    return plot_learning_curve(
        progress.episode_frames,
        progress.episode_returns,
        [(e.frames, e.mean) for e in progress.eval_points],
        threshold,
        run_dir / "learning_curve.png",
        f"PPO on {cfg.env} (seed {cfg.seed})",
    )


def record_run_video(actor: TensorDictModuleBase, cfg: PPOConfig, run_dir: Path, name: str) -> Video:
    """``videos/<name>.<format>`` in the run folder: the greedy policy, evaluation's seeds."""
    device = next(actor.parameters()).device
    policy = greedy_policy(actor, cfg.env, cfg.env_kwargs).to(device)
    path = run_dir / VIDEO_FOLDER / f"{name}.{cfg.video_format}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return record_video(numpy_policy(policy), cfg.env, cfg.env_kwargs, path, cfg.video_episodes, cfg.seed)


def run_videos(run_dir: Path) -> list[str]:
    folder = run_dir / VIDEO_FOLDER
    return sorted(str(p) for p in folder.iterdir()) if folder.is_dir() else []


def log_policy_model(tracker: Tracker, actor: TensorDictModuleBase, cfg: PPOConfig, checkpoint: Path) -> Any:
    """The greedy policy as the run's MLflow model (a `LoggedPolicy`), or None, with one line
    on stderr, when MLflow would not take it."""
    policy = greedy_policy(copy.deepcopy(actor).cpu(), cfg.env, cfg.env_kwargs)
    observations = sample_observations(cfg.env, cfg.env_kwargs, 5, cfg.seed)
    try:
        return tracker.log_model(policy, observations, cfg.register_model, cfg.model_alias, checkpoint)
    except Exception as err:  # the run's results stand without it; say so and go on
        warn_not_logged(err)
        return None


def finish_run(
    tracker: Tracker,
    cfg: PPOConfig,
    progress: Progress,
    threshold: float | None,
    run_dir: Path,
    actor: TensorDictModuleBase,
    state: dict[str, Any],
) -> tuple[Path | None, Any, list[str]]:
    """The end of a run: ``final.pt`` (``state``), the checkpoints and the learning curve logged
    (the curve drawn only where someone will look at it), the MLflow model. Returns where
    final.pt went (None if nowhere), the logged model (or None) and what could not be written."""
    final, errors = save_final(run_dir, state)
    if final is not None:
        tracker.log_artifact(final, "checkpoints")
    if (run_dir / "best.pt").exists():
        tracker.log_artifact(run_dir / "best.pt", "checkpoints")
    if tracker.run_id is not None or cfg.plot:
        try:
            tracker.log_artifact(plot_run(cfg, progress, threshold, run_dir))
        except OSError as err:
            errors.append(f"learning curve not written: {err}")
    logged = None
    if cfg.log_model and final is not None:
        logged = log_policy_model(tracker, actor, cfg, final)
    return final, logged, errors


def save_final(run_dir: Path, state: dict[str, Any]) -> tuple[Path | None, list[str]]:
    """final.pt in the run folder, else in the temporary folder (said in one line)."""
    try:
        return save_checkpoint(run_dir / "final.pt", state), []
    except DiskWriteError as err:
        elsewhere = Path(tempfile.gettempdir()) / f"ppo_torchrl-{run_dir.name}-final.pt"
        try:
            save_checkpoint(elsewhere, state)
        except DiskWriteError as again:
            return None, [f"{err}; nor {again.path} ({again.reason})"]
        return elsewhere, [f"{err}; wrote it to {elsewhere} instead"]
