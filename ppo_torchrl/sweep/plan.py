"""A sweep's plan: seeds crossed with grid points, each trial a ``python -m ppo_torchrl.train``
run with its own flags; with ``--backend vectorized``, one program per grid point for its seeds.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
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
