"""The run layer's errors, each with a one-line message; torch-free, so that the entry
points can catch them without loading torch first."""

from __future__ import annotations

import sys
from pathlib import Path


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, torn, foreign, or any field off."""


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss)."""


class DiskWriteError(OSError):
    """A file of the run could not be written (a full disk, a read-only or deleted folder)."""

    def __init__(self, path: object, err: OSError) -> None:
        self.path, self.reason = path, err.strerror or type(err).__name__
        super().__init__(err.errno, f"cannot write {path} ({self.reason})")

    def __str__(self) -> str:
        return f"cannot write {self.path} ({self.reason})"


def warn_disk(err: OSError, consequence: str, last_checkpoint: Path | None) -> None:
    """One warning line for a file the disk refused mid-run: what it costs, what is kept."""
    kept = last_checkpoint or "none yet"
    print(f"warning: {err}; {consequence}; last intact checkpoint: {kept}", file=sys.stderr, flush=True)
