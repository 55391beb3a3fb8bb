"""A sweep's aggregates: per grid point the mean and IQM of the trials' final greedy
evaluations with 95% bootstrap intervals (run/stats.py, rliable's recipe), their learning
curves, the metrics the parent MLflow run gets, and the table of every trial.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from ppo_torchrl.run.stats import summarize

FINAL_METRIC = "final_eval_mean"


def by_point(labels: list[str], outcomes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The trials' outcomes per grid point, every point present (in plan order) even with none."""
    points: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for o in outcomes:
        points[o["point"]].append(o)
    return points


def aggregates(points: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per grid point: `summarize` over the finished trials' final evaluations, and the counts."""
    out = {}
    for label, rows in points.items():
        scores = [r[FINAL_METRIC] for r in rows if r["status"] == "FINISHED" and is_number(r[FINAL_METRIC])]
        out[label] = {
            **summarize(scores),
            "trials": len(rows),
            "failed": sum(r["status"] == "FAILED" for r in rows),
            "killed": sum(r["status"] == "KILLED" for r in rows),
        }
    return out


def curves(points: dict[str, list[dict[str, Any]]]) -> dict[str, list[list[tuple[int, float]]]]:
    """Per grid point, every finished trial's evaluations (frames, mean)."""
    return {label: [r["evals"] for r in rows if r["status"] == "FINISHED"] for label, rows in points.items()}


def parent_metrics(per_point: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The parent run's metrics: ``final_iqm`` and friends, under ``<grid point>/`` when the grid
    has several points."""
    metrics: dict[str, float] = {}
    for label, agg in per_point.items():
        if not agg["runs"]:
            continue
        prefix = "" if len(per_point) == 1 else metric_key(label) + "/"
        for name, stat in (("mean", "mean"), ("iqm", "iqm")):
            low, high = agg[f"{stat}_ci95"]
            metrics.update(
                {f"{prefix}final_{name}": agg[stat], f"{prefix}final_{name}_ci_low": low,
                 f"{prefix}final_{name}_ci_high": high}
            )  # fmt: skip
    return metrics


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def metric_key(label: str) -> str:
    """MLflow metric names allow letters, digits, ``_ - . / :`` and spaces: ``lr=0.001`` -> ``lr_0.001``."""
    return "".join(c if c.isalnum() or c in "_-. :" else "_" for c in label)


TABLE_COLUMNS = (
    "trial",
    "seed",
    "point",
    "status",
    "final_eval_mean",
    "best_eval_mean",
    "stable_solved_at_frames",
    "frames",
    "train_seconds",
    "run_id",
    "error",
)


def write_tables(trials: list[dict[str, Any]], folder: Path) -> tuple[Path, Path]:
    """Every trial as ``trials.csv`` and ``trials.md``."""
    rows = [{c: _cell(t.get(c)) for c in TABLE_COLUMNS} for t in trials]
    csv_path, md_path = folder / "trials.csv", folder / "trials.md"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(r[c].replace("|", "\\|") for c in TABLE_COLUMNS) + " |" for r in rows]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
