"""Kill training at 20 random moments, resume each time, and lose or double-count nothing.

Kinds of kill, mixed at random: SIGINT and SIGTERM (graceful: checkpoint, then exit),
SIGKILL at a random moment, and SIGKILL aimed at a checkpoint write in progress (the test
watches for the temporary file of an atomic write and kills the moment it appears).
After every kill the latest checkpoint must load; the next process resumes from it. In
the end the single MLflow run is FINISHED and every update's metrics sit at exactly one
step each: no frame counted twice, none skipped.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ppo_torchrl.run.checkpoint import load_checkpoint
from tests.conftest import all_runs

pytestmark = pytest.mark.slow  # minutes of real processes: docs/testing.md

KILLS = 20
BATCH = 1024
BUDGET = 64 * BATCH
# Wide layers make checkpoints a few MB, so that writes take long enough to be hit. The batch
# shape is pinned (32 envs x 32 steps = BATCH, 3 epochs of 512), so that the workload of this
# test does not follow the CartPole defaults.
ARGS = [
    "--num-envs",
    "32",
    "--rollout-steps",
    "32",
    "--epochs",
    "3",
    "--minibatch-size",
    "512",
    "--frames",
    str(BUDGET),
    "--no-stop-when-solved",
    "--eval-every-frames",
    "0",
    "--checkpoint-every-frames",
    str(BATCH),
    "--hidden-sizes",
    "384",
    "384",
    "--seed",
    "5",
]


def start(folder: Path, uri: str, resume: Path | None) -> subprocess.Popen:
    args = ["--resume", str(resume)] if resume else ARGS
    return subprocess.Popen(
        [sys.executable, "-m", "ppo_torchrl.train", *args],
        cwd=folder,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def last_checkpoint(folder: Path) -> Path | None:
    found = list((folder / "checkpoints").glob("*/last.pt"))
    return found[0] if found else None


def wait_for_new_checkpoint(proc: subprocess.Popen, folder: Path, timeout: float = 120) -> bool:
    """Wait until the process has written a checkpoint newer than the one it started from,
    i.e. it is training; False if it ended first (budget already spent)."""
    before = last_checkpoint(folder)
    stamp = before.stat().st_mtime_ns if before else 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        path = last_checkpoint(folder)
        if path is not None and path.stat().st_mtime_ns != stamp:
            return True
        time.sleep(0.002)
    return False


def kill_during_write(proc: subprocess.Popen, folder: Path) -> bool:
    """SIGKILL the moment a checkpoint's temporary file exists; True if it still existed
    after the kill (the write really was cut short)."""
    if not wait_for_new_checkpoint(proc, folder):
        return False
    run = last_checkpoint(folder).parent
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(run.glob(".last.pt.*.tmp")):
            proc.kill()
            proc.wait()
            return any(run.glob(".last.pt.*.tmp"))
        time.sleep(0.0005)
    proc.kill()
    proc.wait()
    return False


def test_twenty_kills_then_resume_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    rng = random.Random(2026)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    kinds = ["write"] * 5 + ["startup"] * 3 + ["running"] * 12
    rng.shuffle(kinds)
    torn_writes, frames_seen, signals = 0, [], []
    for kind in kinds:
        resume = last_checkpoint(tmp_path)
        proc = start(tmp_path, uri, resume)
        if resume is None:  # the first run must checkpoint once, or nothing can resume
            assert wait_for_new_checkpoint(proc, tmp_path), proc.stderr.read()
        if kind == "write":
            torn_writes += kill_during_write(proc, tmp_path)
            signals.append("SIGKILL")
        else:
            if kind == "startup":
                time.sleep(rng.uniform(0.0, 2.0))  # imports, store, env and model set-up
            else:
                wait_for_new_checkpoint(proc, tmp_path)
                time.sleep(rng.uniform(0.0, 0.4))  # collection, update, write or flush
            name = rng.choice(["SIGINT", "SIGTERM", "SIGKILL"])
            signals.append(name)
            proc.send_signal(getattr(signal, name))
            code = proc.wait(timeout=120)
            expected = {"SIGINT": (130, 0), "SIGTERM": (143, 0), "SIGKILL": (-9, 0)}[name]
            assert code in expected, (kind, name, code, proc.stderr.read()[-2000:])
        state = load_checkpoint(last_checkpoint(tmp_path))  # never torn: the previous one at worst
        frames_seen.append(state["progress"]["frames"])
    final = start(tmp_path, uri, last_checkpoint(tmp_path))
    assert final.wait(timeout=600) == 0, final.stderr.read()[-2000:]

    print(
        f"kills: {list(zip(kinds, signals, strict=True))}; writes cut short: {torn_writes}; "
        f"checkpoint frames after each kill: {frames_seen}"
    )
    assert torn_writes >= 1, "no kill landed inside a checkpoint write"
    assert frames_seen == sorted(frames_seen), "a resume went backwards"
    assert len(set(frames_seen)) >= 10, "kills did not interrupt training at different points"
    [run] = all_runs(uri)
    assert run.info.status == "FINISHED"
    client = MlflowClient(uri)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/objective")]
    assert steps == list(range(BATCH, BUDGET + 1, BATCH))
    final_state = load_checkpoint(last_checkpoint(tmp_path).with_name("final.pt"))
    assert final_state["progress"]["frames"] == BUDGET
