"""`python -m ppo_torchrl.train`: train PPO from the command line.

Exit status: 0 after a completed run, 2 for bad input (one line on stderr, nothing
started), 130 when interrupted with Ctrl-C. Every MLflow run this starts ends with a
true status: FINISHED, FAILED or KILLED.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

from ppo_torchrl.cli import OneLineArgumentParser, add_config_flags, config_from_args
from ppo_torchrl.config import ConfigError
from ppo_torchrl.tracking import TrackingError, make_tracker


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m ppo_torchrl.train",
        description="Train PPO (TorchRL) on a gymnasium environment, tracked with MLflow.",
        allow_abbrev=False,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of PPOConfig fields; flags override it")
    parser.add_argument("--summary-json", metavar="PATH", help="write the run's result summary as JSON here")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="after training, walk through what PPO did, with this run's numbers",
    )
    add_config_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        from ppo_torchrl.envs import backend_for  # imports torch and TorchRL: after the cheap checks

        backend_for(cfg)
        if args.summary_json and not Path(args.summary_json).parent.is_dir():
            raise ConfigError(f"summary-json: folder does not exist: {Path(args.summary_json).parent}")
        tracker = make_tracker(cfg, run_name=f"{cfg.env}-seed{cfg.seed}")
    except (ConfigError, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    # Imported after validation so that a bad flag answers at once.
    from ppo_torchrl.explain import explain
    from ppo_torchrl.progress import ConsoleReporter
    from ppo_torchrl.trainer import train

    print(
        f"=== PPO on {cfg.env} ===  seed {cfg.seed}, {cfg.num_envs} envs, gamma {cfg.gamma}, "
        f"lambda {cfg.lam}, clip epsilon {cfg.clip_epsilon}"
    )
    if tracker.run_id:
        print(f"MLflow run {tracker.run_id} in {tracker.uri}")  # type: ignore[attr-defined]
    try:
        result = train(cfg, tracker=tracker, reporter=ConsoleReporter())
    except KeyboardInterrupt:
        tracker.end("KILLED")
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(result.summary(), indent=2) + "\n")
    if args.explain:
        print(explain(cfg, result))
    return 0


class _CallableTrainModule(types.ModuleType):
    """``ppo_torchrl.train`` names both this CLI module and the public ``train()`` function.

    Importing a submodule rebinds the package attribute to the module, which would shadow
    the function for ``from ppo_torchrl import train``; calling the module trains instead.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from ppo_torchrl.trainer import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableTrainModule

if __name__ == "__main__":
    sys.exit(main())
