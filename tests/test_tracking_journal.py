"""The journal's rule for a stopped run: keep what the last checkpoint released, drop the rest,
and still send the end status (found by the RLHF stages' SIGTERM tests, 2026-12-07)."""

from __future__ import annotations

from pathlib import Path

from ppo_torchrl.tracking.journal import Journal, last_release, released, sendable


def journal_with_unreleased_tail(folder: Path) -> Journal:
    journal = Journal(folder, "run", "sqlite:///unused.db")
    journal.append({"op": "metrics", "metrics": []})  # 1
    journal.append({"op": "release", "upto": 1})  # 2
    journal.append({"op": "metrics", "metrics": []})  # 3
    journal.append({"op": "release", "upto": 3})  # 4: the last checkpoint covers 1..3
    journal.append({"op": "metrics", "metrics": []})  # 5: after it, produced again on resume
    return journal


def test_a_stop_keeps_the_last_release_so_the_status_goes_out(tmp_path: Path) -> None:
    journal = journal_with_unreleased_tail(tmp_path)
    journal.cut_after(last_release(journal.records))
    journal.append({"op": "status", "status": "KILLED"})
    assert [r["n"] for r in sendable(journal.records, sent=0)] == [
        1,
        3,
        5,
    ]  # the status takes the freed number
    assert sendable(journal.records, sent=0)[-1]["status"] == "KILLED"


def test_cutting_at_the_release_upto_would_strand_the_status(tmp_path: Path) -> None:
    """What the stop did before: the last release goes with the cut, metrics 3 is no longer
    released, and everything after it (the status) waits for ever."""
    journal = journal_with_unreleased_tail(tmp_path)
    journal.cut_after(released(journal.records))
    journal.append({"op": "status", "status": "KILLED"})
    assert [r["n"] for r in sendable(journal.records, sent=0)] == [1]
