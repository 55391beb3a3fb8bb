"""What a run counts and what it returns, as plain data: `Progress` (saved whole in every
checkpoint) and `TrainResult`. Their own module, so that the trainer, the reporters, the
explain walkthrough and the checkpoint schema can all read them without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Progress:
    """Counters and history of a run: all plain data, saved whole in checkpoints."""

    frames: int = 0
    episodes: int = 0
    updates: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    solved_at: int | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    episode_frames: list[int] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    eval_points: list[tuple[int, float, float, int]] = field(default_factory=list)  # frames, mean, std, n


@dataclass
class TrainResult:
    final_eval_mean: float
    final_eval_std: float
    eval_episodes: int
    frames: int
    episodes: int
    updates: int
    train_seconds: float
    eval_seconds: float
    solved: bool
    solved_at_frames: int | None
    run_id: str | None
    checkpoint: str | None
    interrupted: bool = False
    last_update: dict[str, float] = field(default_factory=dict)  # the last update's metrics

    def summary(self) -> dict[str, Any]:
        keys = (
            "final_eval_mean",
            "final_eval_std",
            "frames",
            "train_seconds",
            "solved",
            "solved_at_frames",
            "run_id",
        )
        return {k: v for k, v in asdict(self).items() if k in keys}
