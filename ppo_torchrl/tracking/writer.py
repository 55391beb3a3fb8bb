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

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ppo_torchrl.tracking.journal import Journal, next_batch, sendable

MAX_BACKOFF = 30.0


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

    def say_what_is_left(self, run_id: str) -> None:
        """One line when a run ends with records unsent: how many, why, and the command that
        sends them."""
        left, folder = len(self.waiting()), self.journal.folder.resolve()
        print(
            f"tracking: {left} record(s) of run {run_id} not sent "
            f"({self.error or 'the end-of-run deadline passed'}); they wait in "
            f"{self.journal.path.resolve()}: python -m ppo_torchrl.track sync {folder}",
            file=sys.stderr,
            flush=True,
        )

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
