"""Random search for the CartPole-v1 defaults: what solves fastest on this CPU?

Each candidate config trains in-process (no tracking) with the benchmark's solved
criterion — a greedy 100-episode evaluation on gymnasium's CartPole-v1 reaching 475,
checked every 2048 frames, evaluation time off the clock — for several seeds. Candidates
are ranked by median time-to-solve, unsolved seeds counting as the time cap.

    .venv/bin/python experiments/search_hparams.py --trials 40 --seeds 0 1 2
    .venv/bin/python experiments/search_hparams.py --confirm 5 --seeds 0 1 2 3 4 5 6 7 8 9
    .venv/bin/python experiments/search_hparams.py --around --seeds $(seq 10 19)

The second form re-runs the best 5 candidates of the saved search on more seeds; the
third tries one-change variants of the current defaults on held-out seeds (10-19, so
that the benchmark's seeds 0-4 are not what the defaults were picked on).
Results accumulate in experiments/results/hparam_search.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from ppo_torchrl import PPOConfig, train

RESULTS = Path(__file__).parent / "results" / "hparam_search.json"
FRAME_CAP = 80_000
SPACE: dict[str, list[Any]] = {
    "num_envs": [32, 64, 128, 256],
    "rollout_steps": [8, 16, 32],
    "epochs": [2, 4, 6, 8, 10],
    "minibatches": [1, 2, 4],
    "lr": [2e-3, 3e-3, 5e-3, 1e-2],
    "gamma": [0.98, 0.99],
    "lam": [0.8, 0.9, 0.95],
    "hidden_sizes": [[64, 64], [32, 32]],
    "activation": ["tanh", "relu"],
    "max_grad_norm": [0.5, 1.0],
    "clip_epsilon": [0.2, 0.3],
}


AROUND: list[dict[str, Any]] = [
    {},
    {"epochs": 2},
    {"epochs": 4},
    {"lr": 1e-3},
    {"lr": 3e-3},
    {"clip_epsilon": 0.2},
    {"num_envs": 64, "rollout_steps": 16},
    {"activation": "relu"},
]


def defaults() -> dict[str, Any]:
    """The current PPOConfig defaults, in the search's terms."""
    d = PPOConfig()
    params = {k: getattr(d, k) for k in SPACE if k != "minibatches"}
    params["hidden_sizes"] = list(d.hidden_sizes)
    params["minibatches"] = d.frames_per_batch // d.minibatch_size
    return params


def to_config(params: dict[str, Any], seed: int, scratch: str) -> PPOConfig:
    p = dict(params)
    batch = p["num_envs"] * p["rollout_steps"]
    p["minibatch_size"] = batch // p.pop("minibatches")
    return PPOConfig(
        **p,
        seed=seed,
        frames=FRAME_CAP,
        eval_every_frames=2048,
        track=False,
        checkpoint_dir=scratch,
        checkpoint_every_frames=0,
    )


def run(params: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:
            r = train(to_config(params, seed, scratch))
            rows.append(
                {
                    "seed": seed,
                    "solved": r.solved,
                    "frames": r.solved_at_frames or r.frames,
                    "seconds": round(r.train_seconds, 3),
                }
            )
    cap = max(x["seconds"] for x in rows) * 2
    score = statistics.median(x["seconds"] if x["solved"] else cap for x in rows)
    return {
        "params": params,
        "runs": rows,
        "solved": sum(x["solved"] for x in rows),
        "median_seconds": score,
        "median_frames": statistics.median(x["frames"] for x in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=0, help="random candidates to try")
    parser.add_argument("--confirm", type=int, default=0, help="re-run the best N saved candidates")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rng", type=int, default=0, help="seed of the random search itself")
    parser.add_argument("--around", action="store_true", help="one-change variants of the defaults")
    args = parser.parse_args()
    torch.set_num_threads(1)
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"search": [], "confirm": []}
    if args.around:
        saved["around"] = []
        for change in AROUND:
            entry = {"change": change, **run({**defaults(), **change}, args.seeds)}
            saved["around"].append(entry)
            runs = entry["runs"]
            print(
                f"{entry['solved']}/{len(runs)} median {entry['median_seconds']:.2f} s "
                f"(max {max(r['seconds'] for r in runs):.2f}), median {entry['median_frames']:,.0f} "
                f"frames (max {max(r['frames'] for r in runs):,})  {change or 'defaults'}",
                flush=True,
            )
            RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    rng = random.Random(args.rng)
    for i in range(args.trials):
        params = {k: rng.choice(v) for k, v in SPACE.items()}
        if params["num_envs"] * params["rollout_steps"] // params["minibatches"] < 64:
            continue
        entry = run(params, args.seeds)
        saved["search"].append(entry)
        print(
            f"[{i}] {entry['solved']}/{len(args.seeds)} median {entry['median_seconds']:.2f} s "
            f"{entry['median_frames']:,.0f} frames  {params}",
            flush=True,
        )
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    if args.confirm:
        ranked = sorted(saved["search"], key=lambda e: (-e["solved"] / len(e["runs"]), e["median_seconds"]))
        for entry in ranked[: args.confirm]:
            again = run(entry["params"], args.seeds)
            saved["confirm"].append(again)
            print(
                f"confirm {again['solved']}/{len(args.seeds)} median {again['median_seconds']:.2f} s "
                f"{again['median_frames']:,.0f} frames  {again['params']}",
                flush=True,
            )
            RESULTS.write_text(json.dumps(saved, indent=1) + "\n")


if __name__ == "__main__":
    main()
