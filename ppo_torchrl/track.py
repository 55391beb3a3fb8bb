"""`python -m ppo_torchrl.track sync RUN_DIR`: send what a run's journal still holds.

A run whose tracking server was unreachable at its end leaves the records it could not send
in its folder's ``tracking.jsonl`` (the run said how many, and this command). Every journal
in the folder and below it is synced: an RLHF run's (its stages are in its parent's
journal), a sweep's parent and its trials. ``sync`` sends
them in order to the run's own store (``--uri`` for a server that moved), the true final
status last, and notes each in ``tracking_sent.json`` as it goes: running it again sends
nothing twice, and a sync cut short resumes where it stopped.

Exit status: 0 everything sent (or nothing left to send); 1 the server did not take it all
(run it again later); 2 bad input (not a run folder with a journal), one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ppo_torchrl.cli import OneLineArgumentParser
from ppo_torchrl.run.tracking_writer import JOURNAL, Journal, read_sent


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m ppo_torchrl.track", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="send the records a run's journal still holds")
    sync.add_argument(
        "run_dir", help="the run's folder (checkpoints/<run id>, an RLHF output folder, a sweep folder)"
    )
    sync.add_argument("--uri", help="the tracking store to send to (default: the one the run used)")
    sync.add_argument(
        "--timeout", type=int, default=10, help="seconds an HTTP request may take (default: 10)"
    )
    args = parser.parse_args(argv)
    folder = Path(args.run_dir)
    # The folder's own journal and those below it (a sweep's trials, under its folder):
    # deepest first, so trials are complete before their parent says how the sweep ended.
    found = sorted({p.parent for p in folder.rglob(JOURNAL)}, key=lambda p: (-len(p.parts), str(p)))
    journals = [(p, mark) for p in found if (mark := read_sent(p)).get("run_id")]
    if not journals:
        print(f"error: {folder}: not a tracked run's folder (no {JOURNAL} with its run id)", file=sys.stderr)
        return 2
    codes = [_sync(Journal(p, mark["run_id"], args.uri or mark["uri"]), args.timeout) for p, mark in journals]
    return max(codes)


def _sync(journal: Journal, timeout: int) -> int:
    import os

    from mlflow.tracking import MlflowClient

    from ppo_torchrl.run.tracking_send import TrackingError, check_reachable, send_records
    from ppo_torchrl.run.tracking_writer import next_batch, sendable

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
            send_records(client, run_id, batch, {})
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


if __name__ == "__main__":
    sys.exit(main())
