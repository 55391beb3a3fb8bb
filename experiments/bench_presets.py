"""Each shipped preset, trained as a user would: one seed, its own budget, against random.

    .venv/bin/python experiments/bench_presets.py Ant-v5 Reacher-v5 ...

Runs ``python -m ppo_torchrl.train --env ENV --seed S --no-track`` (the env's preset) in a
subprocess, takes the run's final greedy evaluation, and measures a uniformly random
policy over 10 episodes. Results are merged env by env into
experiments/results/presets.json as each run ends, so a long queue can be stopped and
picked up again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from other_envs import random_policy_return

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "presets.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("envs", nargs="+")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for env_id in args.envs:
        with tempfile.TemporaryDirectory() as tmp:
            summary = Path(tmp) / "s.json"
            cmd = [sys.executable, "-m", "ppo_torchrl.train", "--env", env_id, "--seed", str(args.seed),
                   "--no-track", "--checkpoint-dir", tmp, "--summary-json", str(summary)]  # fmt: skip
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=HERE.parent)
            s = json.loads(summary.read_text())
        rand_mean, _ = random_policy_return(env_id, 10)
        results = json.loads(OUT.read_text()) if OUT.exists() else {}
        results[env_id] = {
            "date": time.strftime("%Y-%m-%d"),
            "seed": args.seed,
            "frames": s["frames"],
            "train_seconds": round(s["train_seconds"], 1),
            "final_eval_mean": s["final_eval_mean"],
            "final_eval_std": s["final_eval_std"],
            "random_policy_mean_10_episodes": rand_mean,
            "evals": [[e["frames"], e["mean"]] for e in s["evals"]],
        }
        OUT.write_text(json.dumps(results, indent=1) + "\n")
        print(
            f"{env_id}: {s['final_eval_mean']:.1f} after {s['frames']:,} frames vs random {rand_mean:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
