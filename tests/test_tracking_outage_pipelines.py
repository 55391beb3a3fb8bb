"""The other entry points that track — the RLHF pipeline and a sweep — with a real `mlflow
server` that goes away while they run: they end normally, say what waits in their folders'
journals, and `track sync` completes every run once the server is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ppo_torchrl.tracking.journal import SENT
from tests.conftest import Server
from tests.test_rlhf import TINY

pytestmark = pytest.mark.slow  # minutes of real processes: docs/testing.md

ROOT = Path(__file__).resolve().parents[1]


def start(cmd: list[str], cwd: Path, uri: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", *cmd],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_once_sending(server: Server, folder: Path, proc: subprocess.Popen) -> None:
    """Kill the server as soon as a journal under ``folder`` has sent something."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any(json.loads(m.read_text() or "{}").get("sent", 0) > 0 for m in folder.rglob(SENT)):
            server.kill()
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing was sent before the end: {proc.communicate()[1][-3000:]}")


def sync(folder: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ppo_torchrl.track", "sync", str(folder)],
        env={**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_rlhf_pipeline_outlives_its_server_and_sync_completes_every_stage(
    server: Server, tmp_path: Path
) -> None:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    proc = start(
        ["ppo_torchrl.rlhf", *flags, "--output-dir", "out", "--tracking-end-timeout", "2"],
        tmp_path,
        server.uri,
    )
    kill_once_sending(server, tmp_path / "out", proc)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    [folder] = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert "Traceback" not in err
    assert f"python -m ppo_torchrl.track sync {folder.resolve()}" in err  # one line says what waits

    server.start()
    done = sync(folder, server.uri)
    assert done.returncode == 0, done.stderr
    client = MlflowClient(server.uri)
    parent = client.get_run(folder.name)
    assert parent.info.status == "FINISHED"
    summary = json.loads((folder / "summary.json").read_text())
    assert parent.data.metrics["eval/final_score"] == summary["final_score"]
    stages = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_name for r in stages) == ["reward_model", "rl", "sft"]
    assert all(r.info.status == "FINISHED" for r in stages)
    [rl] = [r for r in stages if r.info.run_name == "rl"]
    for key in ("train/true_score", "train/kl_to_ref", "loss/objective"):
        assert sorted(m.step for m in client.get_metric_history(rl.info.run_id, key)) == [1, 2, 3], key
    assert {"curves.png", "samples.txt"} <= {a.path for a in client.list_artifacts(rl.info.run_id)}
    assert "nothing to send" in sync(folder, server.uri).stdout  # idempotent


def test_sweep_outlives_its_server_and_sync_completes_parent_and_trials(
    server: Server, tmp_path: Path
) -> None:
    frames = 4096
    cmd = ["ppo_torchrl.sweep", "--seeds", "0,1", "--workers", "1", "--sweep-dir", "sw"]
    cmd += ["--frames", str(frames), "--eval-every-frames", "2048", "--eval-episodes", "3"]
    cmd += ["--checkpoint-every-frames", "2048", "--tracking-end-timeout", "2", "--no-system-metrics"]
    proc = start(cmd, tmp_path, server.uri)
    kill_once_sending(server, tmp_path / "sw", proc)  # the parent's first record: the trials start offline
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert "Traceback" not in err
    assert "python -m ppo_torchrl.track sync" in err

    server.start()
    done = sync(tmp_path / "sw", server.uri)
    assert done.returncode == 0, done.stderr
    client = MlflowClient(server.uri)
    summary = json.loads((tmp_path / "sw" / "summary.json").read_text())
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert "eval/final_iqm" in parent.data.metrics
    for trial in summary["trials"]:
        run = client.get_run(trial["run_id"])
        assert run.info.status == "FINISHED", trial["trial"]
        assert run.data.params["seed"] == str(trial["seed"])  # its params, sent by the sync
        steps = [m.step for m in client.get_metric_history(trial["run_id"], "loss/objective")]
        assert steps == list(range(steps[0], frames + 1, steps[0])), trial["trial"]  # each update once
        assert client.get_metric_history(trial["run_id"], "eval/return")[-1].value == trial["final_eval_mean"]
    assert "nothing to send" in sync(tmp_path / "sw", server.uri).stdout
