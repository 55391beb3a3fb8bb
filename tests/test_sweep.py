"""`python -m ppo_torchrl.sweep` end to end: real trials (subprocesses, or Ray tasks on a
real local Ray instance), a real SQLite MLflow store, read back through the MLflow client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ppo_torchrl.sweep.cli import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--frames", "2048", "--eval-every-frames", "1024", "--eval-episodes", "5"]


def sweep(tmp_path: Path, *flags: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "ppo_torchrl.sweep", "--sweep-dir", str(tmp_path / "sweep"), *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env)


def runs(tmp_path: Path) -> tuple[object, list]:
    """The sweep's parent run and its nested runs, from the store."""
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("ppo_torchrl")
    everything = client.search_runs([experiment.experiment_id])
    parents = [r for r in everything if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in everything]
    children = [r for r in everything if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(everything) - 1  # nothing outside the sweep's tree
    return parents[0], sorted(children, key=lambda r: r.info.run_name)


@pytest.mark.slow
def test_three_seeds_on_ray_are_three_nested_runs_with_aggregates(tmp_path):
    """The issue's command, at a short budget: --seeds 0-2 --backend ray --workers 2."""
    summary_path = tmp_path / "summary.json"
    done = sweep(tmp_path, "--seeds", "0-2", "--backend", "ray", "--workers", "2", *SHORT,
                 "--summary-json", str(summary_path))  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    parent, children = runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED"] * 3
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1", "2"]
    assert all("eval/return" in c.data.metrics for c in children)  # each trial logged its own training
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"learning_curves.png", "trials.csv", "trials.md", "summary.json"} <= artifacts
    summary = json.loads(summary_path.read_text())
    finals = [t["final_eval_mean"] for t in summary["trials"]]
    agg = summary["aggregates"]["all"]
    assert agg["runs"] == 3 and agg["mean"] == pytest.approx(sum(finals) / 3)
    assert agg["mean_ci95"][0] <= agg["mean"] <= agg["mean_ci95"][1]
    assert parent.data.metrics["eval/final_iqm"] == pytest.approx(agg["iqm"])
    assert len((tmp_path / "sweep" / "trials.csv").read_text().splitlines()) == 4
    assert (tmp_path / "sweep" / "learning_curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_vectorized_backend_runs_each_grid_point_in_one_program_with_a_run_per_seed(tmp_path):
    """--backend vectorized: one `train --num-seeds 2` per grid point, the same per-seed
    rows, aggregates and nested runs (FINISHED, with the seed's final eval/return)."""
    summary_path = tmp_path / "summary.json"
    done = sweep(tmp_path, "--seeds", "0-1", "--backend", "vectorized", "--grid", "lr=0.003,0.001",
                 "--frames", "2048", "--eval-episodes", "5", "--summary-json", str(summary_path))  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("in one program)") == 2  # two programs, not four
    parent, children = runs(tmp_path)
    assert parent.info.status == "FINISHED" and len(children) == 4
    summary = json.loads(summary_path.read_text())
    finals = {(t["point"], t["seed"]): t["final_eval_mean"] for t in summary["trials"]}
    assert len(finals) == 4 and all(t["status"] == "FINISHED" for t in summary["trials"])
    for child in children:
        assert child.info.status == "FINISHED"
        key = (f"lr={child.data.params['lr']}", int(child.data.params["seed"]))
        assert child.data.metrics["eval/return"] == pytest.approx(finals[key])
    for label in ("lr=0.003", "lr=0.001"):
        assert summary["aggregates"][label]["runs"] == 2


@pytest.mark.slow
def test_a_failed_trial_is_recorded_and_the_others_go_on(tmp_path):
    """A grid over two envs, one of whose simulator dies mid-training: that trial's run ends
    FAILED with its one-line error, the other finishes, the sweep exits 1."""
    done = sweep(tmp_path, "--seeds", "0", "--workers", "2", "--grid",
                 "env=CartPole-v1,tests.toy_envs:CrashingCartPole-v0", *SHORT)  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    parent, children = runs(tmp_path)
    by_env = {c.data.tags["ppo_torchrl.grid.env"]: c for c in children}
    crashed = by_env["tests.toy_envs:CrashingCartPole-v0"]
    assert crashed.info.status == "FAILED"
    assert crashed.data.tags["error"] == "RuntimeError: simulator connection lost after 100 steps"
    assert by_env["CartPole-v1"].info.status == "FINISHED"
    assert parent.info.status == "FAILED"
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert summary["aggregates"]["env=CartPole-v1"]["runs"] == 1
    crashed_point = summary["aggregates"]["env=tests.toy_envs:CrashingCartPole-v0"]
    assert crashed_point == {"runs": 0, "trials": 1, "failed": 1, "killed": 0}
    assert "FAILED, RuntimeError: simulator connection lost" in done.stdout


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("backend", ["local", "ray"])
@pytest.mark.slow
def test_sigterm_stops_the_trials_with_checkpoints_and_leaves_nothing_running(backend, tmp_path):
    """On Ray the sweep starts as a shell's background job does (``sweep &``: SIGINT ignored,
    inherited by the Ray instance it starts), where Ray's task cancel is a no-op unless the
    task lets KeyboardInterrupt in."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "ppo_torchrl.sweep", "--sweep-dir", str(tmp_path / "sweep"),
           "--backend", backend, "--seeds", "0-2", "--workers", "2", "--frames", "2000000",
           "--eval-every-frames", "0"]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
        preexec_fn=ignore_sigint if backend == "ray" else None,
    )
    logs = tmp_path / "sweep" / "logs"
    deadline = time.time() + 120
    while time.time() < deadline:  # both running trials are training
        if len([p for p in logs.glob("*.log") if "Episode 10:" in p.read_text()]) == 2:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    parent, children = runs(tmp_path)
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in children] == ["KILLED"] * 3  # made at the start; the third never ran
    ran = [c for c in children if "ppo_torchrl.skipped" not in c.data.tags]
    assert len(ran) == 2 and all(c.data.metrics["perf/frames_per_second"] > 0 for c in ran)  # trained
    assert len(list((tmp_path / "sweep" / "checkpoints").glob("*/last.pt"))) == 2
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert summary["status"] == "KILLED" and len(summary["trials"]) == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "3-1"], "seeds: '3-1' is not an increasing range"),
        (["--seeds", "a"], "seeds: expected a range like 0-4"),
        (["--grid", "nope=1,2"], "grid: 'nope' is not a config field"),
        (["--grid", "seed=1,2"], "grid: 'seed' cannot be gridded (use --seeds)"),
        (["--grid", "lr"], "grid: expected name=value,value"),
        (["--grid", "minibatch_size=64,100000"], "minibatch_size: must be at most num_envs * rollout_steps"),
        (["--seed", "3"], "--seed: cannot be passed to a sweep's trials (seeds come from --seeds)"),
        (["--workers", "0"], "workers: must be >= 1"),
        (["--frames", "-5"], "frames: must be >= 1"),
        (["--backend", "vectorized", "--seeds", "0,2"], "--seeds must be one range like 0-15 (got 0,2)"),
        (
            ["--backend", "vectorized", "--env", "LunarLander-v3"],
            "num_seeds: seeds as a batch need a torch-native",
        ),
    ],
)
def test_bad_input_is_one_line_and_starts_nothing(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sweep_main(["--no-track", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "mlflow.db").exists()


def test_an_unreachable_tracking_server_is_one_line_and_starts_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing answers
    assert sweep_main(["--seeds", "0-1", "--frames", "512"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MLflow server at http://127.0.0.1:9 does not answer" in err[0], err
    assert not (tmp_path / "sweeps").exists()
