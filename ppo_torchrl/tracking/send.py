"""How tracking records reach MLflow: store calls with retries on a busy SQLite file, the
journal's records as MLflow calls, and bounded HTTP requests.

Shared by the live run's background writer (mlflow_run.py) and ``python -m ppo_torchrl.track
sync`` (sync.py), so a record is sent the same way now or later.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

RETRIES = 12
EXPERIMENT_KIND = "mlflow.experimentKind"
T = TypeVar("T")

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent first use of one SQLite file is unguarded
    fcntl = None


class TrackingError(Exception):
    """The tracking store cannot be used; its message is one line."""


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


# A model record's policy and example observations, made from its checkpoint file: the caller's
# (the run's own code knows its checkpoints; this package does not).
Rebuild = Callable[[str], tuple[Any, Any]]


def send_records(
    client: Any,
    run_id: str,
    batch: list[dict[str, Any]],
    models: dict[int, Any],
    rebuild: Rebuild | None = None,
) -> Any:
    """Send journal records (one kind, one run per batch) to their run: the record's own
    ``run_id`` (a pipeline's stage, a sweep's trial) or else ``run_id``, the journal's. The
    LoggedPolicy for a model: its (policy, observations) from ``models`` (journal number ->
    pair, a live run's) or else ``rebuild(record's checkpoint)``."""
    from mlflow.entities import Metric, Param, RunTag

    op, target = batch[0]["op"], batch[0].get("run_id", run_id)
    if op == "metrics":
        rows = [Metric(*m) for r in batch for m in r["metrics"]]
        retry_store_call(lambda: client.log_batch(target, metrics=rows, synchronous=True))
    elif op == "artifact":
        [r] = batch
        retry_store_call(lambda: client.log_artifact(target, r["path"], r["folder"]))
    elif op == "tags":
        [r] = batch
        labels = [RunTag(k, str(v)) for k, v in r["tags"].items()]
        retry_store_call(lambda: client.log_batch(target, tags=labels, synchronous=True))
    elif op == "status" and batch[0]["status"] == "RUNNING":  # a stage starting
        retry_store_call(lambda: client.update_run(target, status="RUNNING"))
    elif op == "status":
        retry_store_call(lambda: client.set_terminated(target, status=batch[0]["status"]))
    elif op == "attach":  # a run made for this one, joined while its server did not answer
        [r] = batch
        params = [Param(k, str(v)) for k, v in r["params"].items()]
        labels = [RunTag(k, str(v)) for k, v in r["tags"].items()]
        retry_store_call(lambda: client.update_run(target, status="RUNNING"))
        retry_store_call(lambda: client.log_batch(target, params=params, tags=labels, synchronous=True))
        retry_store_call(lambda: client.log_dict(target, r["params"], "config.yaml"))
    elif op == "settle":  # a sweep's trial that may never have ended its run itself
        [r] = batch
        run = retry_store_call(lambda: client.get_run(target))
        if run.info.status in ("RUNNING", "SCHEDULED"):
            if not run.data.params:
                params = [Param(k, str(v)) for k, v in r["params"].items()]
                retry_store_call(lambda: client.log_batch(target, params=params, synchronous=True))
            retry_store_call(lambda: client.set_terminated(target, status=r["status"]))
    elif op == "model":
        [r] = batch
        return _send_model(client, target, r, models.get(r["n"]), rebuild)
    return None


def _send_model(
    client: Any, run_id: str, record: dict[str, Any], prebuilt: Any, rebuild: Rebuild | None
) -> Any:
    """Log the model unless this run already has one (a resend after a timeout that arrived)."""
    from ppo_torchrl.tracking.model import MODEL_NAME, LoggedPolicy, log_policy

    experiment_id = client.get_run(run_id).info.experiment_id
    found = client.search_logged_models(
        experiment_ids=[experiment_id], filter_string=f"name = '{MODEL_NAME}'"
    )
    mine = [m for m in found if m.source_run_id == run_id]
    if mine:
        return LoggedPolicy(f"runs:/{run_id}/{MODEL_NAME}", mine[0].model_id)
    if prebuilt is None:  # `track sync`: the greedy policy made again from the final checkpoint
        if rebuild is None or not record.get("checkpoint"):
            raise RuntimeError("a model record without its policy, and nothing to make it from")
        prebuilt = rebuild(record["checkpoint"])
    policy, observations = prebuilt
    return log_policy(client, run_id, policy, observations, record["register_as"], record["alias"])


def experiment_for(client: Any, name: str) -> str:
    """The experiment's id, made if need be, marked as model training (MLflow 3 opened an
    experiment without the mark in its GenAI view; 3.17's UI follows its own switch, see
    docs/tracking.md)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, tags={EXPERIMENT_KIND: "custom_model_development"})
    if EXPERIMENT_KIND not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, "custom_model_development")
    return experiment.experiment_id


def log_start(client: Any, run_id: str, params: dict[str, Any], tags: dict[str, str]) -> None:
    """A new run's params and tags in one batch, and its params as ``config.yaml``."""
    from mlflow.entities import Param, RunTag

    batch = [Param(k, str(v)) for k, v in params.items()]
    labels = [RunTag(k, v) for k, v in tags.items()]
    retry_store_call(lambda: client.log_batch(run_id, params=batch, tags=labels, synchronous=True))
    if params:
        retry_store_call(lambda: client.log_dict(run_id, params, "config.yaml"))


def set_http_limits(timeout: int, retries: int) -> None:
    """Bound every MLflow HTTP request (its defaults: 120 s timeout, 7 retries with backoff,
    minutes per failing call), for this process."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(timeout))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(int(retries))
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"


@contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
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


def check_reachable(uri: str) -> None:
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
