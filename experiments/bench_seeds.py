"""Many seeds in one program vs PureJaxRL vs one run per seed, CartPole-v1, in one invocation.

For each N in --seeds, three ways to train N seeds x --frames frames each:

- ours, vectorised: ``python -m ppo_torchrl.train --num-seeds N`` with the default recipe
  (CartPole-v1's preset), ``--compile`` unless --no-compile, evaluations only at the end;
  its training seconds include the first update's compilation, reported beside;
- PureJaxRL: experiments/purejaxrl_cartpole.py (luchris429/purejaxrl ``ppo.py``, gymnax
  CartPole-v1, its own config) in its own venv (--jax-python), N seeds vmapped in one jit;
  its frames/s is the run after compilation, compile + run beside;
- ours, sequential: N single-seed ``python -m ppo_torchrl.train --seed s`` runs, one after
  the other, the budget spent (``--no-stop-when-solved``); only for N <= --sequential-max
  (their cost is N times one run).

Frames/s are over all seeds: N x frames per seed / training seconds. "solved" is each
seed's final greedy evaluation >= 475 (ours: 100 episodes on gymnasium's env; PureJaxRL:
10 episodes on gymnax's). Each system runs alone on the machine, one after the other.

    .venv/bin/python experiments/bench_seeds.py --seeds 1 16 --frames 500000 \\
        --jax-python /work/jaxenv/bin/python --purejaxrl /tmp/purejaxrl \\
        --out experiments/results/seeds_cpu.json
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

HERE = Path(__file__).resolve().parent


def run_train(flags: list[str]) -> tuple[dict[str, Any], float]:
    """One ``python -m ppo_torchrl.train`` run in a fresh folder: its summary JSON and wall seconds."""
    with tempfile.TemporaryDirectory() as folder:
        summary = Path(folder) / "s.json"
        cmd = [sys.executable, "-m", "ppo_torchrl.train", *flags, "--summary-json", str(summary)]
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        return json.loads(summary.read_text()), wall


def ours_vectorized(n: int, frames: int, compile_loss: bool, device: str, extra: list[str]) -> dict[str, Any]:
    flags = ["--num-seeds", str(n), "--frames", str(frames), "--no-track", "--eval-every-frames", "0",
             "--device", device, "--compile" if compile_loss else "--no-compile", *extra]  # fmt: skip
    s, wall = run_train(flags)
    finals = s["final_eval_means"]
    return {
        "command": " ".join(["python -m ppo_torchrl.train", *flags]),
        "seeds": n,
        "frames_per_seed": s["frames_per_seed"],
        "train_seconds": s["train_seconds"],
        "first_iteration_seconds": s["first_iteration_seconds"],
        "frames_per_second_all_seeds": s["frames_per_second_all_seeds"],
        "frames_per_second_after_first_iteration": n
        * (s["frames_per_seed"] - s["frames_per_batch"])
        / max(s["train_seconds"] - s["first_iteration_seconds"], 1e-9),
        "eval_seconds": s["eval_seconds"],
        "wall_seconds": wall,
        "final_eval_means": finals,
        "fraction_ge_475": sum(f >= 475 for f in finals) / len(finals),
        "final_iqm": s["final"]["iqm"],
    }


def ours_sequential(n: int, frames: int) -> dict[str, Any]:
    runs = []
    for seed in range(n):
        flags = ["--seed", str(seed), "--frames", str(frames), "--no-stop-when-solved", "--no-track",
                 "--eval-every-frames", "0"]  # fmt: skip
        s, wall = run_train(flags)
        runs.append({"seed": seed, "train_seconds": s["train_seconds"], "wall_seconds": wall,
                     "frames": s["frames"], "final_eval_mean": s["final_eval_mean"]})  # fmt: skip
        print(f"  sequential seed {seed}: {runs[-1]}", flush=True)
    train = sum(r["train_seconds"] for r in runs)
    return {
        "command": "python -m ppo_torchrl.train --seed S --frames F --no-stop-when-solved --no-track "
        "--eval-every-frames 0",
        "seeds": n,
        "train_seconds": train,
        "wall_seconds": sum(r["wall_seconds"] for r in runs),
        "frames_per_second_all_seeds": sum(r["frames"] for r in runs) / train,
        "fraction_ge_475": sum(r["final_eval_mean"] >= 475 for r in runs) / n,
        "runs": runs,
    }


def purejaxrl(n: int, jax_python: str, folder: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pj.json"
        cmd = [
            jax_python,
            str(HERE / "purejaxrl_cartpole.py"),
            "--purejaxrl",
            folder,
            "--seeds",
            str(n),
            "--out",
            str(out),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"PureJaxRL failed:\n{done.stderr[-2000:]}")
        return json.loads(out.read_text())["results"][str(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--frames", type=int, default=500_000, help="per seed")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--jax-python", help="python of a venv with jax, flax, optax, gymnax, distrax")
    ap.add_argument("--purejaxrl", help="folder holding the patched purejaxrl package")
    ap.add_argument("--sequential-max", type=int, default=16, help="largest N also run as N single runs")
    ap.add_argument("--out", type=Path)
    ap.add_argument("extra", nargs="*", help="after --: more train flags for the vectorised runs")
    args = ap.parse_args()
    doc: dict[str, Any] = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    doc.update({"frames_per_seed": args.frames, "device": args.device,
                "started": time.strftime("%Y-%m-%d %H:%M"),
                "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()}})  # fmt: skip
    doc.setdefault("results", {})
    for n in args.seeds:
        row: dict[str, Any] = {}
        print(f"N = {n}: ours, vectorised", flush=True)
        row["ours_vectorized"] = ours_vectorized(n, args.frames, args.compile, args.device, args.extra)
        print(
            json.dumps({k: v for k, v in row["ours_vectorized"].items() if k != "final_eval_means"}),
            flush=True,
        )
        if args.jax_python and args.purejaxrl:
            print(f"N = {n}: PureJaxRL", flush=True)
            row["purejaxrl"] = purejaxrl(n, args.jax_python, args.purejaxrl)
            print(json.dumps({k: v for k, v in row["purejaxrl"].items() if "per_seed" not in k}), flush=True)
        if n <= args.sequential_max:
            print(f"N = {n}: ours, {n} sequential runs", flush=True)
            row["ours_sequential"] = ours_sequential(n, args.frames)
        doc["results"][str(n)] = row
        if args.out:
            args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
