"""Experiment tracking: MLflow at the edge of the trainer, or nothing at all.

The trainer talks to a small `Tracker` interface. `MlflowTracker` implements it with
``MlflowClient`` (explicit run ids, no global active-run state). The store is MLflow's
own choice: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db`` in the working
directory. Metrics are buffered and sent in batches, so tracking stays off the hot path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from ppo_torchrl.config import PPOConfig

FLUSH_SECONDS = 10.0
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")


class TrackingError(Exception):
    """The tracking store cannot be used; its message is one line."""


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifact(self, path: str | Path, folder: str | None = None) -> None: ...
    def end(self, status: str) -> None: ...


class NullTracker:
    """Tracking switched off (``--no-track``)."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        pass

    def end(self, status: str) -> None:
        pass


class MlflowTracker:
    """One MLflow run: params at start, buffered metrics, artifacts, a true end status."""

    def __init__(self, cfg: PPOConfig, run_name: str | None = None) -> None:
        import mlflow
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.uri = mlflow.get_tracking_uri()
        _check_reachable(self.uri)
        self.client = MlflowClient(self.uri)
        experiment = self.client.get_experiment_by_name(cfg.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(cfg.experiment)
        )
        run = self.client.create_run(experiment_id, run_name=run_name)
        self.run_id: str | None = run.info.run_id
        params = [Param(k, str(v)) for k, v in cfg.to_dict().items()]
        self.client.log_batch(self.run_id, params=params, synchronous=True)
        self.client.log_dict(self.run_id, cfg.to_dict(), "config.yaml")
        self._buffer: list[Any] = []
        self._last_flush = time.monotonic()
        self._ended = False

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        # MLflow accepts at most 1000 metrics per batch.
        while self._buffer:
            chunk, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)
        self._last_flush = time.monotonic()

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def end(self, status: str) -> None:
        if self._ended:
            return
        assert status in RUN_STATUSES, status
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status)
            self._ended = True


def _check_reachable(uri: str) -> None:
    """Fail fast, before training, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except requests.RequestException as err:
        raise TrackingError(
            f"tracking: MLflow server at {uri} does not answer ({type(err).__name__}); "
            "start it, fix MLFLOW_TRACKING_URI, or pass --no-track"
        ) from None


def make_tracker(cfg: PPOConfig, run_name: str | None = None) -> Tracker:
    return MlflowTracker(cfg, run_name) if cfg.track else NullTracker()


def plot_learning_curve(
    episode_frames: list[int],
    episode_returns: list[float],
    eval_points: list[tuple[int, float]],
    threshold: float | None,
    path: str | Path,
    title: str,
) -> Path:
    """Training-episode returns (and their running mean) and greedy evaluations vs frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    if episode_returns:
        ax.plot(episode_frames, episode_returns, ".", ms=2, alpha=0.3, label="training episode")
        window = min(20, len(episode_returns))
        smooth = np.convolve(episode_returns, np.ones(window) / window, mode="valid")
        ax.plot(episode_frames[window - 1 :], smooth, label=f"running mean ({window})")
    if eval_points:
        xs, ys = zip(*eval_points, strict=True)
        ax.plot(xs, ys, "o-", label="greedy evaluation")
    if threshold is not None:
        ax.axhline(threshold, ls="--", c="gray", label=f"solved ({threshold:g})")
    ax.set(xlabel="environment frames", ylabel="episode return", title=title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
