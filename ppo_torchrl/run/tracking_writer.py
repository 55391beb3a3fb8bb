"""Tracking off the critical path: a local journal in the run folder and one background writer.

Every tracking record of a run — a batch of metrics, an artifact, the model, the end status —
is appended to ``tracking.jsonl`` in the run folder, numbered, before anything is sent. One
thread sends the records to MLflow, in order, and notes in ``tracking_sent.json`` how far it
got; the training loop only appends and moves on. Metrics are *released* for sending when a
checkpoint covers them (a ``release`` record): a run killed and resumed cuts the journal back
to its checkpoint and produces those metrics again, so the store sees each exactly once.
Sending is idempotent where it can be repeated (MLflow ignores a metric it already has with
the same key, step, timestamp and value; an artifact is overwritten; a model already logged
for the run is not logged again), so a record sent twice — a request that timed out but
arrived — changes nothing.

While the server does not answer, the writer says so in one line, keeps the records, and
retries with backoff up to 30 s; when the server is back it says how many it caught up. At the
end of a run the caller waits at most a deadline for the writer to finish; what is left waits
in the journal for ``python -m ppo_torchrl.track sync RUN_DIR``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

JOURNAL = "tracking.jsonl"
SENT = "tracking_sent.json"
MAX_METRICS_PER_BATCH = 1000  # MLflow's own limit per log_batch
MAX_BACKOFF = 30.0


class Journal:
    """The run folder's numbered tracking records (JSON lines), appended by one process."""

    def __init__(self, folder: Path, run_id: str, uri: str) -> None:
        self.folder, self.run_id, self.uri = folder, run_id, uri
        self.path, self.sent_path = folder / JOURNAL, folder / SENT
        self.records = read_journal(folder)
        self.last = self.records[-1]["n"] if self.records else 0
        self.sent = read_sent(folder).get("sent", 0)
        self.disk_error: str | None = None

    def cut_after(self, n: int) -> None:
        """Forget records after ``n`` (those a resumed run produces again). Their numbers are
        given out again, so the sent mark comes back to ``n`` too: what was sent after it (an
        interrupted run's status; never metrics, which wait for a checkpoint) is not wanted."""
        if self.sent > n:
            self.mark_sent(n)
        if self.last <= n:
            return
        self.records = [r for r in self.records if r["n"] <= n]
        self.last = n
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
            os.replace(tmp, self.path)
        except OSError as err:
            self.disk_error = f"cannot write {self.path} ({err.strerror})"

    def append(self, record: dict[str, Any], sync: bool = False) -> dict[str, Any]:
        self.last += 1
        record = {"n": self.last, **record}
        self.records.append(record)  # sent from memory even when the disk refuses it
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
                if sync:  # a release: what the checkpoint covers must be on disk with it
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as err:
            if not self.disk_error:
                self.disk_error = f"cannot write {self.path} ({err.strerror})"
                print(
                    f"warning: tracking journal: {self.disk_error}; records are still sent from "
                    "memory, but what the server does not take before the run ends is lost",
                    file=sys.stderr,
                    flush=True,
                )
        return record

    def mark_sent(self, n: int) -> None:
        self.sent = n
        tmp = self.sent_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"run_id": self.run_id, "uri": self.uri, "sent": n}) + "\n")
            os.replace(tmp, self.sent_path)
        except OSError:
            pass  # a full disk: resent after a restart at worst, which MLflow shrugs off


def read_journal(folder: Path) -> list[dict[str, Any]]:
    path = folder / JOURNAL
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a kill mid-write: nothing after it counts
            break
    return records


def read_sent(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / SENT).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def released(records: list[dict[str, Any]]) -> int:
    return max((r["upto"] for r in records if r["op"] == "release"), default=0)


def sendable(records: list[dict[str, Any]], sent: int) -> list[dict[str, Any]]:
    """Records after ``sent`` that may be sent now, in order: up to the first metrics record
    that no checkpoint covers yet (everything after it waits, so order is kept and the
    ``sent`` mark never skips a record)."""
    upto = released(records)
    out = []
    for r in records:
        if r["n"] <= sent or r["op"] == "release":
            continue
        if r["op"] == "metrics" and r["n"] > upto:
            break
        out.append(r)
    return out


def next_batch(todo: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The next record of ``todo``, or its leading metric records of one run up to MLflow's
    batch limit."""
    if not todo or todo[0]["op"] != "metrics":
        return todo[:1]
    batch, count, run = [], 0, todo[0].get("run_id")
    for record in todo:
        if record["op"] != "metrics" or record.get("run_id") != run:
            break
        if batch and count + len(record["metrics"]) > MAX_METRICS_PER_BATCH:
            break
        batch.append(record)
        count += len(record["metrics"])
    return batch


def short_reason(err: Exception) -> str:
    """What went wrong, in a few words (MLflow's own messages run to several hundred characters)."""
    text = str(err)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("Name or service not known", "unknown host"),
        ("No space left", "no space left on device"),
    ):
        if needle in text:
            return reason
    return f"{type(err).__name__}: {(text.strip().splitlines() or [''])[0][:120]}"


class BackgroundWriter:
    """Sends a journal's records on a thread of its own; ``send(records)`` does one batch."""

    def __init__(self, journal: Journal, send: Callable[[list[dict[str, Any]]], None], name: str) -> None:
        self.journal, self._send, self.name = journal, send, name
        self._cond = threading.Condition()
        self._closing = False
        self.offline_since: float | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="tracking-writer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def waiting(self) -> list[dict[str, Any]]:
        return sendable(list(self.journal.records), self.journal.sent)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every sendable record to be sent; True if they were."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self.waiting():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        """Stop the thread (it finishes at most the request it is in; it is a daemon)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)

    def _loop(self) -> None:
        backoff = 1.0
        while True:
            with self._cond:
                batch = self._next_batch()
                while not batch and not self._closing:
                    self._cond.wait(1.0)
                    batch = self._next_batch()
                if self._closing:
                    return
            try:
                self._send(batch)
            except Exception as err:  # unreachable, timed out, refused: keep the records, retry
                self._offline(err)
                with self._cond:
                    self._cond.wait(backoff)
                    if self._closing:
                        return
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            backoff = 1.0
            self.journal.mark_sent(batch[-1]["n"])
            if self.offline_since is not None:
                waited = time.monotonic() - self.offline_since
                print(
                    f"tracking: {self.name} answers again after {waited:.0f} s; catching up in order",
                    file=sys.stderr,
                    flush=True,
                )
                self.offline_since = None
            with self._cond:
                self._cond.notify_all()

    def _next_batch(self) -> list[dict[str, Any]]:
        return next_batch(self.waiting())

    def _offline(self, err: Exception) -> None:
        self.error = short_reason(err)
        if self.offline_since is None:
            self.offline_since = time.monotonic()
            print(
                f"tracking: {self.name} does not answer ({self.error}); training goes on, records "
                f"wait in {self.journal.path.resolve()} and are sent when it is back",
                file=sys.stderr,
                flush=True,
            )
