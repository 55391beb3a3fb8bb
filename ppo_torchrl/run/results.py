"""What a run counts and what it returns, as plain data: `Progress` (saved whole in every
checkpoint) and `TrainResult`. Their own module, so that the trainer, the reporters, the
explain walkthrough and the checkpoint schema can all read them without importing each other.

Solved, two ways. *First crossing*: the first greedy evaluation whose mean reaches the
threshold (what ``stop_when_solved`` stops at). *Stable*: the evaluation from which every
later one, up to the end of the budget, stays at or above the threshold — it needs the whole
budget spent, so a run that stopped at its first crossing has none.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple


class EvalPoint(NamedTuple):
    """One greedy evaluation: when (frames, training seconds so far) and how well."""

    frames: int
    train_seconds: float | None  # None only for evaluations read from a format-1 checkpoint
    mean: float
    std: float
    episodes: int


def stable_solve(points: list[EvalPoint], threshold: float | None) -> EvalPoint | None:
    """The first evaluation of the final unbroken run of evaluations >= ``threshold``
    (None if the last evaluation is below it, or there is no threshold)."""
    if threshold is None or not points or points[-1].mean < threshold:
        return None
    start = len(points) - 1
    while start > 0 and points[start - 1].mean >= threshold:
        start -= 1
    return points[start]


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
    best_frames: int | None = None  # the evaluation best.pt holds
    best_mean: float | None = None
    episode_frames: list[int] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    eval_points: list[EvalPoint] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.eval_points = [EvalPoint(*p) for p in self.eval_points]  # rows read back from a checkpoint

    def add_batch(self, frames: int, returns: list[float]) -> None:
        """A collected batch: its frames, and the episodes that ended in it (at its last frame)."""
        self.frames += frames
        self.episodes += len(returns)
        self.episode_returns += returns
        self.episode_frames += [self.frames] * len(returns)

    def to_state(self) -> dict[str, Any]:
        """Plain data for a checkpoint (lists and numbers only: checkpoints load weights-only)."""
        state = asdict(self)
        state["eval_points"] = [list(p) for p in self.eval_points]
        return state


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
    stopped_when_solved: bool = False  # ended at its first crossing, as --stop-when-solved asks
    last_update: dict[str, float] = field(default_factory=dict)  # the last update's metrics
    evals: list[EvalPoint] = field(default_factory=list)
    stable_solved_at_frames: int | None = None  # None: never, or the budget was not spent
    stable_solved_at_seconds: float | None = None
    best_eval_mean: float | None = None
    best_eval_frames: int | None = None
    best_checkpoint: str | None = None
    videos: list[str] = field(default_factory=list)  # the run folder's videos/
    model_uri: str | None = None  # runs:/<run id>/policy, when the run logged its MLflow model
    registered_model: str | None = None  # "NAME version N (alias A)"
    write_errors: list[str] = field(default_factory=list)  # end-of-run files the disk refused

    def summary(self) -> dict[str, Any]:
        """What ``--summary-json`` writes: the outcome, both solved measures, the best
        evaluation and the whole evaluation history."""
        keys = (
            "final_eval_mean",
            "final_eval_std",
            "frames",
            "train_seconds",
            "solved",
            "solved_at_frames",
            "stable_solved_at_frames",
            "stable_solved_at_seconds",
            "best_eval_mean",
            "best_eval_frames",
            "best_checkpoint",
            "run_id",
            "model_uri",
            "registered_model",
            "videos",
        )
        out = {k: _finite(v) for k, v in asdict(self).items() if k in keys}
        out["evals"] = [
            {"frames": e.frames, "train_seconds": e.train_seconds, "mean": e.mean, "std": e.std}
            for e in self.evals
        ]
        return out


def _finite(value: Any) -> Any:
    """NaN (no evaluation ran) as null, so the summary stays valid JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


def train_result(
    p: Progress,
    threshold: float | None,
    *,
    stop_when_solved: bool,
    interrupted: bool,
    last_update: dict[str, float],
    run_id: str | None,
    checkpoint: Path | None,
    best_checkpoint: Path,
    videos: list[str],
) -> TrainResult:
    """What a run (stopped, or at its end) returns: its last evaluation, both solved measures
    and where its files are. Stability needs the whole budget: a run stopped at its first
    crossing, or by a signal, shows none. ``best_checkpoint`` counts where it exists."""
    last = p.eval_points[-1] if p.eval_points else EvalPoint(p.frames, None, math.nan, math.nan, 0)
    stopped_when_solved = stop_when_solved and p.solved_at is not None
    stable = None if interrupted or stopped_when_solved else stable_solve(p.eval_points, threshold)
    kept_best = p.best_mean is not None and best_checkpoint.exists()
    return TrainResult(
        final_eval_mean=last.mean,
        final_eval_std=last.std,
        eval_episodes=last.episodes,
        frames=p.frames,
        episodes=p.episodes,
        updates=p.updates,
        train_seconds=p.train_seconds,
        eval_seconds=p.eval_seconds,
        solved=p.solved_at is not None,
        solved_at_frames=p.solved_at,
        run_id=run_id,
        checkpoint=str(checkpoint) if checkpoint else None,
        interrupted=interrupted,
        stopped_when_solved=stopped_when_solved,
        last_update=last_update,
        evals=list(p.eval_points),
        stable_solved_at_frames=stable.frames if stable else None,
        stable_solved_at_seconds=stable.train_seconds if stable else None,
        best_eval_mean=p.best_mean,
        best_eval_frames=p.best_frames,
        best_checkpoint=str(best_checkpoint) if kept_best else None,
        videos=videos,
    )
