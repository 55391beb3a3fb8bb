"""`python -m ppo_torchrl.evaluate CHECKPOINT [--video out.gif]`: a checkpoint's greedy policy
on gymnasium's own env, and optionally a video of it. The checkpoint (a file, or a run folder
for its last.pt) is checked whole first, and so is the video's path and what rendering
needs: anything missing, damaged or foreign is refused in one line, exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path

from ppo_torchrl.cli.flags import OneLineArgumentParser, check_writable
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
        "--seed-index",
        type=int,
        metavar="K",
        help="of a --num-seeds run's checkpoint, evaluate seed number K (0-based)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the policy runs: 'cpu', 'cuda', 'cuda:N' or 'auto' (default: cpu)",
    )
    parser.add_argument(
        "--video",
        metavar="PATH",
        help="also record greedy episodes (the evaluation's first seeds) to PATH, a .gif or .mp4",
    )
    parser.add_argument("--video-episodes", type=int, default=1, help="episodes in the video (default: 1)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"argument --episodes: must be >= 1 (got {args.episodes})")
    if args.video_episodes < 1:
        parser.error(f"argument --video-episodes: must be >= 1 (got {args.video_episodes})")
    try:
        if args.video:
            from ppo_torchrl.run.video import prepare_headless, video_format

            fmt = video_format(args.video)
            check_writable(Path(args.video))
            prepare_headless()  # before MuJoCo is imported
        from ppo_torchrl.device import resolve_device
        from ppo_torchrl.run.checkpoint import load_policy  # torch: after the cheap checks

        cfg, actor = load_policy(args.checkpoint, resolve_device(args.device), args.seed_index)
        if args.video:
            from ppo_torchrl.run.video import check_video

            check_video(cfg.env, cfg.env_kwargs, fmt)
    except (CheckpointError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from ppo_torchrl.run.evaluation import evaluate_policy

    result = evaluate_policy(actor, cfg.env, args.episodes, args.seed, cfg.env_kwargs)
    print(f"{cfg.env}: greedy return {result}")
    if args.video:
        from ppo_torchrl.run.greedy_io import greedy_policy, numpy_policy
        from ppo_torchrl.run.video import record_video

        policy = greedy_policy(actor, cfg.env, cfg.env_kwargs).to(next(actor.parameters()).device)
        act = numpy_policy(policy)
        video = record_video(act, cfg.env, cfg.env_kwargs, args.video, args.video_episodes, args.seed)
        print(f"video: {video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
