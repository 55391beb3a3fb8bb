"""The default ``train --seed S`` on two trees, interleaved: time to a stable solve and the end.

Issue 28 made the default CartPole run the one-seed case of the many-seeds program (the
program route, run/learners.py); before, it learned on TorchRL's Collector and PPOUpdate.
This runs ``train --seed S --frames 100000 --no-stop-when-solved`` for each seed on the old
tree (a checkout given by --old) and on this one, alternating, so both meet the same machine
load, and writes each run's final greedy mean, its stable solve (frames and training seconds
from which every greedy evaluation to the end reached 475) and its training seconds.

    python experiments/default_train_routes.py --old /tmp/oldtree --seeds 0 1 2 3 4 \
        --out experiments/results/default_train_routes.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def run(tree: Path, seed: int, frames: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, "-m", "ppo_torchrl.train", "--seed", str(seed), "--frames", str(frames),
               "--no-stop-when-solved", "--no-track", "--summary-json", "s.json"]  # fmt: skip
        done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{tree} seed {seed}: exit {done.returncode}\n{done.stderr[-2000:]}")
        s = json.loads((Path(folder) / "s.json").read_text())
    evals, stable = s["evals"], s["stable_solved_at_frames"]
    return {
        "seed": seed,
        "final_eval_mean": s["final_eval_mean"],
        "stable_solved_at_frames": s["stable_solved_at_frames"],
        "stable_solved_at_seconds": s["stable_solved_at_seconds"],
        "train_seconds": s["train_seconds"],
        "evals_below_475_after_stable": sum(
            1 for e in evals if stable is not None and e["frames"] >= stable and e["mean"] < 475
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="checkout of the tree to compare with")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = {"old": [], "new": []}
    for seed in args.seeds:
        for name, tree in (("old", args.old), ("new", HERE)):
            row = run(tree, seed, args.frames)
            rows[name].append(row)
            print(name, json.dumps(row), flush=True)

    def summary(runs: list[dict]) -> dict:
        frames = [r["stable_solved_at_frames"] for r in runs]
        seconds = [r["stable_solved_at_seconds"] for r in runs]
        solved = all(f is not None for f in frames)
        return {
            "all_stably_solved": solved,
            "final_min": min(r["final_eval_mean"] for r in runs),
            "stable_frames_median": statistics.median(frames) if solved else None,
            "stable_frames_mean": statistics.mean(frames) if solved else None,
            "stable_seconds_median": statistics.median(seconds) if solved else None,
            "stable_seconds_mean": statistics.mean(seconds) if solved else None,
            "train_seconds_mean": statistics.mean(r["train_seconds"] for r in runs),
        }

    out = {
        "what": f"train --seed S --frames {args.frames} --no-stop-when-solved --no-track, old tree "
        f"({args.old}) and this tree, interleaved, {time.strftime('%Y-%m-%d')}",
        "runs": rows,
        "summary": {name: summary(runs) for name, runs in rows.items()},
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))


if __name__ == "__main__":
    main()
