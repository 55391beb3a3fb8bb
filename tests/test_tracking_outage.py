"""A tracking server that goes away mid-run: a real `mlflow server`, killed with SIGKILL and
started again on the same store, while a real training run logs to it."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ppo_torchrl.tracking.journal import read_journal
from tests.conftest import Server

pytestmark = pytest.mark.slow  # minutes of real processes: docs/testing.md

RUN = ["--frames", "20480", "--no-stop-when-solved", "--checkpoint-every-frames", "2048"]
RUN += ["--eval-every-frames", "4096", "--eval-episodes", "10", "--summary-json", "s.json"]


def train(folder: Path, uri: str, *extra: str) -> subprocess.Popen:
    folder.mkdir(exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.Popen(
        [sys.executable, "-m", "ppo_torchrl.train", *RUN, *extra],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_first_send(folder: Path, proc: subprocess.Popen) -> Path:
    """The run folder, once the writer has sent something: the run is under way."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        for mark in folder.glob("checkpoints/*/tracking_sent.json"):
            if json.loads(mark.read_text() or "{}").get("sent", 0) > 5:
                return mark.parent
        time.sleep(0.1)
    raise AssertionError(f"the run never sent anything: {proc.communicate()[1][-2000:]}")


def histories(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(uri)
    keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith("system/")]
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("undisturbed")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    proc = train(folder, uri)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads((folder / "s.json").read_text())
    run_dir = folder / "checkpoints" / summary["run_id"]
    return {"summary": summary, "histories": histories(uri, summary["run_id"]), "run_dir": run_dir}


def test_a_server_killed_and_restarted_mid_run_loses_nothing(
    server: Server, tmp_path: Path, undisturbed
) -> None:
    proc = train(tmp_path / "run", server.uri)
    wait_for_first_send(tmp_path / "run", proc)
    server.kill()
    time.sleep(3)
    server.start()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert "does not answer" in err and "answers again" in err  # said once each, not per metric
    assert err.count("does not answer") == 1, err
    summary = json.loads((tmp_path / "run" / "s.json").read_text())
    assert summary["final_eval_mean"] == undisturbed["summary"]["final_eval_mean"]
    assert summary["frames"] == 20480
    assert MlflowClient(server.uri).get_run(summary["run_id"]).info.status == "FINISHED"
    got, expected = histories(server.uri, summary["run_id"]), undisturbed["histories"]
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in expected.items()}
    wall_clock = {"perf/frames_per_second"}
    assert {k: v for k, v in got.items() if k not in wall_clock} == {
        k: v for k, v in expected.items() if k not in wall_clock
    }


def test_a_server_still_down_at_the_end_leaves_a_journal_that_sync_sends(
    server: Server, tmp_path: Path, undisturbed
) -> None:
    proc = train(tmp_path / "run", server.uri, "--tracking-end-timeout", "2")
    run_dir = wait_for_first_send(tmp_path / "run", proc)
    server.kill()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]  # the run itself is fine
    waiting = [line for line in err.splitlines() if "not sent" in line]
    assert len(waiting) == 1 and f"python -m ppo_torchrl.track sync {run_dir}" in waiting[0], err
    summary = json.loads((tmp_path / "run" / "s.json").read_text())
    assert summary["final_eval_mean"] == undisturbed["summary"]["final_eval_mean"]
    server.start()
    sync = [sys.executable, "-m", "ppo_torchrl.track", "sync", str(run_dir)]
    done = subprocess.run(sync, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "status FINISHED" in done.stdout
    client = MlflowClient(server.uri)
    assert client.get_run(summary["run_id"]).info.status == "FINISHED"
    got = histories(server.uri, summary["run_id"])
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in undisturbed["histories"].items()}
    again = subprocess.run(sync, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to send" in again.stdout  # idempotent
    assert histories(server.uri, summary["run_id"]) == got


def test_sync_of_a_folder_without_a_journal_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ppo_torchrl.track", "sync", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path}: not a tracked run's folder (no tracking.jsonl with its run id)"
    ]


def update_gaps(run_dir: Path) -> list[float]:
    """Seconds between consecutive updates, from the journal's metric timestamps."""
    stamps = sorted(
        {r["metrics"][0][2] for r in read_journal(run_dir) if r["op"] == "metrics" and len(r["metrics"]) > 1}
    )
    return [(b - a) / 1000 for a, b in itertools.pairwise(stamps)]


def test_a_frozen_server_never_holds_up_an_update(server: Server, tmp_path: Path, undisturbed) -> None:
    """SIGSTOP: requests hang instead of failing; only the writer thread waits on them."""
    proc = train(tmp_path / "run", server.uri)
    run_dir = wait_for_first_send(tmp_path / "run", proc)
    os.killpg(server.proc.pid, signal.SIGSTOP)
    time.sleep(6)
    os.killpg(server.proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    frozen, calm = max(update_gaps(run_dir)), max(update_gaps(undisturbed["run_dir"]))
    assert frozen <= calm + 1.0, (frozen, calm)
    summary = json.loads((tmp_path / "run" / "s.json").read_text())
    assert MlflowClient(server.uri).get_run(summary["run_id"]).info.status == "FINISHED"
    got = histories(server.uri, summary["run_id"])
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in undisturbed["histories"].items()}


@pytest.mark.parametrize("signals", [1, 2])
def test_signals_stop_a_run_within_seconds_during_an_outage(
    server: Server, tmp_path: Path, signals: int
) -> None:
    proc = train(tmp_path / "run", server.uri, "--frames", "400000")
    run_dir = wait_for_first_send(tmp_path / "run", proc)
    server.kill()
    time.sleep(1)
    started = time.monotonic()
    for _ in range(signals):
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - started
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert took < 10, took
    assert "Traceback" not in err
    assert (run_dir / "last.pt").exists()
    if signals == 1:
        assert "resume with: python -m ppo_torchrl.train --resume" in err
