"""A sweep: seeds x grid points, each trial a full ``python -m ppo_torchrl.train`` run in its
own process, run a few at a time on this machine or as Ray tasks on a local instance or a
cluster.

A trial is a subprocess, not a function call, on both backends: it gets the exact
behaviour of the command line (signals, exit status, the one-line errors, its own torch
thread count and RNG), a crash in one trial cannot take the sweep down, and on Ray the same
task runs on any node that has the package installed. What comes back from a trial is its
exit status, its last line of output (the one-line error when it failed) and its
``--summary-json``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.config import PPOConfig

NOT_GRIDDED = ("seed", "env_kwargs")  # seeds have --seeds; a dict does not fit value,value


@dataclass
class Trial:
    index: int
    seed: int
    point: dict[str, str]  # grid values, as written on the command line
    argv: list[str]  # the train flags of this trial
    run_id: str | None = None  # its MLflow run, made by the sweep at its start
    outcome: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The grid point, e.g. ``lr=0.001 clip_epsilon=0.2`` ("all" without a grid)."""
        return " ".join(f"{k}={v}" for k, v in self.point.items()) or "all"

    @property
    def name(self) -> str:
        return f"trial{self.index:03d}-seed{self.seed}" + "".join(f"-{k}={v}" for k, v in self.point.items())


def parse_seeds(text: str) -> list[int]:
    """``0-4``, ``0,3,7`` or both (``0-2,10``) -> a sorted list without repeats."""
    seeds: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise ConfigError(
                f"seeds: expected a range like 0-4 or a list like 0,3,7 (got {text!r})"
            ) from None
        if first < 0 or last < first:
            raise ConfigError(f"seeds: {part!r} is not an increasing range of seeds >= 0")
        seeds.update(range(first, last + 1))
    return sorted(seeds)


def parse_grid(words: list[str]) -> dict[str, list[str]]:
    """``["lr=1e-3,3e-3", "hidden_sizes=64x64,256x256"]`` -> ``{"lr": ["1e-3", "3e-3"], ...}``;
    the names must be PPOConfig fields. Tuple values separate their items with ``x``."""
    grid: dict[str, list[str]] = {}
    fields = PPOConfig.field_names()
    for word in words:
        name, eq, values = word.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not values:
            raise ConfigError(f"grid: expected name=value,value (got {word!r})")
        if name not in fields:
            raise ConfigError(
                f"grid: {name!r} is not a config field (see python -m ppo_torchrl.train --help)"
            )
        if name in NOT_GRIDDED:
            raise ConfigError(
                f"grid: {name!r} cannot be gridded" + (" (use --seeds)" if name == "seed" else "")
            )
        if name in grid:
            raise ConfigError(f"grid: {name!r} is given twice")
        grid[name] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def point_flags(point: dict[str, str]) -> list[str]:
    """A grid point as train flags."""
    kinds = {f.name: str(f.type) for f in dataclasses.fields(PPOConfig)}
    flags: list[str] = []
    for name, value in point.items():
        flag = "--" + name.replace("_", "-")
        if kinds[name].startswith("bool"):
            if value.lower() not in ("true", "false"):
                raise ConfigError(f"grid: {name} takes true or false (got {value!r})")
            flags.append(flag if value.lower() == "true" else "--no-" + flag[2:])
        elif kinds[name].startswith("tuple"):
            flags += [flag, *value.split("x")]
        else:
            flags += [flag, value]
    return flags


def plan(seeds: list[int], grid: dict[str, list[str]], passthrough: list[str]) -> list[Trial]:
    """Every grid point crossed with every seed, grid points outermost."""
    names = list(grid)
    points = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())] or [{}]
    trials = []
    for point in points:
        for seed in seeds:
            argv = [*passthrough, "--seed", str(seed), *point_flags(point)]
            trials.append(Trial(len(trials), seed, point, argv))
    return trials


def vectorized_groups(trials: list[Trial]) -> list[tuple[Trial, list[Trial]]]:
    """``--backend vectorized``: one program per grid point trains all its seeds together
    (``train --num-seeds N`` from the point's first seed). Returns, per point, the trial that
    runs that program and the point's per-seed trials (the table's rows, the MLflow runs)."""
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(trial.label, []).append(trial)
    out = []
    for members in groups.values():
        seeds = [t.seed for t in members]
        if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
            raise ConfigError(
                "backend: 'vectorized' trains seeds first..first+N-1 in one program: --seeds must be "
                f"one range like 0-15 (got {','.join(map(str, seeds))})"
            )
        first = members[0]
        # The program logs nothing itself: the sweep records each seed in its own run.
        argv = [*first.argv, "--num-seeds", str(len(members)), "--no-track"]
        out.append((Trial(first.index, first.seed, first.point, argv), members))
    return out


