"""Solved and stays solved on CartPole-v1: ppo_torchrl's defaults against Stable-Baselines3.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python experiments/bench_cartpole.py            # seeds 0-4, both libraries

Each run is a fresh process with rl-zoo's CartPole-v1 budget, 100k frames, spent whole.
Ours is exactly ``python -m ppo_torchrl.train --seed S --frames 100000
--no-stop-when-solved`` (the defaults, MLflow tracking on, into a scratch store). SB3 is PPO
with the rl-zoo CartPole-v1 hyperparameters. Both are evaluated alike, by code written once:
after an update, once every 2048 frames, the greedy policy plays 100 episodes of
gymnasium's CartPole-v1 (``ppo_torchrl.run.evaluation.evaluate_actions``, the same start
states for both), and at the end of the budget. Evaluation time is off both clocks.
Per seed: the final evaluation; *stable solve*, the first evaluation from which every later
one stays >= 475 (training seconds and frames to it); and the *first crossing* of 475,
which alone says nothing about staying solved. Peak RSS is read from the finished process
(``wait4``).

Writes experiments/results/bench_cartpole.json and bench_cartpole.png.
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


def ours(seed: int, scratch: str, config: str | None = None) -> dict[str, Any]:
    summary = Path(scratch) / f"ours{seed}.json"
    cmd = [sys.executable, "-m", "ppo_torchrl.train", "--seed", str(seed), "--frames", str(BUDGET)]
    cmd += ["--config", str(Path(config).resolve())] if config else []
    _, rss = run_process([*cmd, "--no-stop-when-solved", "--summary-json", str(summary)], scratch)
    s = json.loads(summary.read_text())
    return row(seed, [(e["frames"], e["train_seconds"], e["mean"]) for e in s["evals"]], rss)


def sb3(seed: int, scratch: str) -> dict[str, Any]:
    out = Path(scratch) / f"sb3_{seed}.json"
    _, rss = run_process([sys.executable, __file__, "--sb3-worker", str(seed), str(out)], scratch)
    return row(seed, [tuple(e) for e in json.loads(out.read_text())], rss)


def row(seed: int, evals: list[tuple[int, float, float]], rss: float) -> dict[str, Any]:
    """One run's figures from its evaluation history (frames, training seconds, mean)."""
    first = next((e for e in evals if e[2] >= THRESHOLD), None)
    stable = None
    if evals and evals[-1][2] >= THRESHOLD:
        start = len(evals) - 1
        while start > 0 and evals[start - 1][2] >= THRESHOLD:
            start -= 1
        stable = evals[start]
    return {
        "seed": seed,
        "final": evals[-1][2],
        "stable_frames": stable[0] if stable else None,
        "stable_seconds": stable[1] if stable else None,
        "first_frames": first[0] if first else None,
        "first_seconds": first[1] if first else None,
        "peak_rss_mib": round(rss, 1),
        "evals": [[f, round(t, 3), m] for f, t, m in evals],
    }


