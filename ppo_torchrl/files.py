"""Files a run leaves and the disk that may refuse them: atomic writes, one-line errors.

Torch-free and at the bottom of the package, so that the gymnasium trainer (run/) and the
RLHF pipelines (rlhf/) write their checkpoints the same way and the entry points can catch
these errors without loading torch first.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, torn, foreign, or any field off."""


class DiskWriteError(OSError):
    """A file of the run could not be written (a full disk, a read-only or deleted folder)."""

    def __init__(self, path: object, err: OSError) -> None:
        self.path, self.reason = path, err.strerror or type(err).__name__
        super().__init__(err.errno, f"cannot write {path} ({self.reason})")

    def __str__(self) -> str:
        return f"cannot write {self.path} ({self.reason})"


def warn_disk(err: OSError, consequence: str, last_checkpoint: object | None) -> None:
    """One warning line for a file the disk refused mid-run: what it costs, what is kept."""
    kept = last_checkpoint or "none yet"
    print(f"warning: {err}; {consequence}; last intact checkpoint: {kept}", file=sys.stderr, flush=True)


def write_atomically(path: Path, data: bytes | memoryview) -> Path:
    """``data`` to ``path`` through a temporary file in the same folder, fsync and rename: a
    crash, a kill or a full disk leaves the previous file whole. DiskWriteError (one line)
    if the disk refuses."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise DiskWriteError(path, err) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path
