"""What both RLHF pipelines (toy/ and real/) do alike around their RL: a tracked MLflow run with
its output folder, runs that end with their true status, the summary written and logged,
the curves plot, and transformers kept quiet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.tracking.child import ChildTracker
from ppo_torchrl.tracking.mlflow_run import MlflowTracker
from ppo_torchrl.tracking.params import TrackingParams
from ppo_torchrl.tracking.tracker import NullTracker, Tracker

SIGNAL_WAIT = 3.0  # seconds a run stopped by Ctrl-C waits for tracking (as train's)


def open_run(
    cfg: RLHFConfig,
    run_name: str,
    resume: tuple[dict[str, Any], Path] | None = None,
    hold_metrics: bool = False,
) -> tuple[Tracker, Path]:
    """The pipeline's tracker (MLflow, or none) and its output folder,
    ``output_dir/<run id or algo-seed-time>``; from here on every record goes through the
    folder's journal (tracking/journal.py). ``resume``: (a checkpoint's tracker state, the
    run's folder) to go on with. ``hold_metrics``: metrics wait until a checkpoint covers
    them (``tracker.flush()``), so that a resumed run sends each one once."""
    tracker: Tracker = NullTracker()
    state, folder = resume if resume else ({}, None)
    if cfg.track:
        params = cfg.params(TrackingParams)
        tracker = MlflowTracker(params, cfg.to_dict(), run_name, state or None, hold_metrics=hold_metrics)
    name = tracker.run_id or time.strftime(f"{cfg.algo}-seed{cfg.seed}-%Y%m%d-%H%M%S")
    out_dir = (folder or Path(cfg.output_dir) / name).resolve()  # lines that name it work from any cwd
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker.open(out_dir)
    return tracker, out_dir


@contextmanager
def tracked(tracker: Tracker) -> Iterator[Tracker]:
    """Start ``tracker``'s run if it waits to be started (a stage), and end it with its true
    status: FINISHED, KILLED (a signal) or FAILED."""
    if isinstance(tracker, ChildTracker):
        tracker.start()
    try:
        yield tracker
    except KeyboardInterrupt:  # metrics no checkpoint covers stay unsent: a resume logs them once
        tracker.end("KILLED", flush=False, wait=SIGNAL_WAIT)
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")


def finish_summary(tracker: Tracker, out_dir: Path, summary: dict[str, Any], step: int) -> None:
    """``summary.json`` in the output folder, its numbers as the run's metrics at ``step`` and
    the file as an artifact; then the run id and folder go into ``summary`` for the caller."""
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    tracker.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))}, step)
    tracker.log_artifact(out_dir / "summary.json")
    summary["run_id"], summary["output_dir"] = tracker.run_id, str(out_dir)


def plot_score_and_kl(
    path: Path,
    x: Sequence[float],
    xlabel: str,
    score: tuple[str, Sequence[float]],
    levels: Sequence[tuple[float, str, str]],
    kl: tuple[str, Sequence[float]],
) -> Path:
    """A run's score curve (label, values) with horizontal ``levels`` (value, label, line
    style) on the left axis, and its KL to pi_ref (label, values) on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(x, score[1], label=score[0], alpha=0.8)
    for value, label, style in levels:
        ax.axhline(value, ls=style, c="gray" if style == ":" else "k", label=label)
    ax.set(xlabel=xlabel, ylabel=score[0])
    kl_ax = ax.twinx()
    kl_ax.plot(x, kl[1], c="tab:red", label="KL(pi || pi_ref)")
    kl_ax.set_ylabel(kl[0])
    fig.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def quiet_transformers() -> None:
    """Our own progress lines say what happens; transformers' load reports and progress bars
    would only bury them."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
