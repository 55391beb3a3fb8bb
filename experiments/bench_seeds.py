"""Many seeds in one program vs PureJaxRL vs one run per seed, CartPole-v1, in one invocation.

For each N in --seeds, three ways to train N seeds x --frames frames each:

- ours, vectorised: ``python -m ppo_torchrl.train --num-seeds N`` with the default recipe
  (CartPole-v1's preset) and the flags after ``--`` (the speed benchmark passes
  ``--epochs 4``: 4 gradient passes over each frame, as PureJaxRL's config makes), ``--compile``
  unless --no-compile, evaluations only at the end, under ``TORCH_LOGS=recompiles`` (the
  count of recompilations is reported: it must be 0). Its frames/s leaves out the first
  iteration, which holds the compilation (reported beside, as ``first_iteration_seconds``);
- PureJaxRL: experiments/purejaxrl_cartpole.py (luchris429/purejaxrl ``ppo.py``, gymnax
  CartPole-v1, its own config) in its own venv (--jax-python), N seeds vmapped in one jit;
  its frames/s is the run after compilation, compile + run beside;
- ours, sequential: N single-seed ``python -m ppo_torchrl.train --seed s`` runs, one after
  the other, the budget spent (``--no-stop-when-solved``); only for N <= --sequential-max
  (their cost is N times one run).

Frames/s are over all seeds: N x frames per seed / training seconds. "solved" is each
seed's final greedy evaluation >= 475 (ours: 100 episodes on gymnasium's env; PureJaxRL:
10 episodes on gymnax's). Each system runs alone on the machine, one after the other;
with ``--repeats R`` ours and PureJaxRL alternate R times (a shared machine's load drifts
over minutes) and the medians are compared.

    .venv/bin/python experiments/bench_seeds.py --seeds 16 1 --frames 500000 --repeats 2 \\
        --sequential-max 0 --jax-python /work/jaxenv/bin/python --purejaxrl /tmp/purejaxrl \\
        --out experiments/results/seeds_cpu_compiled.json -- --epochs 4 --seed 2000

``--in-process`` trains in this process through `SeedsTrainer` and judges each seed by
the torch-native greedy evaluation of every seed at once (100 episodes; the same physics,
held to gymnasium by tests/test_env_parity_cartpole.py): for N in the hundreds, where
N x 100 gymnasium episodes would take hours. The GPU run (``--device cuda``):

    python experiments/bench_seeds.py --seeds 1024 --in-process --device cuda --cudagraphs \\
        --out experiments/results/seeds_gpu.json -- --epochs 4 --seed 5000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run_train(flags: list[str]) -> tuple[dict[str, Any], float, int]:
    """One ``python -m ppo_torchrl.train`` run in a fresh folder: its summary JSON, wall
    seconds and the recompilations torch logged."""
    with tempfile.TemporaryDirectory() as folder:
        summary = Path(folder) / "s.json"
        cmd = [sys.executable, "-m", "ppo_torchrl.train", *flags, "--summary-json", str(summary)]
        started = time.perf_counter()
        env = {**os.environ, "TORCH_LOGS": "recompiles"}
        done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        return json.loads(summary.read_text()), wall, done.stderr.count("Recompiling function")


def ours_in_process(
    n: int, frames: int, device: str, compile_: bool, cudagraphs: bool, extra: list[str]
) -> dict:
    """Train N seeds here; judge them by the torch-native greedy evaluation of all at once."""
    import torch

    from ppo_torchrl.cli.train_args import build_parser, new_run_config
    from ppo_torchrl.run.seeds_trainer import SeedsTrainer

    flags = ["--num-seeds", str(n), "--frames", str(frames), "--no-track", "--device", device,
             *(["--compile"] if compile_ else []), *(["--cudagraphs"] if cudagraphs else []),
             *extra]  # fmt: skip
    cfg, _ = new_run_config(build_parser().parse_args(flags))
    trainer = SeedsTrainer(cfg, torch.device(device))
    for i in range(trainer.iterations):
        trainer.iterate(i)
    finals = trainer.evaluate().tolist()
    after = trainer.train_seconds - trainer.first_iteration_seconds
    return {
        "command": "bench_seeds.py --in-process: " + " ".join(flags),
        "seeds": n,
        "frames_per_seed": trainer.frames,
        "train_seconds": trainer.train_seconds,
        "first_iteration_seconds": trainer.first_iteration_seconds,
        "frames_per_second_all_seeds": n * trainer.frames / trainer.train_seconds,
        "frames_per_second_after_first_iteration": n * (trainer.frames - cfg.frames_per_batch) / after,
        "final_eval": "torch-native greedy, 100 episodes per seed",
        "final_eval_means": finals,
        "fraction_ge_475": sum(f >= 475 for f in finals) / n,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor(),
    }


def ours_vectorized(n: int, frames: int, compile_loss: bool, device: str, extra: list[str]) -> dict[str, Any]:
    flags = ["--num-seeds", str(n), "--frames", str(frames), "--no-track", "--eval-every-frames", "0",
             "--device", device, "--compile" if compile_loss else "--no-compile", *extra]  # fmt: skip
    s, wall, recompiles = run_train(flags)
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
        "recompiles": recompiles,
        "final_eval_means": finals,
        "fraction_ge_475": sum(f >= 475 for f in finals) / len(finals),
        "final_iqm": s["final"]["iqm"],
    }


def ours_sequential(n: int, frames: int) -> dict[str, Any]:
    runs = []
    for seed in range(n):
        flags = ["--seed", str(seed), "--frames", str(frames), "--no-stop-when-solved", "--no-track",
                 "--eval-every-frames", "0"]  # fmt: skip
        s, wall, _ = run_train(flags)
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
    ap.add_argument("--repeats", type=int, default=1, help="alternate ours and PureJaxRL this many times")
    ap.add_argument("--in-process", action="store_true", help="train here, torch-native final evaluation")
    ap.add_argument("--cudagraphs", action="store_true", help="with --in-process on CUDA")
    ap.add_argument("--out", type=Path)
    ap.add_argument("extra", nargs="*", help="after --: more train flags for the vectorised runs")
    args = ap.parse_args()
    doc: dict[str, Any] = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    doc.update({"frames_per_seed": args.frames, "device": args.device,
                "started": time.strftime("%Y-%m-%d %H:%M"),
                "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()}})  # fmt: skip
    doc.setdefault("results", {})
    for n in args.seeds:
        row: dict[str, Any] = {"ours_vectorized_runs": [], "purejaxrl_runs": []}
        for r in range(args.repeats):
            print(f"N = {n}, round {r + 1}/{args.repeats}: ours, vectorised", flush=True)
            if args.in_process:
                ours = ours_in_process(n, args.frames, args.device, args.compile, args.cudagraphs, args.extra)
            else:
                ours = ours_vectorized(n, args.frames, args.compile, args.device, args.extra)
            row["ours_vectorized_runs"].append(ours)
            print(json.dumps({k: v for k, v in ours.items() if k != "final_eval_means"}), flush=True)
            if args.jax_python and args.purejaxrl:
                print(f"N = {n}, round {r + 1}/{args.repeats}: PureJaxRL", flush=True)
                pj = purejaxrl(n, args.jax_python, args.purejaxrl)
                row["purejaxrl_runs"].append(pj)
                print(json.dumps({k: v for k, v in pj.items() if "per_seed" not in k}), flush=True)
        key = "frames_per_second_after_first_iteration"
        row["ours_median_fps"] = statistics.median(run[key] for run in row["ours_vectorized_runs"])
        if row["purejaxrl_runs"]:
            row["purejaxrl_median_fps"] = statistics.median(
                run["frames_per_s_all_seeds"] for run in row["purejaxrl_runs"]
            )
            row["ours_over_purejaxrl"] = row["ours_median_fps"] / row["purejaxrl_median_fps"]
            ratio = row["ours_over_purejaxrl"]
            print(f"N = {n}: ours {row['ours_median_fps']:,.0f} frames/s, PureJaxRL "
                  f"{row['purejaxrl_median_fps']:,.0f}: x{ratio:.2f}", flush=True)  # fmt: skip
        if n <= args.sequential_max:
            print(f"N = {n}: ours, {n} sequential runs", flush=True)
            row["ours_sequential"] = ours_sequential(n, args.frames)
        doc["results"][str(n)] = row
        if args.out:
            args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