def sb3_worker(seed: int, out: Path) -> None:
    """One SB3 run with the rl-zoo CartPole-v1 hyperparameters over the whole budget, its
    greedy evaluations on the same cadence as ours, training seconds measured alike."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from ppo_torchrl.run.evaluation import evaluate_actions

    def linear(start: float):  # rl-zoo's lin_<start>: decays to 0 over the budget
        return lambda progress_remaining: progress_remaining * start

    class Evaluations(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_eval, self.eval_seconds, self.history = EVAL_EVERY, 0.0, []

        def _on_rollout_start(self) -> None:  # runs after each update
            if self.num_timesteps >= self.next_eval:
                self.evaluate()

        def evaluate(self) -> None:
            self.next_eval += EVAL_EVERY
            started = time.perf_counter()
            train_seconds = started - self.started - self.eval_seconds
            result = evaluate_actions(
                lambda obs: self.model.predict(obs, deterministic=True)[0], "CartPole-v1", 100, seed
            )
            self.history.append((self.num_timesteps, train_seconds, result.mean))
            self.eval_seconds += time.perf_counter() - started

        def _on_step(self) -> bool:
            return True

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
    check = Evaluations()
    check.started = time.perf_counter()
    model.learn(total_timesteps=BUDGET, callback=check)
    if not check.history or check.history[-1][0] != model.num_timesteps:
        check.evaluate()  # the end of the budget, as ours evaluates its final policy
    out.write_text(json.dumps(check.history))


def median_or_none(values: list[float | None]) -> float | None:
    """Median with a seed that never got there counted as worst; None if most never did."""
    ranked = sorted(values, key=lambda v: float("inf") if v is None else v)
    return ranked[(len(ranked) - 1) // 2] if len(ranked) % 2 else _mid(ranked)


def _mid(ranked: list[float | None]) -> float | None:
    a, b = ranked[len(ranked) // 2 - 1], ranked[len(ranked) // 2]
    return None if a is None or b is None else (a + b) / 2


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "final_at_least_threshold": sum(r["final"] >= THRESHOLD for r in rows),
        "stably_solved": sum(r["stable_frames"] is not None for r in rows),
        "median_stable_seconds": median_or_none([r["stable_seconds"] for r in rows]),
        "median_stable_frames": median_or_none([r["stable_frames"] for r in rows]),
        "median_first_seconds": median_or_none([r["first_seconds"] for r in rows]),
        "median_first_frames": median_or_none([r["first_frames"] for r in rows]),
        "min_final": min(r["final"] for r in rows),
        "max_peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
    }


def plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, color in (("ppo_torchrl", "tab:blue"), ("sb3", "tab:orange")):
        for i, run in enumerate(record[name]["runs"]):
            frames, seconds, means = zip(*run["evals"], strict=True)
            label = ("ppo_torchrl" if name == "ppo_torchrl" else "SB3 (rl-zoo)") if i == 0 else None
            axes[0].plot(frames, means, color=color, alpha=0.6, lw=1, label=label)
            axes[1].plot(seconds, means, color=color, alpha=0.6, lw=1, label=label)
    for ax, xlabel in ((axes[0], "frames"), (axes[1], "training seconds (evaluation excluded)")):
        ax.axhline(THRESHOLD, ls="--", c="gray")
        ax.set(xlabel=xlabel, ylabel="greedy 100-episode mean return", ylim=(0, 520))
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"CartPole-v1, seeds {record['seeds']}, every evaluation of a 100k-frame budget ({record['date']})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--config", help="a YAML of PPOConfig fields for our runs (default: the defaults)")
    parser.add_argument("--out", default="bench_cartpole", help="results file stem in experiments/results")
    parser.add_argument("--sb3-worker", nargs=2, metavar=("SEED", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_worker:
        sb3_worker(int(args.sb3_worker[0]), Path(args.sb3_worker[1]))
        return
    rows: dict[str, list[dict[str, Any]]] = {"ppo_torchrl": [], "sb3": []}
    runners = (("ppo_torchrl", lambda seed, scratch: ours(seed, scratch, args.config)), ("sb3", sb3))
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:  # interleaved, so machine noise hits both alike
            for name, runner in runners:
                r = runner(seed, scratch)
                rows[name].append(r)
                print(
                    f"{name:12s} seed {seed}: final {r['final']:.1f}, stable from {fmt(r['stable_frames'])} "
                    f"frames / {fmt(r['stable_seconds'], '.2f')} s, first crossing {fmt(r['first_frames'])} "
                    f"frames / {fmt(r['first_seconds'], '.2f')} s, peak RSS {r['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "seeds": args.seeds,
        "budget_frames": BUDGET,
        "ours_config": Path(args.config).read_text() if args.config else "defaults",
        "criterion": f"greedy 100-episode eval >= {THRESHOLD}, every {EVAL_EVERY} frames and at the end, "
        "eval off the clock; stable = from there on every evaluation >= threshold",
    }
    for name, runs in rows.items():
        record[name] = {**summarize(runs), "runs": runs}
    ours_s, sb3_s = record["ppo_torchrl"], record["sb3"]
    for key in ("stable_seconds", "stable_frames", "first_seconds", "first_frames"):
        a, b = ours_s[f"median_{key}"], sb3_s[f"median_{key}"]
        record[f"ratio_median_{key}"] = a / b if a is not None and b else None
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(record, indent=2) + "\n")
    plot(record, RESULTS / f"{args.out}.png")
    for name in rows:
        r = record[name]
        print(
            f"{name:12s} final >= {THRESHOLD:.0f} on {r['final_at_least_threshold']}/{len(args.seeds)} "
            f"(lowest {r['min_final']:.1f}), stably solved {r['stably_solved']}/{len(args.seeds)}, "
            f"median stable {fmt(r['median_stable_seconds'], '.2f')} s / "
            f"{fmt(r['median_stable_frames'])} frames, median first crossing "
            f"{fmt(r['median_first_seconds'], '.2f')} s, peak RSS {r['max_peak_rss_mib']:.0f} MiB"
        )
    print(
        f"ours/SB3, medians: stable {fmt(record['ratio_median_stable_seconds'], '.2f')}x time, "
        f"{fmt(record['ratio_median_stable_frames'], '.2f')}x frames -> {RESULTS / args.out}.json"
    )


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "never" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
