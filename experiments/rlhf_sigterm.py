"""Issue 29: SIGTERM to `python -m ppo_torchrl.rlhf --model smollm2-135m` at its defaults.

Starts the real-model run (SQLite MLflow store in a scratch folder), waits for the first
checkpoint, lets update 2 run 10 s, sends SIGTERM and reports the exit status, the seconds
to exit, the checkpoint's update and size, and the MLflow run's status.

    .venv/bin/python experiments/rlhf_sigterm.py --out experiments/results/rlhf_sigterm_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/rlhf_sigterm", help="scratch folder (emptied)")
    parser.add_argument("--out", required=True, help="results JSON")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    command = [sys.executable, "-m", "ppo_torchrl.rlhf", "--model", "smollm2-135m", "--time-budget", "10"]
    proc = subprocess.Popen(
        command,
        cwd=work,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (found := list(work.glob("rlhf_runs/*/checkpoint.pt"))):
        if proc.poll() is not None:
            raise SystemExit(f"the run ended before its first checkpoint: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    time.sleep(10.0)  # mid-way through update 2
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - sent
    checkpoint = found[0]
    result = {
        "exit_status": proc.returncode,
        "seconds_to_exit": round(took, 2),
        "checkpoint_update": torch.load(checkpoint, weights_only=True)["update"],
        "checkpoint_mb": round(checkpoint.stat().st_size / 2**20, 1),
        "mlflow_status": MlflowClient(uri).get_run(checkpoint.parent.name).info.status,
        "last_lines": out.strip().splitlines()[-3:] + err.strip().splitlines()[-1:],
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python " + " ".join(sys.argv),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
