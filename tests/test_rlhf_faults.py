"""`python -m ppo_torchrl.rlhf --model smollm2-135m` under what `train` already survives: real
signals, a resume that must land where an uninterrupted run lands, a real small tmpfs that
fills up, a real `mlflow server` killed mid-run. Each run is a real process on the real model
(LoRA rank 4 on two projections, 4 prompts, 8 new tokens: seconds per update)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import Server
from tests.test_disk_faults import fill, small_disk  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow  # minutes of real processes: docs/testing.md

pytest.importorskip("peft")
pytest.importorskip("gguf")

UPDATES = 6
RUN = ["--model", "smollm2-135m", "--algo", "ppo", "--prompts-per-update", "4", "--max-new-tokens", "8"]
RUN += [
    "--minibatch-size",
    "32",
    "--eval-size",
    "12",
    "--lora-rank",
    "4",
    "--lora-targets",
    "q_proj,v_proj",
]
RUN += ["--rl-updates", str(UPDATES), "--seed", "3", "--summary-json", "s.json"]


def rlhf(folder: Path, *args: str, uri: str | None = None) -> subprocess.Popen:
    folder.mkdir(exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri or f"sqlite:///{folder / 'mlflow.db'}"}
    return subprocess.Popen(
        [sys.executable, "-m", "ppo_torchrl.rlhf", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def checkpoint_at(folder: Path, proc: subprocess.Popen, update: int) -> Path:
    """The run's folder once its checkpoint holds ``update`` updates."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        for path in folder.glob("*/*/checkpoint.pt"):
            try:
                if torch.load(path, weights_only=True)["update"] >= update:
                    return path.parent
            except (OSError, RuntimeError, EOFError):  # replaced while read
                pass
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint at update {update}: {proc.communicate()[1][-2000:]}")


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["weights"]["policy"]


def histories(uri: str, run_id: str) -> dict[str, list[int]]:
    client = MlflowClient(uri)
    keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith("system/")]
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k)) for k in keys}


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("undisturbed")
    proc = rlhf(folder, *RUN)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads((folder / "s.json").read_text())
    return {"summary": summary, "adapter": adapter(Path(summary["output_dir"]))}


def test_sigterm_stops_at_once_and_resume_lands_where_an_unstopped_run_does(
    tmp_path: Path, undisturbed: dict
) -> None:
    proc = rlhf(tmp_path, *RUN)
    run_dir = checkpoint_at(tmp_path, proc, UPDATES // 2)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert took < 60, took  # a hang guard; the 10 s figure is measured at default settings
    assert "Traceback" not in err and "interrupted (SIGTERM)" in err
    assert f"resume with: python -m ppo_torchrl.rlhf --resume {run_dir}" in out
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    [run] = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("ppo_torchrl_rlhf").experiment_id]
    )
    assert run.info.status == "KILLED" and run.info.run_id == run_dir.name
    stopped_at = torch.load(run_dir / "checkpoint.pt", weights_only=True)["update"]
    assert UPDATES // 2 <= stopped_at < UPDATES

    refused = rlhf(tmp_path, "--resume", str(run_dir), "--beta", "0.5")
    _, err = refused.communicate(timeout=120)
    allowed = "--rl-updates, --time-budget, --sample-every"
    assert refused.returncode == 2 and err.strip().splitlines() == [
        f"error: resume: --beta cannot change when resuming (allowed: {allowed})"
    ]

    resumed = rlhf(tmp_path, "--resume", str(run_dir), "--summary-json", "s.json")
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err[-3000:]
    assert f"after update {stopped_at}" in out
    summary, expected = json.loads((tmp_path / "s.json").read_text()), undisturbed["summary"]
    assert summary["run_id"] == run_dir.name and summary["updates"] == UPDATES
    # The same run: the same held-out answers and the same adapter, as if never stopped.
    assert summary["final_exact"] == expected["final_exact"]
    assert summary["base_exact"] == expected["base_exact"]
    for name, value in undisturbed["adapter"].items():
        torch.testing.assert_close(adapter(run_dir)[name], value, rtol=1e-4, atol=1e-6)
    assert MlflowClient(uri).get_run(run_dir.name).info.status == "FINISHED"
    steps = histories(uri, run_dir.name)
    assert steps["train/reward"] == list(range(1, UPDATES + 1))  # each update's metrics once


def test_a_full_disk_keeps_the_last_checkpoint_and_exits_3(small_disk: Path, tmp_path: Path) -> None:  # noqa: F811
    proc = rlhf(tmp_path, *RUN, "--no-track", "--output-dir", str(small_disk / "runs"))
    run_dir = checkpoint_at(small_disk, proc, 1)
    filler = fill(small_disk)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 3, err[-3000:]
    assert "Traceback" not in err
    assert "held-out reward" in out  # the result is reported whatever the disk says
    kept = torch.load(run_dir / "checkpoint.pt", weights_only=True)["update"]
    assert 1 <= kept < UPDATES
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warned and all("No space left on device" in line for line in warned), warned
    assert any("training goes on" in line for line in warned), warned  # a refused checkpoint
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors and all(
        f"last intact checkpoint: {run_dir / 'checkpoint.pt'} (after update {kept})" in e for e in errors
    )
    elsewhere = Path("/tmp") / f"ppo_torchrl-{run_dir.name}-checkpoint.pt"
    try:
        assert any(f"wrote it to {elsewhere}" in e for e in errors), errors
        assert any(f"cannot write {run_dir / 'adapter'}" in e for e in errors), errors
        assert torch.load(elsewhere, weights_only=True)["update"] == UPDATES  # the trained weights
    finally:
        elsewhere.unlink(missing_ok=True)
        filler.unlink()


def test_a_server_down_mid_run_ends_0_and_sync_completes_the_run(tmp_path: Path, undisturbed: dict) -> None:
    server = Server(tmp_path)
    server.start()
    try:
        proc = rlhf(tmp_path / "run", *RUN, "--tracking-end-timeout", "2", uri=server.uri)
        run_dir = checkpoint_at(tmp_path / "run", proc, 2)
        server.kill()
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        summary = json.loads((tmp_path / "run" / "s.json").read_text())
        assert summary["final_exact"] == undisturbed["summary"]["final_exact"]
        waiting = [line for line in err.splitlines() if "not sent" in line]
        assert len(waiting) == 1 and f"python -m ppo_torchrl.track sync {run_dir}" in waiting[0], err
        server.start()
        sync = [sys.executable, "-m", "ppo_torchrl.track", "sync", str(run_dir)]
        done = subprocess.run(sync, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "status FINISHED" in done.stdout, done.stderr
        assert MlflowClient(server.uri).get_run(summary["run_id"]).info.status == "FINISHED"
        steps = histories(server.uri, summary["run_id"])
        assert steps["train/reward"] == list(range(1, UPDATES + 1))
        artifacts = {a.path for a in MlflowClient(server.uri).list_artifacts(summary["run_id"])}
        assert {"adapter", "summary.json", "curves.png"} <= artifacts
    finally:
        if server.proc.poll() is None:
            server.kill()
