"""The run layer's errors, each with a one-line message; torch-free, so that the entry
points can catch them without loading torch first."""

from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, torn, foreign, or any field off."""


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss)."""
