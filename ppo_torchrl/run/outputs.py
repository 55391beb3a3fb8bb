"""What a run leaves behind besides its checkpoints: the learning curve, videos of the greedy
policy, and the policy itself as an MLflow model (optionally registered).

All of it is made from the run's actor as it stands, off the training clock. A model that
cannot be logged or registered at the end of a run (a server that refuses it, a network
that went away) costs the run nothing it has already: the failure is one line, the run
ends FINISHED with its checkpoints, and `python -m ppo_torchrl.export` still works on them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tensordict.nn import TensorDictModuleBase

from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.greedy_io import greedy_policy, numpy_policy, sample_observations
from ppo_torchrl.run.mlflow_model import warn_not_logged
from ppo_torchrl.run.results import Progress
from ppo_torchrl.run.tracking import Tracker
from ppo_torchrl.run.video import Video, record_video

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
