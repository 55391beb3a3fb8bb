"""Scale-out on this machine: the three collectors on HalfCheetah-v5, and sweep wall time.

    .venv/bin/python experiments/bench_scaling.py [--quick]

1. Collection alone: frames/s of each collector (``single``, ``processes`` x2, ``ray`` x2)
   with the HalfCheetah-v5 preset (16 envs x 128 steps, its policy sampling every action,
   the weights sent to the workers after every batch as in training), over 10 batches after
   one warm-up batch.
2. Training: ``python -m ppo_torchrl.train --env HalfCheetah-v5 --frames 100000`` with each
   collector; seconds of training per 100k frames (the summary's ``train_seconds``: start-up
   and evaluation excluded) and the wall time of the whole command (start-up included).
3. Sweeps: ``python -m ppo_torchrl.sweep --seeds 0-3`` of the default CartPole-v1 run
   (100k frames, ``--no-stop-when-solved``, tracked in a fresh SQLite store) with 1 and
   2 local workers and 2 Ray workers: wall time of the whole sweep.

Nothing else should run meanwhile: there are only 2 cores. Writes
experiments/results/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "scaling.json"
COLLECTORS = (("single", 1), ("processes", 2), ("ray", 2))


def collection_fps(collector: str, workers: int, batches: int) -> dict[str, Any]:
    from ppo_torchrl.run.config import PPOConfig
    from ppo_torchrl.run.presets import resolve_preset
    from ppo_torchrl.run.trainer import Trainer

    _, preset = resolve_preset("auto", "HalfCheetah-v5")
    cfg = PPOConfig(
        **{**preset, "env": "HalfCheetah-v5", "collector": collector, "collectors": workers, "track": False}
    )
    started = time.perf_counter()
    trainer = Trainer(cfg, run_dir=tempfile.mkdtemp())
    source = trainer.learner.collection.batches()
    next(source)  # warm-up: worker start, first weights
    ready = time.perf_counter()
    for _ in range(batches):
        next(source)
        trainer.learner.collection.sync_weights()
    seconds = time.perf_counter() - ready
    trainer.learner.collection.shutdown()
    frames = batches * cfg.frames_per_batch
    return {"frames": frames, "seconds": seconds, "frames_per_second": frames / seconds,
            "startup_seconds": ready - started}  # fmt: skip


def training(collector: str, workers: int, frames: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "ppo_torchrl.train", "--env", "HalfCheetah-v5",
               "--frames", str(frames), "--collector", collector, "--collectors", str(workers), "--no-track",
               "--eval-every-frames", "0", "--eval-episodes", "2", "--checkpoint-dir", tmp,
               "--summary-json", str(summary)]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
        wall = time.perf_counter() - started
        result = json.loads(summary.read_text())
    return {"frames": result["frames"], "train_seconds": result["train_seconds"], "wall_seconds": wall,
            "train_seconds_per_100k": result["train_seconds"] * 100_000 / result["frames"],
            "frames_per_second": result["frames"] / result["train_seconds"]}  # fmt: skip


def sweep(workers: int, backend: str, frames: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        cmd = [sys.executable, "-m", "ppo_torchrl.sweep", "--seeds", "0-3", "--workers", str(workers),
               "--backend", backend, "--frames", str(frames), "--no-stop-when-solved",
               "--sweep-dir", f"{tmp}/sweep"]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp, env=env)
        wall = time.perf_counter() - started
        summary = json.loads(Path(f"{tmp}/sweep/summary.json").read_text())
    trials = summary["trials"]
    return {"trials": len(trials), "wall_seconds": wall,
            "trial_train_seconds": [t["train_seconds"] for t in trials],
            "final_eval_mean": summary["aggregates"]["all"]["mean"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets, to check the script runs")
    args = parser.parse_args()
    batches, frames, sweep_frames = (2, 4096, 4096) if args.quick else (10, 100_000, 100_000)
    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                           "collection": {}, "training": {}, "sweep": {}}  # fmt: skip
    for collector, workers in COLLECTORS:
        name = f"{collector}x{workers}"
        out["collection"][name] = collection_fps(collector, workers, batches)
        print(f"collection {name}: {out['collection'][name]['frames_per_second']:,.0f} frames/s", flush=True)
    for collector, workers in COLLECTORS:
        name = f"{collector}x{workers}"
        out["training"][name] = training(collector, workers, frames)
        t = out["training"][name]
        per_100k, wall = t["train_seconds_per_100k"], t["wall_seconds"]
        print(f"training {name}: {per_100k:.1f} s per 100k frames, {wall:.1f} s wall", flush=True)
    for workers, backend in ((1, "local"), (2, "local"), (2, "ray")):
        name = f"{backend}x{workers}"
        out["sweep"][name] = sweep(workers, backend, sweep_frames)
        print(f"sweep of 4 seeds, {name}: {out['sweep'][name]['wall_seconds']:.1f} s wall", flush=True)
    if not args.quick:
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
