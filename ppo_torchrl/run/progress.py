"""What a person watching training sees: a live bar, episode lines, a closing summary.

The trainer calls a `Reporter`; `QuietReporter` (the library default) prints nothing,
`ConsoleReporter` (the CLI's) draws a tqdm bar on stderr and writes the tutorial-style
``Episode N: Average Reward = X`` line to stdout every 10 completed episodes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ppo_torchrl.run.evaluation import EvalResult
    from ppo_torchrl.run.results import TrainResult
    from ppo_torchrl.run.video import Video

EPISODE_LINE_EVERY = 10


class Stopwatch:
    """Wall time with pauses, so evaluation can be kept off the training clock; ``already``
    carries the time of earlier sessions of a resumed run."""

    def __init__(self, already: float = 0.0, running: bool = True) -> None:
        self.elapsed = already
        self._since: float | None = time.perf_counter() if running else None

    def stop(self) -> float:
        if self._since is not None:
            self.elapsed += time.perf_counter() - self._since
            self._since = None
        return self.elapsed

    @contextmanager
    def paused(self) -> Iterator[None]:
        running = self._since is not None
        self.stop()
        try:
            yield
        finally:
            if running:
                self._since = time.perf_counter()

    def seconds(self) -> float:
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.elapsed + running


class QuietReporter:
    def start(self, total_frames: int, threshold: float | None, earlier: list[float] | None = None) -> None:
        """``earlier``: returns of the episodes before a resume, so numbering continues."""

    def episodes(self, returns: list[float], solved: bool) -> None:
        pass

    def update(self, frames: int, frames_per_second: float) -> None:
        pass

    def evaluation(self, frames: int, result: EvalResult, solved: bool) -> None:
        pass

    def video(self, video: Video) -> None:
        pass

    def finish(self, result: TrainResult) -> None:
        pass


class ConsoleReporter(QuietReporter):
    def __init__(self, out: TextIO | None = None, bar: bool = True) -> None:
        self._out = out
        self.show_bar = bar
        self.returns: list[float] = []
        self.threshold: float | None = None
        self.bar = None

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout  # looked up late, so redirection works

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            print(line, file=self.out, flush=True)

    def start(self, total_frames: int, threshold: float | None, earlier: list[float] | None = None) -> None:
        self.returns = list(earlier or [])
        self.threshold = threshold
        if self.show_bar:
            from tqdm import tqdm

            # disable=None: no bar when stderr is not a terminal (CI logs, pipes).
            self.bar = tqdm(
                total=total_frames, unit="frame", unit_scale=True, dynamic_ncols=True, disable=None
            )

    def episodes(self, returns: list[float], solved: bool) -> None:
        # One line per 10 completed episodes, averaging exactly those 10, as the tutorial does.
        for value in returns:
            self.returns.append(value)
            n = len(self.returns)
            if n % EPISODE_LINE_EVERY == 0:
                avg = sum(self.returns[-EPISODE_LINE_EVERY:]) / EPISODE_LINE_EVERY
                self._print(f"Episode {n}: Average Reward = {avg:.1f}" + (" (solved!)" if solved else ""))

    def update(self, frames: int, frames_per_second: float) -> None:
        if self.bar is None:
            return
        recent = self.returns[-EPISODE_LINE_EVERY:]
        avg = f"{sum(recent) / len(recent):.1f}" if recent else "-"
        self.bar.set_postfix_str(f"avg return {avg}, {frames_per_second:,.0f} frames/s", refresh=False)
        self.bar.update(frames - self.bar.n)

    def evaluation(self, frames: int, result: EvalResult, solved: bool) -> None:
        self._print(f"[eval @ {frames:,} frames] greedy return {result}" + (" -> solved" if solved else ""))

    def video(self, video: Video) -> None:
        self._print(f"[video] {video}")

    def finish(self, result: TrainResult) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        first, last = self.returns[:EPISODE_LINE_EVERY], self.returns[-EPISODE_LINE_EVERY:]
        lines = ["", "=" * 60, " SUMMARY", "=" * 60]
        if first:
            avg_first, avg_last = sum(first) / len(first), sum(last) / len(last)
            lines += [
                f"Average reward (first {len(first)} episodes): {avg_first:.1f}",
                f"Average reward (last {len(last)} episodes):  {avg_last:.1f}",
                f"Improvement: {avg_last - avg_first:+.1f}",
            ]
        lines += [
            f"Final greedy evaluation: {result.final_eval_mean:.1f} ± {result.final_eval_std:.1f}"
            f" over {result.eval_episodes} episodes"
            + (
                f" (first reached the threshold at {result.solved_at_frames:,} frames)"
                if result.solved
                else ""
            ),
            *_stability(result, self.threshold),
            f"Frames: {result.frames:,} in {result.episodes:,} episodes, {result.updates} updates",
            f"Wall time: {result.train_seconds:.1f} s training (+{result.eval_seconds:.1f} s evaluation)",
        ]
        if result.checkpoint:
            lines.append(f"Checkpoint: {result.checkpoint}")
        if result.best_checkpoint:
            lines.append(
                f"Best greedy evaluation: {result.best_eval_mean:.1f} at {result.best_eval_frames:,} frames"
                f" -> {result.best_checkpoint}"
            )
        if result.run_id:
            lines.append(f"MLflow run: {result.run_id}")
        if result.model_uri:
            registered = f"; registered as {result.registered_model}" if result.registered_model else ""
            lines.append(f"MLflow model: {result.model_uri}{registered}")
        for line in lines:
            self._print(line)


def _stability(result: TrainResult, threshold: float | None) -> list[str]:
    """Whether the policy stayed solved: only a run that spent its whole budget can say."""
    if threshold is None:
        return []
    if result.stable_solved_at_frames is not None:
        seconds = result.stable_solved_at_seconds
        when = f" ({seconds:.1f} s of training)" if seconds is not None else ""
        return [
            f"Stably solved from {result.stable_solved_at_frames:,} frames{when}: every greedy"
            " evaluation from there to the end of the budget reached the threshold"
        ]
    if result.stopped_when_solved:
        return [
            "Stopped at the first evaluation that reached the threshold (--stop-when-solved): that"
            " shows it solved once, not that it stays solved (--no-stop-when-solved spends the budget)"
        ]
    return ["Not stably solved: the last greedy evaluation of the budget is below the threshold"]
