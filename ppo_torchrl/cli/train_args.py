"""The train command's arguments: its parser, and a new run's config from defaults < the env's
preset < the ``--config`` file < flags. The sweep reads its trials' flags with the same
parser and config, so a flag means the same in both; resuming a run (cli/train.py) keeps the
config its checkpoint holds instead.
"""

from __future__ import annotations

import argparse
from typing import Any

from ppo_torchrl.cli.flags import OneLineArgumentParser, add_config_flags, config_from_args
from ppo_torchrl.fields import load_config_file
from ppo_torchrl.run.config import PPOConfig

# What may change when a run is resumed: budgets and bookkeeping, never the learning itself.
SAFE_ON_RESUME = (
    "frames",
    "episodes",
    "stop_when_solved",
    "eval_every_frames",
    "eval_episodes",
    "checkpoint_every_frames",
    "track",
    "device",
    "torch_threads",
    "collector",
    "collectors",
    "ray_address",
    "plot",
    "tracking_timeout",
    "tracking_retries",
    "tracking_end_timeout",
    "system_metrics",
    "system_metrics_interval",
    "log_model",
    "register_model",
    "model_alias",
    "video",
    "video_every_eval",
    "video_format",
    "video_episodes",
)


def flag_names(fields: tuple[str, ...]) -> str:
    return ", ".join("--" + f.replace("_", "-") for f in fields)


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m ppo_torchrl.train",
        description="Train PPO (TorchRL) on a gymnasium environment, tracked with MLflow.",
        allow_abbrev=False,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of PPOConfig fields; flags override it")
    parser.add_argument(
        "--preset",
        default="auto",
        metavar="NAME",
        help="tuned fields for the env, under --config and flags: 'auto' (the env's own preset, "
        "if it has one), 'none', an env id with a preset, or a YAML file (default: auto)",
    )
    parser.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue the run saved in CHECKPOINT, a checkpoint file or a run folder (its last.pt); "
        f"the run keeps its config: only {flag_names(SAFE_ON_RESUME)} may change)",
    )
    parser.add_argument("--summary-json", metavar="PATH", help="write the run's result summary as JSON here")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="after training, walk through what PPO did, with this run's numbers",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the configuration, print it and exit without training or tracking",
    )
    add_config_flags(parser, PPOConfig)
    return parser


def new_run_config(args: argparse.Namespace) -> tuple[PPOConfig, str | None]:
    """A new run's config and the name of the preset under it (None without one); ConfigError
    naming the field otherwise. The ``--config`` file is read once, here: it may name the env,
    and the env picks the preset that sits under the file."""
    from ppo_torchrl.run.presets import resolve_preset

    in_file: dict[str, Any] = load_config_file(args.config, PPOConfig) if args.config else {}
    env_id = getattr(args, "env", None) or in_file.get("env") or PPOConfig.env
    preset, values = resolve_preset(args.preset, str(env_id))
    return config_from_args(args, PPOConfig, values, in_file), preset
