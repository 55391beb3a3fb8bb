"""Time-to-solve CartPole-v1: ppo_torchrl's default against Stable-Baselines3, side by side.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python experiments/bench_cartpole.py            # seeds 0-4, both libraries

Each run is a fresh process. Ours is exactly ``python -m ppo_torchrl.train --seed S`` (the
default config, MLflow tracking on, into a scratch store). SB3 is PPO with the rl-zoo
CartPole-v1 hyperparameters. Both use the same solved criterion, implemented once: after
an update, once every 2048 frames, the greedy policy plays 100 episodes of gymnasium's
CartPole-v1 (``ppo_torchrl.run.evaluation.evaluate_actions``, the same start states for both);
a mean >= 475 is solved. Evaluation time is off both clocks. SB3 gets rl-zoo's budget of
100k frames (its learning-rate schedule depends on it); ours runs with its defaults.
Peak RSS is read from the finished process (``wait4``).

Writes experiments/results/bench_cartpole.json and bench_cartpole.png.
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

RESULTS = Path(__file__).parent / "results"
EVAL_EVERY = 2048
BUDGET = 100_000
THRESHOLD = 475.0


def run_process(cmd: list[str], cwd: str) -> tuple[int, float]:
    """Run ``cmd``; return its exit status and its peak resident memory in MiB."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{err[-2000:]}")
    return code, usage.ru_maxrss / 1024


def ours(seed: int, scratch: str) -> dict[str, Any]:
    summary = Path(scratch) / f"ours{seed}.json"
    _, rss = run_process(
        [sys.executable, "-m", "ppo_torchrl.train", "--seed", str(seed), "--summary-json", str(summary)],
        scratch,
    )
    s = json.loads(summary.read_text())
    return {
        "seed": seed,
        "solved": s["solved"],
        "seconds": s["train_seconds"],
        "frames": s["solved_at_frames"] or s["frames"],
        "peak_rss_mib": round(rss, 1),
    }


def sb3(seed: int, scratch: str) -> dict[str, Any]:
    out = Path(scratch) / f"sb3_{seed}.json"
    _, rss = run_process([sys.executable, __file__, "--sb3-worker", str(seed), str(out)], scratch)
    return {**json.loads(out.read_text()), "peak_rss_mib": round(rss, 1)}


def sb3_worker(seed: int, out: Path) -> None:
    """One SB3 run with the rl-zoo CartPole-v1 hyperparameters, timed like ours."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from ppo_torchrl.run.evaluation import evaluate_actions

    def linear(start: float):  # rl-zoo's lin_<start>: decays to 0 over the budget
        return lambda progress_remaining: progress_remaining * start

    class SolvedCheck(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_eval, self.eval_seconds, self.solved_at = EVAL_EVERY, 0.0, None

        def _on_rollout_start(self) -> None:  # runs after each update
            if self.num_timesteps < self.next_eval or self.solved_at is not None:
                return
            self.next_eval += EVAL_EVERY
            started = time.perf_counter()
            result = evaluate_actions(
                lambda obs: self.model.predict(obs, deterministic=True)[0], "CartPole-v1", 100, seed
            )
            self.eval_seconds += time.perf_counter() - started
            if result.mean >= THRESHOLD:
                self.solved_at = self.num_timesteps

        def _on_step(self) -> bool:
            return self.solved_at is None

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        ent_coef=0.0,
        learning_rate=linear(1e-3),
        clip_range=linear(0.2),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    check = SolvedCheck()
    started = time.perf_counter()
    model.learn(total_timesteps=BUDGET, callback=check)
    seconds = time.perf_counter() - started - check.eval_seconds
    out.write_text(
        json.dumps(
            {
                "seed": seed,
                "solved": check.solved_at is not None,
                "seconds": seconds,
                "frames": check.solved_at or model.num_timesteps,
            }
        )
    )


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "solved": sum(r["solved"] for r in rows),
        "median_seconds": statistics.median(r["seconds"] for r in rows),
        "max_seconds": max(r["seconds"] for r in rows),
        "median_frames": statistics.median(r["frames"] for r in rows),
        "max_peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
    }


def plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in ((axes[0], "seconds", "time to solve (s)"), (axes[1], "frames", "frames to solve")):
        data = [[r[key] for r in record[name]["runs"]] for name in ("ppo_torchrl", "sb3")]
        ax.boxplot(data, tick_labels=["ppo_torchrl", "SB3 (rl-zoo)"])
        for i, values in enumerate(data, start=1):
            ax.plot([i] * len(values), values, "o", alpha=0.6)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
    fig.suptitle(
        f"CartPole-v1, seeds {record['seeds']}, greedy 100-episode eval >= 475 ({record['date']})", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sb3-worker", nargs=2, metavar=("SEED", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_worker:
        sb3_worker(int(args.sb3_worker[0]), Path(args.sb3_worker[1]))
        return
    rows: dict[str, list[dict[str, Any]]] = {"ppo_torchrl": [], "sb3": []}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:  # interleaved, so machine noise hits both alike
            for name, runner in (("ppo_torchrl", ours), ("sb3", sb3)):
                row = runner(seed, scratch)
                rows[name].append(row)
                print(
                    f"{name:12s} seed {seed}: solved={row['solved']} {row['seconds']:.2f} s "
                    f"{row['frames']:,} frames, peak RSS {row['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "seeds": args.seeds,
        "criterion": f"greedy 100-episode eval >= {THRESHOLD}, every {EVAL_EVERY} frames, eval off the clock",
    }
    for name, runs in rows.items():
        record[name] = {**summarize(runs), "runs": runs}
    ours_s, sb3_s = record["ppo_torchrl"], record["sb3"]
    record["ratio_median_seconds"] = ours_s["median_seconds"] / sb3_s["median_seconds"]
    record["ratio_median_frames"] = ours_s["median_frames"] / sb3_s["median_frames"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_cartpole.json").write_text(json.dumps(record, indent=2) + "\n")
    plot(record, RESULTS / "bench_cartpole.png")
    for name in rows:
        r = record[name]
        print(
            f"{name:12s} solved {r['solved']}/{len(args.seeds)}  median {r['median_seconds']:.2f} s "
            f"(max {r['max_seconds']:.2f})  median {r['median_frames']:,.0f} frames  "
            f"peak RSS {r['max_peak_rss_mib']:.0f} MiB"
        )
    print(
        f"ours/SB3: time {record['ratio_median_seconds']:.2f}x, frames {record['ratio_median_frames']:.2f}x"
        f" -> {RESULTS / 'bench_cartpole.json'}"
    )


if __name__ == "__main__":
    main()
