"""Does the default `python -m ppo_torchrl.train` solve CartPole-v1, and how fast?

Runs the README's training command once per seed, in a scratch folder, exactly as a user
would (tracking on, default config), and records each run's summary JSON:

    .venv/bin/python experiments/solve_cartpole.py --seeds 0 1 2 3 4

Writes experiments/results/solve_cartpole.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "solve_cartpole.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("extra", nargs="*", help="extra flags passed to ppo_torchrl.train")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            summary = Path(scratch) / f"seed{seed}.json"
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ppo_torchrl.train",
                    "--seed",
                    str(seed),
                    "--summary-json",
                    str(summary),
                    *args.extra,
                ],
                cwd=scratch,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            row = json.loads(summary.read_text())
            row.update(seed=seed, process_seconds=round(time.perf_counter() - started, 2))
            rows.append(row)
            print(
                f"seed {seed}: eval {row['final_eval_mean']:.1f}  solved={row['solved']}  "
                f"frames {row['frames']:,}  train {row['train_seconds']:.1f} s  "
                f"(whole process {row['process_seconds']:.1f} s)",
                flush=True,
            )
    times = [r["train_seconds"] for r in rows]
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "command": "python -m ppo_torchrl.train --seed S " + " ".join(args.extra),
        "solved": sum(r["solved"] for r in rows),
        "seeds": len(rows),
        "median_train_seconds": statistics.median(times),
        "max_train_seconds": max(times),
        "median_frames": statistics.median(r["frames"] for r in rows),
        "runs": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"solved {record['solved']}/{record['seeds']}, median {record['median_train_seconds']:.1f} s, "
        f"max {record['max_train_seconds']:.1f} s -> {RESULTS}"
    )


if __name__ == "__main__":
    main()
