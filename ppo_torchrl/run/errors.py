"""The run layer's errors, each with a one-line message; torch-free, so that the entry
points can catch them without loading torch first. The file errors live in files.py,
shared with the RLHF pipelines."""

from __future__ import annotations

from ppo_torchrl.files import CheckpointError, DiskWriteError, warn_disk

__all__ = ["CheckpointError", "DiskWriteError", "TrainingError", "warn_disk"]


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss)."""
