"""What ``python -m ppo_torchrl.track sync RUN_DIR`` does: send what a run's journals still hold.

A run whose tracking server was unreachable at its end leaves the records it could not send
in its folder's ``tracking.jsonl`` (the run said how many, and this command). Every journal
in the folder and below it is synced: an RLHF run's (its stages are in its parent's
journal), a sweep's parent and its trials. Records go in order to the run's own store (or
``uri``, for a server that moved), the true final status last, each noted in
``tracking_sent.json`` as it goes: syncing again sends nothing twice, and a sync cut short
resumes where it stopped. A model record whose policy is not in memory any more is made again
from its checkpoint by ``rebuild``, which the caller supplies.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ppo_torchrl.tracking.journal import JOURNAL, Journal, next_batch, read_sent, sendable
from ppo_torchrl.tracking.send import Rebuild, TrackingError, check_reachable, send_records


def journals_under(folder: Path, uri: str | None = None) -> list[Journal]:
    """The folder's own journal and those below it (a sweep's trials, under its folder),
    deepest first, so that trials are complete before their parent says how the sweep ended.
    Each sends to its run's own store, or to ``uri``."""
    found = sorted({p.parent for p in folder.rglob(JOURNAL)}, key=lambda p: (-len(p.parts), str(p)))
    marks = [(p, read_sent(p)) for p in found]
    return [Journal(p, mark["run_id"], uri or mark["uri"]) for p, mark in marks if mark.get("run_id")]


def sync(journal: Journal, timeout: int, rebuild: Rebuild | None = None) -> int:
    """Send what ``journal`` still holds; 0 when all of it went (or nothing was left), 1 when the
    server did not take it all (one line on stderr)."""
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "2"
    run_id, uri = journal.run_id, journal.uri
    try:
        check_reachable(uri)
    except TrackingError as err:
        print(f"error: {err}; nothing sent", file=sys.stderr)
        return 1
    client = MlflowClient(uri)
    todo = sendable(journal.records, journal.sent)
    if not todo:
        print(f"nothing to send: run {run_id} in {uri} is up to date")
        return 0
    sent = 0
    while todo:
        batch = next_batch(todo)
        try:
            send_records(client, run_id, batch, {}, rebuild)
        except Exception as err:
            first = (str(err).strip().splitlines() or [""])[0][:200]
            print(
                f"error: sent {sent} record(s), then {type(err).__name__}: {first}; run it again",
                file=sys.stderr,
            )
            return 1
        journal.mark_sent(batch[-1]["n"])
        sent += len(batch)
        todo = todo[len(batch) :]
    own = (r for r in reversed(journal.records) if r["op"] == "status" and "run_id" not in r)
    status = next((r["status"] for r in own), None)
    ended = f"; status {status}" if status else " (its journal has no end status: still running, or killed)"
    print(f"sent {sent} record(s) to run {run_id} in {uri}{ended}")
    return 0
