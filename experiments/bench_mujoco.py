"""MuJoCo at 1M frames with the shipped presets, beside SB3's throughput on the same env.

    .venv/bin/pip install -e '.[mujoco,bench]'
    .venv/bin/python experiments/bench_mujoco.py    # HalfCheetah, Hopper, Walker2d; seeds 0 1
    .venv/bin/python experiments/bench_mujoco.py --envs Hopper-v5 --seeds 2

For each env, in one invocation and one process at a time (so that no two share the 2
cores): SB3's PPO with its default hyperparameters and VecNormalize (the recipe CleanRL's
anchors follow) trains ``--sb3-frames`` frames and its frames/s is taken; then
``python -m ppo_torchrl.train --env ENV --seed S --no-track`` (the env's preset) trains
1M frames per seed. Our final figure is the run's own final deterministic evaluation
(10 episodes, the preset's ``eval_episodes``), our frames/s is frames / training seconds
(evaluation excluded). Results are written after every run to
experiments/results/mujoco.json, with the learning curves in mujoco.png.
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
RESULTS = HERE / "results"
# Published 1M-frame PPO figures (see the README for the sources).
CLEANRL = {"HalfCheetah-v5": 1442.6, "Hopper-v5": 2382.9, "Walker2d-v5": 2288.0}
RL_ZOO = {"HalfCheetah-v5": 5819.0, "Hopper-v5": 2410.0, "Walker2d-v5": 3479.0}

SB3_SCRIPT = """
import sys, time, gymnasium as gym, torch
torch.set_num_threads(1)  # as ours (torch_threads 1): SB3's small networks are faster on one thread
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize
env = VecNormalize(make_vec_env(sys.argv[1], n_envs=1, seed=0))
model = PPO("MlpPolicy", env, seed=0, device="cpu", verbose=0)
started = time.perf_counter()
model.learn(int(sys.argv[2]))
print(int(sys.argv[2]) / (time.perf_counter() - started))
"""


def sb3_fps(env_id: str, frames: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", SB3_SCRIPT, env_id, str(frames)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def ours(env_id: str, seed: int, frames: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [
            sys.executable, "-m", "ppo_torchrl.train", "--env", env_id, "--seed", str(seed),
            "--frames", str(frames), "--no-track", "--checkpoint-dir", tmp, "--summary-json", str(summary),
        ]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=HERE.parent)
        wall = time.perf_counter() - started
        s = json.loads(summary.read_text())
    return {
        "seed": seed,
        "final_eval_mean": s["final_eval_mean"],
        "final_eval_std": s["final_eval_std"],
        "frames": s["frames"],
        "train_seconds": s["train_seconds"],
        "frames_per_second": s["frames"] / s["train_seconds"],
        "wall_seconds": round(wall, 1),
        "evals": [[e["frames"], e["mean"]] for e in s["evals"]],
    }


def summarise(results: dict[str, Any]) -> None:
    for env_id, r in results["envs"].items():
        runs = r["runs"]
        if not runs:
            continue
        finals = [run["final_eval_mean"] for run in runs]
        r["mean_final"] = sum(finals) / len(finals)
        r["mean_frames_per_second"] = sum(run["frames_per_second"] for run in runs) / len(runs)
        if r.get("sb3_frames_per_second"):
            r["throughput_ratio_vs_sb3"] = r["mean_frames_per_second"] / r["sb3_frames_per_second"]
        r["at_least_cleanrl"] = r["mean_final"] >= CLEANRL.get(env_id, float("inf"))


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(results["envs"])
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for ax, env_id in zip(axes[0], envs, strict=True):
        for run in results["envs"][env_id]["runs"]:
            frames, means = zip(*run["evals"], strict=True)
            ax.plot(frames, means, label=f"seed {run['seed']}")
        if env_id in CLEANRL:
            ax.axhline(CLEANRL[env_id], color="gray", ls="--", label="CleanRL 1M")
        ax.set_title(env_id)
        ax.set_xlabel("frames")
        ax.set_ylabel("greedy evaluation (10 episodes)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--sb3-frames", type=int, default=50_000)
    parser.add_argument("--out", default="mujoco", help="results file stem in experiments/results/")
    parser.add_argument("--sb3-only", action="store_true", help="only (re)measure SB3's frames/s")
    args = parser.parse_args()
    path = RESULTS / f"{args.out}.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"envs": {}}
    results.update(
        date=time.strftime("%Y-%m-%d"),
        machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        anchors={"cleanrl_1M": CLEANRL, "rl_zoo": RL_ZOO},
    )
    for env_id in args.envs:
        entry = results["envs"].setdefault(env_id, {"runs": []})
        entry["sb3_frames_per_second"] = sb3_fps(env_id, args.sb3_frames)
        print(f"{env_id}: SB3 {entry['sb3_frames_per_second']:,.0f} frames/s", flush=True)
        summarise(results)
        path.write_text(json.dumps(results, indent=1) + "\n")
        for seed in [] if args.sb3_only else args.seeds:
            run = ours(env_id, seed, args.frames)
            entry["runs"] = [r for r in entry["runs"] if r["seed"] != seed] + [run]
            summarise(results)
            path.write_text(json.dumps(results, indent=1) + "\n")
            plot(results, path.with_suffix(".png"))
            print(
                f"{env_id} seed {seed}: final {run['final_eval_mean']:.1f}, "
                f"{run['frames_per_second']:,.0f} frames/s, {run['wall_seconds']:.0f} s",
                flush=True,
            )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
