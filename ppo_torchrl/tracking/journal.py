"""The run folder's tracking journal: every record numbered, on disk before it is sent.

Each tracking record of a run (a batch of metrics, an artifact, the model, the end status) is
appended to ``tracking.jsonl`` in the run folder; ``tracking_sent.json`` notes how far sending
got. Metrics are *released* for sending when a checkpoint covers them (a ``release`` record): a
run killed and resumed cuts the journal back to its checkpoint and produces those metrics
again, so the store sees each exactly once. The writer (writer.py) and ``track sync``
(sync.py) read what may be sent from here, in order.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

JOURNAL = "tracking.jsonl"
SENT = "tracking_sent.json"
MAX_METRICS_PER_BATCH = 1000  # MLflow's own limit per log_batch


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


def last_release(records: list[dict[str, Any]]) -> int:
    """The number of the last release record itself: what a stopped run keeps. Cutting at
    its ``upto`` instead would drop the release too, and leave the metrics it covered
    unreleased in front of the status record, which then never goes out (the run stays
    RUNNING in the store)."""
    return max((r["n"] for r in records if r["op"] == "release"), default=0)


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
