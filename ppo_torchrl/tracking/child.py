"""A run nested under another (an RLHF stage), logged through its parent's journal and writer.

The parent makes the child run at the start (`child_run`, while the store is known to
answer) and leaves it SCHEDULED; from then on nothing about the child needs the
network: starting it, its metrics, artifacts and end status are journal records addressed to
its run id, sent in order by the parent's one background writer. So a server that goes away
mid-pipeline stalls no stage, and one ``track sync`` of the parent's folder completes them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ppo_torchrl.tracking.mlflow_run import RUN_STATUSES, MlflowTracker
from ppo_torchrl.tracking.send import log_start, retry_store_call


def child_run(
    parent: MlflowTracker, name: str, params: dict[str, Any], tags: dict[str, str] | None = None
) -> str:
    """A run nested under ``parent``'s, made now (while the store is known to answer) and left
    SCHEDULED: a pipeline's stage or a sweep's trial, started later through the journal
    (``ChildTracker``) or by the process that logs into it."""
    client, parent_id = parent.client, parent.run_id
    if parent.experiment_id is None:
        parent.experiment_id = retry_store_call(lambda: client.get_run(parent_id)).info.experiment_id
    experiment_id = parent.experiment_id
    labels = {"mlflow.parentRunId": parent_id, **(tags or {})}  # nested in MLflow's UI
    run = retry_store_call(lambda: client.create_run(experiment_id, run_name=name, tags=labels))
    child = run.info.run_id
    log_start(client, child, params, {})
    retry_store_call(lambda: client.update_run(child, status="SCHEDULED"))
    return child


class ChildTracker:
    def __init__(self, parent: MlflowTracker, run_id: str) -> None:
        if parent.journal is None:
            raise RuntimeError("open the parent tracker (a folder for its journal) before its children")
        self.parent, self.run_id = parent, run_id
        self.started = self.ended = False

    def _append(self, record: dict[str, Any]) -> None:
        self.parent.append({**record, "run_id": self.run_id})

    def start(self) -> None:
        self.started = True
        self._append({"op": "status", "status": "RUNNING"})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.parent.log_metrics(metrics, step, run_id=self.run_id)

    def flush(self) -> None:
        pass  # the parent sends metrics as they come (no checkpoints to wait for)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self._append({"op": "artifact", "path": str(Path(path).resolve()), "folder": folder})

    def state(self) -> dict[str, Any]:
        return {}

    def open(self, folder: Path) -> None:
        pass  # the parent's journal

    def set_tags(self, tags: dict[str, str]) -> None:
        self._append({"op": "tags", "tags": tags})

    def log_model(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a child run logs no model (its pipeline saves the policy)")

    def end(self, status: str, flush: bool = True, wait: float | None = None) -> None:
        """Queue the final status; the parent's end waits for the writer."""
        assert status in RUN_STATUSES, status
        if not self.ended:
            self.ended = True
            self._append({"op": "status", "status": status})
