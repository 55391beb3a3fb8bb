"""`python -m ppo_torchrl.evaluate CHECKPOINT`: a checkpoint's greedy policy on gymnasium's
own env. The checkpoint (a file, or a run folder for its last.pt) is checked whole first:
anything damaged or foreign is refused in one line, exit status 2."""

from __future__ import annotations

import sys

from ppo_torchrl.cli import OneLineArgumentParser
from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.errors import CheckpointError


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(
        prog="python -m ppo_torchrl.evaluate",
        description="Evaluate a checkpoint's greedy policy on gymnasium's own env.",
    )
    parser.add_argument("checkpoint", help="a checkpoint written by ppo_torchrl.train, or its run folder")
    parser.add_argument("--episodes", type=int, default=100, help="episodes (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed (default: 0)")
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the policy runs: 'cpu', 'cuda', 'cuda:N' or 'auto' (default: cpu)",
    )
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"argument --episodes: must be >= 1 (got {args.episodes})")
    try:
        from ppo_torchrl.run.checkpoint import load_policy  # torch: after the cheap checks
        from ppo_torchrl.run.device import resolve_device

        cfg, actor = load_policy(args.checkpoint, resolve_device(args.device))
    except (CheckpointError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from ppo_torchrl.run.evaluation import evaluate_policy

    result = evaluate_policy(actor, cfg.env, args.episodes, args.seed, cfg.env_kwargs)
    print(f"{cfg.env}: greedy return {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
