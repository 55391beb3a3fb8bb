"""A disk that fills up under a real run: the run folder on a real small tmpfs (root mounts
it here), filled by another writer while the run trains."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ppo_torchrl.run.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # a real filesystem filled mid-run: docs/testing.md

RUN = ["--frames", "30720", "--no-stop-when-solved", "--checkpoint-every-frames", "2048", "--no-track"]
RUN += ["--eval-every-frames", "4096", "--eval-episodes", "5", "--torch-threads", "1"]


@pytest.fixture
def small_disk(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write until the filesystem says ENOSPC; the filler file is returned."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def start(disk: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    err = tmp_path / "stderr.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppo_torchrl.train", *RUN, "--checkpoint-dir", str(disk / "runs"), *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=err.open("w"),
        text=True,
    )
    deadline = time.monotonic() + 300
    while not list(disk.glob("runs/*/last.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
        time.sleep(0.05)
    return proc, err


def test_training_goes_on_past_checkpoints_a_full_disk_refuses(small_disk: Path, tmp_path: Path) -> None:
    proc, err = start(small_disk, tmp_path)
    filler = fill(small_disk)
    deadline = time.monotonic() + 300
    while "cannot write" not in err.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
        time.sleep(0.05)
    filler.unlink()  # space again: the next checkpoint goes through
    proc.communicate(timeout=600)
    lines = err.read_text().splitlines()
    assert proc.returncode == 0, lines[-20:]
    assert "Traceback" not in err.read_text()
    warned = [line for line in lines if "cannot write" in line]
    assert warned and all("No space left on device" in line for line in warned)
    assert all("last intact checkpoint: " in line for line in warned)
    [run] = list((small_disk / "runs").iterdir())
    assert load_checkpoint(run / "final.pt")["progress"]["frames"] == 30720


def test_a_full_disk_at_the_end_still_reports_the_result(small_disk: Path, tmp_path: Path) -> None:
    proc, err = start(small_disk, tmp_path, "--summary-json", str(small_disk / "summary.json"))
    fill(small_disk)
    out, _ = proc.communicate(timeout=600)
    text = err.read_text()
    assert proc.returncode == 3, text[-2000:]
    assert "Traceback" not in text
    assert "Final greedy evaluation:" in out  # the result is printed whatever the disk says
    [run] = list((small_disk / "runs").iterdir())
    elsewhere = Path("/tmp") / f"ppo_torchrl-{run.name}-final.pt"
    try:
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert any(
            f"{run / 'final.pt'} (No space left on device); wrote it to {elsewhere}" in e for e in errors
        )
        assert any("summary not written" in e for e in errors), errors
        assert all("last intact checkpoint: " in e for e in errors)
        assert load_checkpoint(elsewhere)["progress"]["frames"] == 30720
    finally:
        elsewhere.unlink(missing_ok=True)
