"""Experiment tracking: MLflow at the edge of a run, or nothing at all.

A run talks to a small `Tracker` interface: `NullTracker` (``--no-track``) or `MlflowTracker`
(mlflow_run.py), which sends every record through the run folder's journal (journal.py) and a
background writer (writer.py). The store is MLflow's own choice: ``MLFLOW_TRACKING_URI`` if
set, else ``sqlite:///mlflow.db`` in the working directory. This package knows no trainer,
checkpoint or config: its callers hand it `TrackingParams` and what to log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from ppo_torchrl.tracking.mlflow_run import RUN_STATUSES, MlflowTracker
from ppo_torchrl.tracking.params import TrackingParams
from ppo_torchrl.tracking.send import TrackingError, retry_store_call

__all__ = [
    "RUN_STATUSES",
    "MlflowTracker",
    "NullTracker",
    "Tracker",
    "TrackingError",
    "TrackingParams",
    "make_tracker",
    "retry_store_call",
]


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def flush(self) -> None: ...
    def log_artifact(self, path: str | Path, folder: str | None = None) -> None: ...
    def state(self) -> dict[str, Any]: ...
    def open(self, folder: Path) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_model(
        self,
        policy: Any,
        observations: Any,
        register_as: str | None,
        alias: str,
        checkpoint: Path | None = None,
    ) -> Any: ...
    def end(self, status: str, flush: bool = True, wait: float | None = None) -> None: ...


class NullTracker:
    """Tracking switched off (``--no-track``)."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {}

    def open(self, folder: Path) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_model(
        self,
        policy: Any,
        observations: Any,
        register_as: str | None,
        alias: str,
        checkpoint: Path | None = None,
    ) -> Any:
        return None

    def end(self, status: str, flush: bool = True, wait: float | None = None) -> None:
        pass


def make_tracker(
    params: TrackingParams,
    config: dict[str, Any],
    run_name: str | None = None,
    resume: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> Tracker:
    """The run's tracker; ``config`` becomes the run's params. ``MLFLOW_RUN_ID`` (MLflow's own
    convention, set by a sweep for each trial) names an existing run to log into instead."""
    if not params.track:
        return NullTracker()
    attach = None if resume and resume.get("run_id") else os.environ.get("MLFLOW_RUN_ID") or None
    return MlflowTracker(params, config, run_name, resume, attach_run_id=attach, tags_to_set=tags)
