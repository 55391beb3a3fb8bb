"""What a sweep leaves behind: one parent MLflow run with a nested run per trial, and in the
sweep folder (and as the parent's artifacts) the trial table, the learning curves and the
summary JSON with per-grid-point aggregates.

The sweep makes every trial's MLflow run itself, at its start (SCHEDULED until the trial
starts), and each trial logs into its own (``MLFLOW_RUN_ID``). So a trial that dies before
its tracking starts (a bad value, a crash on import, a killed process) is still in the
store: FAILED, with its one-line error as the ``error`` tag, never left RUNNING.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ppo_torchrl.run.aggregate import plot_curves, summarize, write_tables
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.sweep import Trial
from ppo_torchrl.run.tracking import MlflowTracker

FINAL_METRIC = "final_eval_mean"


class SweepRecord:
    def __init__(self, cfg: PPOConfig, folder: Path, params: dict[str, Any], trials: list[Trial]) -> None:
        """``cfg`` (the first trial's) says whether to track and in which experiment. The
        parent run and every trial's run are made now, while the store is known to answer
        (trials SCHEDULED until they start); everything after goes through the parent's
        journal in ``folder`` and its background writer, so a server that goes away
        mid-sweep stalls nothing (tracking_writer.py)."""
        self.cfg, self.folder = cfg, folder
        self.parent: MlflowTracker | None = None
        if not cfg.track:
            return
        env_name = cfg.env.rpartition(":")[2]
        self.parent = MlflowTracker(
            cfg,
            run_name=f"sweep-{env_name}-{folder.name}",
            params=params,
            tags_to_set={"ppo_torchrl.sweep": str(folder)},
            hold_metrics=False,
        )
        for trial in trials:
            tags = {"ppo_torchrl.trial": trial.name, "ppo_torchrl.seed": str(trial.seed)}
            tags.update({f"ppo_torchrl.grid.{k}": v for k, v in trial.point.items()})
            trial.run_id = self.parent.child_run(trial.name, {}, tags)  # its params: from the trial
        self.parent.open(folder)

    @property
    def run_id(self) -> str | None:
        return self.parent.run_id if self.parent else None

    @property
    def uri(self) -> str | None:
        return self.parent.uri if self.parent else None

    def trial_env(self, trial: Trial) -> dict[str, str]:
        """The variables that point the trial's process at its MLflow run."""
        if self.parent is None:
            return {}
        return {"MLFLOW_TRACKING_URI": self.parent.uri, "MLFLOW_RUN_ID": trial.run_id}

    def trial_done(self, trial: Trial, outcome: dict[str, Any], logged_itself: bool = True) -> None:
        """Record the trial's outcome; a failed trial's run ends FAILED with its error. A seed
        of a vectorised program (``logged_itself=False``) gets its params, final evaluation
        and end here."""
        code, summary = outcome.get("exit_code"), outcome.get("summary")
        trial.outcome = {
            "trial": trial.name,
            "seed": trial.seed,
            "point": trial.label,
            "status": "FINISHED" if code == 0 else ("KILLED" if code in (130, 143) else "FAILED"),
            "exit_code": code,
            "run_id": trial.run_id,
            "error": None if code == 0 else outcome.get("last_line") or f"exit status {code}",
            **{
                k: (summary or {}).get(k)
                for k in (
                    FINAL_METRIC,
                    "best_eval_mean",
                    "stable_solved_at_frames",
                    "frames",
                    "train_seconds",
                    "solved",
                )
            },
            "evals": [(e["frames"], e["mean"]) for e in (summary or {}).get("evals", [])],
        }
        if self.parent is None or trial.run_id is None or (code == 0 and logged_itself):
            return
        if code == 0:
            final = trial.outcome[FINAL_METRIC]
            step = trial.outcome["frames"] or 0
            if _number(final):
                self.parent.log_metrics({"eval_return": final}, step=step, run_id=trial.run_id)
            params = {"seed": trial.seed, "num_seeds_together": "true", **trial.point}
            self.parent.append(
                {"op": "settle", "status": "FINISHED", "params": params, "run_id": trial.run_id}
            )
            return
        run_id, error = trial.run_id, trial.outcome["error"][:5000]
        self.parent.append({"op": "tags", "tags": {"error": error}, "run_id": run_id})
        # A trial that never got to end its run itself (or to log its params) is ended here.
        params = {"seed": trial.seed, **trial.point}
        self.parent.append(
            {"op": "settle", "status": trial.outcome["status"], "params": params, "run_id": run_id}
        )

    def finish(self, trials: list[Trial], status: str, threshold: float | None) -> dict[str, Any]:
        """Aggregates per grid point, the table, the curves and summary.json; all logged to
        the parent run, which ends with ``status``."""
        done = [t.outcome for t in trials if t.outcome]
        points: dict[str, list[dict[str, Any]]] = {}
        for t in trials:
            points.setdefault(t.label, [])
        for o in done:
            points[o["point"]].append(o)
        aggregates = {}
        for label, rows in points.items():
            scores = [r[FINAL_METRIC] for r in rows if r["status"] == "FINISHED" and _number(r[FINAL_METRIC])]
            aggregates[label] = {
                **summarize(scores),
                "trials": len(rows),
                "failed": sum(r["status"] == "FAILED" for r in rows),
                "killed": sum(r["status"] == "KILLED" for r in rows),
            }
        csv_path, md_path = write_tables(done, self.folder)
        curves = {
            label: [r["evals"] for r in rows if r["status"] == "FINISHED"] for label, rows in points.items()
        }
        png = plot_curves(
            curves,
            threshold,
            self.folder / "learning_curves.png",
            f"PPO on {self.cfg.env}: {len(done)} trials, mean and 95% bootstrap CI",
        )
        summary = {
            "parent_run_id": self.run_id,
            "tracking_uri": self.uri,
            "status": status,
            "metric": FINAL_METRIC,
            "aggregates": aggregates,
            "trials": done,
        }
        summary_path = self.folder / "summary.json"
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        if self.parent is not None:
            metrics: dict[str, float] = {}
            for label, agg in aggregates.items():
                if agg["runs"]:
                    prefix = "" if len(aggregates) == 1 else _metric_key(label) + "/"
                    metrics.update(
                        {
                            f"{prefix}final_mean": agg["mean"],
                            f"{prefix}final_mean_ci_low": agg["mean_ci95"][0],
                            f"{prefix}final_mean_ci_high": agg["mean_ci95"][1],
                            f"{prefix}final_iqm": agg["iqm"],
                            f"{prefix}final_iqm_ci_low": agg["iqm_ci95"][0],
                            f"{prefix}final_iqm_ci_high": agg["iqm_ci95"][1],
                        }
                    )
            self.parent.log_metrics(metrics, step=0)
            for t in trials:  # never started (the sweep was stopped): not left SCHEDULED
                if not t.outcome and t.run_id is not None:
                    skipped = {"ppo_torchrl.skipped": "the sweep stopped before this trial"}
                    self.parent.append({"op": "tags", "tags": skipped, "run_id": t.run_id})
                    self.parent.append({"op": "settle", "status": "KILLED", "params": {}, "run_id": t.run_id})
            for path in (png, csv_path, md_path, summary_path):
                self.parent.log_artifact(path)
            self.parent.end(status)
        return summary


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _metric_key(label: str) -> str:
    """MLflow metric names allow letters, digits, ``_ - . / :`` and spaces: ``lr=0.001`` -> ``lr_0.001``."""
    return "".join(c if c.isalnum() or c in "_-. :" else "_" for c in label)