def split_outcome(
    outcome: dict[str, Any], members: list[Trial], threshold: float | None
) -> list[tuple[Trial, dict[str, Any]]]:
    """A vectorised program's outcome as one outcome per seed, in a single run's summary terms."""
    summary = outcome.get("summary")
    out = []
    for i, trial in enumerate(members):
        per_seed = None
        if summary is not None:
            final = summary["final_eval_means"][i]
            per_seed = {
                "final_eval_mean": final,
                "best_eval_mean": None,
                "stable_solved_at_frames": summary["stable_solved_at_frames"][i],
                "frames": summary["frames_per_seed"],
                "train_seconds": summary["train_seconds"],  # all seeds' together
                "solved": None if threshold is None else final >= threshold,
                "evals": [{"frames": p[0], "mean": p[2]} for p in summary["evals"][i]],
            }
        out.append((trial, {**outcome, "summary": per_seed}))
    return out


def run_trial(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    log_path: str,
    started: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """One training run as a subprocess. Its output goes to ``log_path`` (or, where that
    folder does not exist, as on another Ray node, is kept and returned). A stop request
    (KeyboardInterrupt, which is also how Ray cancels a task) is passed on as one SIGTERM:
    the run writes a checkpoint and ends its MLflow run KILLED. ``started`` is handed the
    process (the local pool signals it directly)."""
    _interruptible()
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        local_log = Path(log_path).parent.is_dir()
        log_file = Path(log_path) if local_log else Path(tmp) / "trial.log"
        cmd = [sys.executable, "-m", "ppo_torchrl.train", *argv, "--summary-json", str(summary_path)]
        with log_file.open("w") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                cwd=cwd if os.path.isdir(cwd) else None,
                start_new_session=True,  # a terminal's Ctrl-C reaches the sweep, which passes it on once
            )
            if started is not None:
                started(proc)
            try:
                # Polled, not proc.wait(): Ray cancels a task by raising KeyboardInterrupt in its
                # thread, which a thread blocked in waitpid() would never see.
                while (code := proc.poll()) is None:
                    time.sleep(0.2)
            except BaseException:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
                raise
        output = log_file.read_text(errors="replace")
        summary = json.loads(summary_path.read_text()) if code == 0 and summary_path.exists() else None
    lines = [line for line in output.splitlines() if line.strip()]
    return {
        "exit_code": code,
        "last_line": lines[-1] if lines else "",
        "summary": summary,
        "output": None if local_log else output[-200_000:],
    }


def _interruptible() -> None:
    """Let KeyboardInterrupt reach this thread. Ray cancels a task by simulating SIGINT, which
    Python ignores where SIGINT was ignored at start-up: a Ray instance started from a
    background job (``cmd &``, nohup) hands that to all its workers."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) in (
        signal.SIG_IGN,
        None,
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


class LocalPool:
    """Trials as subprocesses of this machine, at most ``workers`` at once."""

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(workers)
        self.pending: dict[Future, Trial] = {}
        self.procs: list[Any] = []

    @property
    def running(self) -> int:
        return len(self.pending)

    def submit(self, trial: Trial, args: tuple) -> None:
        self.pending[self.executor.submit(run_trial, *args, started=self.procs.append)] = trial

    def finished(self, timeout: float) -> list[tuple[Trial, dict[str, Any]]]:
        done, _ = wait(self.pending, timeout=timeout, return_when=FIRST_COMPLETED)
        return [(self.pending.pop(f), f.result()) for f in done]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class RayPool:
    """Trials as Ray tasks (each still a subprocess) on a local Ray instance, or on the
    cluster at RAY_ADDRESS; each task reserves the CPUs its trial's torch threads use."""

    def __init__(self, cpus_per_trial: int) -> None:
        import ray

        address = os.environ.get("RAY_ADDRESS") or None
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": "warning",
        }
        if address is None:
            from ppo_torchrl.run.collection import local_runtime_env

            options["runtime_env"] = local_runtime_env()
        try:
            ray.init(address=address, **options)
        except ConnectionError as err:
            raise ConfigError(f"backend: {err}") from None
        self.ray = ray
        self.task = ray.remote(num_cpus=cpus_per_trial, max_retries=0)(run_trial)
        self.pending: dict[Any, Trial] = {}

    @property
    def running(self) -> int:
        return len(self.pending)

    def submit(self, trial: Trial, args: tuple) -> None:
        self.pending[self.task.remote(*args)] = trial

    def finished(self, timeout: float) -> list[tuple[Trial, dict[str, Any]]]:
        done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            trial = self.pending.pop(ref)
            try:
                out.append((trial, self.ray.get(ref)))
            except self.ray.exceptions.TaskCancelledError:  # stop(): the trial got its SIGTERM
                out.append((trial, {"exit_code": 143, "last_line": "stopped by the sweep", "summary": None}))
            except self.ray.exceptions.RayTaskError as err:
                line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
                out.append((trial, {"exit_code": None, "last_line": line, "summary": None, "output": None}))
        return out

    def stop(self) -> None:
        for ref in self.pending:
            self.ray.cancel(ref)  # KeyboardInterrupt in run_trial: its run gets one SIGTERM

    def close(self) -> None:
        self.ray.shutdown()
