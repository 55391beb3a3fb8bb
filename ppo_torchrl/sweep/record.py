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
from pathlib import Path
from typing import Any

from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.plots import plot_curves
from ppo_torchrl.sweep.aggregate import (
    FINAL_METRIC,
    aggregates,
    by_point,
    curves,
    is_number,
    parent_metrics,
    write_tables,
)
from ppo_torchrl.sweep.plan import Trial
from ppo_torchrl.tracking.child import child_run
from ppo_torchrl.tracking.mlflow_run import MlflowTracker
from ppo_torchrl.tracking.params import TrackingParams


class SweepRecord:
    def __init__(self, cfg: PPOConfig, folder: Path, params: dict[str, Any], trials: list[Trial]) -> None:
        """``cfg`` (the first trial's) says whether to track and in which experiment. The
        parent run and every trial's run are made now, while the store is known to answer
        (trials SCHEDULED until they start); everything after goes through the parent's
        journal in ``folder`` and its background writer, so a server that goes away
        mid-sweep stalls nothing (tracking/writer.py)."""
        self.cfg, self.folder = cfg, folder
        self.parent: MlflowTracker | None = None
        if not cfg.track:
            return
        env_name = cfg.env.rpartition(":")[2]
        self.parent = MlflowTracker(
            cfg.params(TrackingParams),
            params,
            run_name=f"sweep-{env_name}-{folder.name}",
            tags_to_set={"ppo_torchrl.sweep": str(folder)},
            hold_metrics=False,
        )
        for trial in trials:
            tags = {"ppo_torchrl.trial": trial.name, "ppo_torchrl.seed": str(trial.seed)}
            tags.update({f"ppo_torchrl.grid.{k}": v for k, v in trial.point.items()})
            trial.run_id = child_run(self.parent, trial.name, {}, tags)  # its params: from the trial
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
            if is_number(final):
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
        points = by_point(list(dict.fromkeys(t.label for t in trials)), done)
        per_point = aggregates(points)
        csv_path, md_path = write_tables(done, self.folder)
        png = plot_curves(
            curves(points),
            threshold,
            self.folder / "learning_curves.png",
            f"PPO on {self.cfg.env}: {len(done)} trials, mean and 95% bootstrap CI",
        )
        summary = {
            "parent_run_id": self.run_id,
            "tracking_uri": self.uri,
            "status": status,
            "metric": FINAL_METRIC,
            "aggregates": per_point,
            "trials": done,
        }
        summary_path = self.folder / "summary.json"
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        if self.parent is not None:
            self.parent.log_metrics(parent_metrics(per_point), step=0)
            for t in trials:  # never started (the sweep was stopped): not left SCHEDULED
                if not t.outcome and t.run_id is not None:
                    skipped = {"ppo_torchrl.skipped": "the sweep stopped before this trial"}
                    self.parent.append({"op": "tags", "tags": skipped, "run_id": t.run_id})
                    self.parent.append({"op": "settle", "status": "KILLED", "params": {}, "run_id": t.run_id})
            for path in (png, csv_path, md_path, summary_path):
                self.parent.log_artifact(path)
            self.parent.end(status)
        return summary
