"""Experiment tracking: MLflow at the edge of the trainer, or nothing at all.

The trainer talks to a small `Tracker` interface. `MlflowTracker` implements it with
``MlflowClient`` (explicit run ids, no global active-run state). The store is MLflow's
own choice: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db`` in the working
directory. Metrics wait in memory until the trainer has written a checkpoint covering
them (``flush``); the ones not yet sent travel inside the checkpoint (``state``), so a run
that is killed and resumed logs every step exactly once. Store calls that hit a busy
SQLite file (several runs writing at once) are retried with backoff.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ppo_torchrl.fields import Config

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent first use of one SQLite file is unguarded
    fcntl = None

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
RETRIES = 12
T = TypeVar("T")


class TrackingError(Exception):
    """The tracking store cannot be used; its message is one line."""


class Tracker(Protocol):
    run_id: str | None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def flush(self) -> None: ...
    def log_artifact(self, path: str | Path, folder: str | None = None) -> None: ...
    def state(self) -> dict[str, Any]: ...
    def log_model(self, policy: Any, observations: Any, register_as: str | None, alias: str) -> Any: ...
    def end(self, status: str, flush: bool = True) -> None: ...


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

    def log_model(self, policy: Any, observations: Any, register_as: str | None, alias: str) -> Any:
        return None

    def end(self, status: str, flush: bool = True) -> None:
        pass


def retry_store_call(call: Callable[[], T]) -> T:
    """Run a store call, retrying with jittered exponential backoff while SQLite is busy
    (or while another process is creating the same tables or experiment)."""
    transient = ("database is locked", "database table is locked", "already exists", "unique constraint")
    for attempt in range(RETRIES):
        try:
            return call()
        except Exception as err:
            text = str(err).lower()
            if attempt == RETRIES - 1 or not any(t in text for t in transient):
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


class MlflowTracker:
    """One MLflow run: params at start, metrics per update, artifacts, a true end status.

    ``resume`` (a tracker ``state()`` from a checkpoint) reopens that run instead of
    starting one: it is set RUNNING again and receives the metrics the checkpoint carried.
    ``attach_run_id`` logs into a run someone else created (a sweep creates each trial's run
    under its own, so that a trial that dies before it gets this far is still recorded).
    """

    def __init__(
        self,
        cfg: Config,
        run_name: str | None = None,
        resume: dict[str, Any] | None = None,
        parent_run_id: str | None = None,
        params: dict[str, Any] | None = None,
        attach_run_id: str | None = None,
    ) -> None:
        import mlflow
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.uri = mlflow.get_tracking_uri()
        _check_reachable(self.uri)
        with _sqlite_init_lock(self.uri):  # opening the store creates or migrates its tables
            self.client = MlflowClient(self.uri)
        self._buffer: list[Any] = []
        self._ended = False
        self._system_metrics: Any = None
        if resume and resume.get("run_id") and self._reopen(resume):
            self._start_system_metrics(cfg, resumed=True)
            return
        self.run_id: str | None = attach_run_id
        if attach_run_id:  # a run made for us (a sweep's trial): it must exist in this store
            from mlflow.exceptions import MlflowException

            try:
                retry_store_call(lambda: self.client.update_run(attach_run_id, status="RUNNING"))
            except MlflowException as err:
                reason = str(err).splitlines()[0]
                raise TrackingError(
                    f"tracking: cannot log to run {attach_run_id} in {self.uri} ({reason})"
                ) from None
        else:
            experiment_id = retry_store_call(lambda: self._experiment_id(cfg.experiment))
            tags = {"ppo_torchrl.resumed_from": resume["run_id"]} if resume and resume.get("run_id") else {}
            if parent_run_id:
                tags["mlflow.parentRunId"] = parent_run_id  # shows as a nested run in the MLflow UI
            run = retry_store_call(
                lambda: self.client.create_run(experiment_id, run_name=run_name, tags=tags or None)
            )
            self.run_id = run.info.run_id
        values = cfg.to_dict() if params is None else params
        batch = [Param(k, str(v)) for k, v in values.items()]
        retry_store_call(lambda: self.client.log_batch(self.run_id, params=batch, synchronous=True))
        retry_store_call(lambda: self.client.log_dict(self.run_id, values, "config.yaml"))
        self._start_system_metrics(cfg, resumed=False)

    def _start_system_metrics(self, cfg: Config, resumed: bool) -> None:
        if getattr(cfg, "system_metrics", False):
            from ppo_torchrl.run.system_metrics import SystemMetrics

            interval = cfg.system_metrics_interval  # type: ignore[attr-defined]
            self._system_metrics = SystemMetrics(self.run_id, self.uri, interval, resume=resumed)

    def _experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment is not None else self.client.create_experiment(name)

    def _reopen(self, resume: dict[str, Any]) -> bool:
        """Continue the checkpoint's run if this store has it; False if it does not."""
        from mlflow.entities import Metric
        from mlflow.exceptions import MlflowException

        try:
            retry_store_call(lambda: self.client.get_run(resume["run_id"]))
        except MlflowException:
            return False  # another store: a new run, tagged with the one it continues
        self.run_id = resume["run_id"]
        retry_store_call(lambda: self.client.update_run(self.run_id, status="RUNNING"))
        # Re-sending identical metrics (same timestamp) is a no-op in MLflow, so metrics
        # that were already flushed before the interruption are not duplicated.
        self._buffer = [Metric(*m) for m in resume.get("pending", [])]
        self.flush()
        return True

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, step) for k, v in metrics.items()]

    def flush(self) -> None:
        while self._buffer:  # MLflow takes at most 1000 metrics per batch
            chunk = self._buffer[:1000]
            retry_store_call(
                lambda chunk=chunk: self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)
            )
            self._buffer = self._buffer[1000:]

    def state(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "uri": self.uri,
            "pending": [(m.key, m.value, m.timestamp, m.step) for m in self._buffer],
        }

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        retry_store_call(lambda: self.client.log_artifact(self.run_id, str(path), folder))

    def log_model(self, policy: Any, observations: Any, register_as: str | None, alias: str) -> Any:
        """Log the greedy policy as this run's MLflow model (mlflow_model.py); registered too
        when ``register_as`` names a registered model."""
        from ppo_torchrl.run.mlflow_model import log_policy

        return log_policy(self.client, self.run_id, policy, observations, register_as, alias)

    def end(self, status: str, flush: bool = True) -> None:
        if self._ended:
            return
        assert status in RUN_STATUSES, status
        try:
            if self._system_metrics is not None:  # before the status: it stops at a run not RUNNING
                self._system_metrics.finish()
            if flush:
                self.flush()
        finally:
            retry_store_call(lambda: self.client.set_terminated(self.run_id, status=status))
            self._ended = True


@contextmanager
def _sqlite_init_lock(uri: str) -> Iterator[None]:
    """Serialize MLflow's table creation and migrations between processes sharing one SQLite
    file: run concurrently, they corrupt each other's alembic bookkeeping. Other stores are
    servers or databases that handle their own concurrency."""
    if not uri.startswith("sqlite:///") or fcntl is None:
        yield
        return
    folder = Path(uri.removeprefix("sqlite:///")).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


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


def make_tracker(cfg: Config, run_name: str | None = None, resume: dict[str, Any] | None = None) -> Tracker:
    """The run's tracker. ``MLFLOW_RUN_ID`` (MLflow's own convention, set by a sweep for each
    trial) names an existing run to log into instead of a new one."""
    if not cfg.track:
        return NullTracker()
    attach = None if resume and resume.get("run_id") else os.environ.get("MLFLOW_RUN_ID") or None
    return MlflowTracker(cfg, run_name, resume, attach_run_id=attach)
