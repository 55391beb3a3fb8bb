"""`MlflowTracker`: one MLflow run, through ``MlflowClient`` (explicit run ids, no global
active-run state).

The run is made (or reopened, or joined) at the start, while the store is known to answer;
from `open` on, every record goes to the run folder's journal and one background writer sends
it (writer.py). Metrics wait until the trainer has written a checkpoint covering them
(``flush``), so a run that is killed and resumed logs every step exactly once. Store calls
that hit a busy SQLite file (several runs writing at once) are retried with backoff.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from ppo_torchrl.tracking.journal import Journal, last_release, read_sent
from ppo_torchrl.tracking.names import grouped_name
from ppo_torchrl.tracking.params import TrackingParams
from ppo_torchrl.tracking.send import (
    TrackingError,
    check_reachable,
    experiment_for,
    log_start,
    retry_store_call,
    send_records,
    set_http_limits,
    sqlite_init_lock,
)
from ppo_torchrl.tracking.writer import BackgroundWriter

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")


class MlflowTracker:
    """One MLflow run: params at start, metrics per update, artifacts, a true end status.

    ``resume`` (a tracker ``state()`` from a checkpoint) reopens that run instead of
    starting one: it is set RUNNING again and receives the metrics the checkpoint carried.
    ``attach_run_id`` logs into a run someone else created (a sweep creates each trial's run
    under its own, so that a trial that dies before it gets this far is still recorded).
    """

    def __init__(
        self,
        params: TrackingParams,
        config: dict[str, Any],
        run_name: str | None = None,
        resume: dict[str, Any] | None = None,
        attach_run_id: str | None = None,
        tags_to_set: dict[str, str] | None = None,
        hold_metrics: bool = True,
    ) -> None:
        """``config`` is logged as the run's params (and ``config.yaml``). ``hold_metrics``:
        metrics wait for a checkpoint to cover them (``flush``) before they are sent, the
        trainer's exactly-once rule; runs without checkpoints (RLHF, a sweep's parent) send
        them as they come."""
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = mlflow.get_tracking_uri()
        set_http_limits(params.tracking_timeout, params.tracking_retries)
        try:
            check_reachable(self.uri)
            offline = False
        except TrackingError:
            if not attach_run_id:  # a run of our own cannot be made: say so before training
                raise
            offline = True  # a sweep's trial joining its run during an outage: journal it
        with sqlite_init_lock(self.uri):  # opening the store creates or migrates its tables
            self.client = MlflowClient(self.uri)
        self._buffer: list[Any] = []
        self._early: list[dict[str, Any]] = []  # records made before `open` gave a journal
        self._ended, self._hold = False, hold_metrics
        self.experiment_id: str | None = None  # the run's experiment, once a child run asks
        self._system_metrics: Any = None
        self.journal: Journal | None = None  # from `open`: records go through the writer
        self.writer: BackgroundWriter | None = None
        self._models: dict[int, tuple[Any, Any]] = {}  # journal n -> (policy, observations)
        self.logged_model: Any = None
        self._resume_n = resume.get("journal_n") if resume else None
        self._end_timeout = params.tracking_end_timeout
        if resume and resume.get("run_id") and self._reopen(resume):
            self._start_system_metrics(params, resumed=True)
            return
        values = config
        # Where the run came from, as MLflow's fluent API records it (script, git commit, user),
        # and the caller's tags to filter by.
        from mlflow.tracking.context.registry import resolve_tags

        tags = {k: str(v) for k, v in resolve_tags(tags_to_set or {}).items()}
        self.run_id: str | None = attach_run_id
        if offline:
            self._early.append({"op": "attach", "params": values, "tags": tags})
            print(
                f"tracking: MLflow at {self.uri} does not answer; run {attach_run_id} is kept in the "
                "run folder's journal and sent when it is back (no system metrics for this run)",
                file=sys.stderr,
                flush=True,
            )
            return
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
            experiment_id = retry_store_call(lambda: experiment_for(self.client, params.experiment))
            made = {"ppo_torchrl.resumed_from": resume["run_id"]} if resume and resume.get("run_id") else None
            run = retry_store_call(
                lambda: self.client.create_run(experiment_id, run_name=run_name, tags=made)
            )
            self.run_id = run.info.run_id
        log_start(self.client, self.run_id, values, tags)
        self._start_system_metrics(params, resumed=False)

    def _start_system_metrics(self, params: TrackingParams, resumed: bool) -> None:
        if params.system_metrics:
            from ppo_torchrl.tracking.system_metrics import SystemMetrics

            interval = params.system_metrics_interval
            self._system_metrics = SystemMetrics(self.run_id, self.uri, interval, resume=resumed)

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

    def open(self, folder: Path) -> None:
        """From now on every record goes to ``folder``'s journal and the background writer
        (writer.py); a resumed run cuts the journal back to its checkpoint."""
        with contextlib.suppress(OSError):  # the journal says so at its first record
            folder.mkdir(parents=True, exist_ok=True)
        journal = Journal(folder, self.run_id, self.uri)
        if journal.records and read_sent(folder).get("run_id") not in (None, self.run_id):
            journal.path.rename(folder / f"tracking-{read_sent(folder)['run_id']}.jsonl")  # another run's
            journal.sent_path.unlink(missing_ok=True)
            journal = Journal(folder, self.run_id, self.uri)
        journal.cut_after(self._resume_n if self._resume_n is not None else journal.last)
        if not journal.sent_path.exists():  # names the run and store for `track sync`
            journal.mark_sent(journal.sent)
        for record in self._early:
            journal.append(record)
        self._early = []
        if self._buffer:  # metrics logged before the folder was known
            self._append_metrics(journal, self._buffer)
            self._buffer = []
        self.journal = journal
        self.writer = BackgroundWriter(journal, self._send, f"MLflow at {self.uri}")

    def _append_metrics(self, journal: Journal, metrics: list[Any], run_id: str | None = None) -> None:
        record = {"op": "metrics", "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics]}
        journal.append(record if run_id is None else {**record, "run_id": run_id})
        if not self._hold:
            journal.append({"op": "release", "upto": journal.last})
            if self.writer is not None:
                self.writer.wake()

    def log_metrics(self, metrics: dict[str, float], step: int, run_id: str | None = None) -> None:
        """``run_id``: a child run's (ChildTracker); it needs the journal."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(grouped_name(k), float(v), now, step) for k, v in metrics.items()]
        if self.journal is None:
            self._buffer += rows
        else:
            self._append_metrics(self.journal, rows, run_id)

    def flush(self) -> None:
        """Release what the checkpoint just written covers (without a journal: send it now)."""
        if self.journal is not None:
            self.journal.append({"op": "release", "upto": self.journal.last}, sync=True)
            self.writer.wake()
            return
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
            "journal_n": self.journal.last if self.journal is not None else None,
        }

    def append(self, record: dict[str, Any]) -> None:
        """A journal record for the writer to send (``run_id`` in it: another run's)."""
        self.journal.append(record)
        self.writer.wake()

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.journal is None:
            retry_store_call(lambda: [self.client.set_tag(self.run_id, k, v) for k, v in tags.items()])
            return
        self.journal.append({"op": "tags", "tags": tags})
        self.writer.wake()

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        if self.journal is None:
            retry_store_call(lambda: self.client.log_artifact(self.run_id, str(path), folder))
            return
        self.journal.append({"op": "artifact", "path": str(Path(path).resolve()), "folder": folder})
        self.writer.wake()

    def log_model(
        self,
        policy: Any,
        observations: Any,
        register_as: str | None,
        alias: str,
        checkpoint: Path | None = None,
    ) -> Any:
        """Log the greedy policy as this run's MLflow model (model.py); registered too
        when ``register_as`` names a registered model. With a journal it waits for the writer
        at most the end-of-run deadline: None if the model is still waiting then."""
        from ppo_torchrl.tracking.model import log_policy

        if self.journal is None:
            return log_policy(self.client, self.run_id, policy, observations, register_as, alias)
        record = {"op": "model", "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None}
        record = self.journal.append({**record, "register_as": register_as, "alias": alias})
        self._models[record["n"]] = (policy, observations)
        self.writer.drain(self._end_timeout)
        return self.logged_model

    def _send(self, batch: list[dict[str, Any]]) -> None:
        """The writer's one request (or one model): records are sent as they were journalled.
        A model that cannot be made (not a store that does not answer) is given up, said in
        one line, so the records after it — the final status — still go."""
        from mlflow.exceptions import MlflowException
        from requests import RequestException

        try:
            logged = send_records(self.client, self.run_id, batch, self._models)
        except (MlflowException, RequestException, OSError):
            raise  # the store: the writer keeps the record and retries
        except Exception as err:
            if batch[0]["op"] != "model":
                raise
            from ppo_torchrl.tracking.model import warn_not_logged

            warn_not_logged(err)
            return
        if logged is not None:
            self.logged_model = logged

    def end(self, status: str, flush: bool = True, wait: float | None = None) -> None:
        """Record the run's final status. With a journal: wait at most ``wait`` s (default: the
        end-of-run deadline) for the writer; what is left waits in the journal, said in one line.
        ``flush=False`` (a second signal) drops the metrics no checkpoint covers."""
        if self._ended:
            return
        assert status in RUN_STATUSES, status
        self._ended = True
        wait = self._end_timeout if wait is None else wait
        if self._system_metrics is not None:  # before the status: it stops at a run not RUNNING
            self._system_metrics.finish(timeout=min(wait, 5.0))
        if self.journal is None:
            try:
                if flush:
                    self.flush()
            finally:
                retry_store_call(lambda: self.client.set_terminated(self.run_id, status=status))
            return
        if flush:
            self.flush()
        else:
            self.journal.cut_after(last_release(self.journal.records))
        self.journal.append({"op": "status", "status": status}, sync=True)
        drained = self.writer.drain(wait)
        self.writer.close()
        if not drained:
            self.writer.say_what_is_left(self.run_id)
