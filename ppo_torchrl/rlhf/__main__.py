"""`python -m ppo_torchrl.rlhf`: the toy pipeline (SFT -> reward model -> PPO or GRPO, toy/) or,
with ``--model`` / ``--model-path --gguf-file`` / ``--task arithmetic``, RL on a real language
model with a rule reward (real/); each reports its result in one paragraph.

A real-model run writes ``checkpoint.pt`` into its folder after every update; SIGINT or
SIGTERM stops it at once (an update takes tens of seconds on a CPU: too long to wait for),
ends its MLflow run KILLED and prints how to go on: ``--resume RUN_FOLDER`` continues it
exactly (the same run, the same result), with ``--rl-updates`` / ``--time-budget`` the
only flags that may change.

Exit status: 0 done; 2 bad input (one line, nothing started); 3 trained to the end but a
file it leaves could not be written (one line each, naming what was kept); 130 / 143 after
SIGINT / SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from ppo_torchrl.cli.flags import OneLineArgumentParser, add_config_flags, config_from_args, one_line
from ppo_torchrl.fields import ConfigError, load_config_file
from ppo_torchrl.files import CheckpointError
from ppo_torchrl.rlhf.config import REAL_TASKS, RLHFConfig
from ppo_torchrl.rlhf.real.rewards import RewardError
from ppo_torchrl.tracking.send import TrackingError

STAGES = ("sft", "reward-model")
INSTALL = {"toy": "pip install -e '.[rlhf]'", "real": "pip install -e '.[rlhf-real]'"}


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the program is: the run stops at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _main(argv)
    except KeyboardInterrupt as err:  # a signal; the run, if one started, has ended KILLED
        print(f"interrupted ({err})" if isinstance(err, Stopped) else "interrupted", file=sys.stderr)
        return 128 + (err.signum if isinstance(err, Stopped) else signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in STAGES:  # `sft` / `reward-model`: a stage on its own, from files
        from ppo_torchrl.rlhf.stages import main as stage_main

        return stage_main(argv[0], argv[1:])
    parser = OneLineArgumentParser(
        prog="python -m ppo_torchrl.rlhf",
        allow_abbrev=False,
        description="RLHF on the project's PPO core: a miniature pipeline (SFT, reward model, "
        "PPO/GRPO), or RL on a real language model with a rule reward (--model).",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of RLHFConfig fields; flags override it")
    parser.add_argument("--summary-json", metavar="PATH", help="write the results as JSON here")
    parser.add_argument(
        "--resume",
        metavar="RUN_FOLDER",
        help="go on with a real-model run from its folder's checkpoint.pt (its config; only "
        "--rl-updates, --time-budget, --sample-every may change)",
    )
    add_config_flags(parser, RLHFConfig)
    args = parser.parse_args(argv)
    kind = "toy"
    try:
        resume = None
        if args.resume:
            cfg, resume = _resume(args)
        else:
            in_file = load_config_file(args.config, RLHFConfig) if args.config else {}
            cfg = config_from_args(args, RLHFConfig, in_file)
        kind = "real" if cfg.task in REAL_TASKS else "toy"
        summary = _real(cfg, resume) if kind == "real" else _toy(cfg)
    except (ConfigError, TrackingError, CheckpointError) as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except RewardError as err:  # the user's reward failed mid-run; the run ended FAILED
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 1
    except ImportError as err:  # an extra that is not installed
        print(f"error: this pipeline needs {err.name}: {INSTALL[kind]}", file=sys.stderr)
        return 2
    print(_report(cfg, summary))
    errors = summary.get("write_errors", [])
    if args.summary_json:
        try:
            Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as err:
            errors.append(f"summary not written: cannot write {args.summary_json} ({err.strerror})")
    for line in errors:  # the run trained to its end; some of what it leaves is not on disk
        print(f"error: {line}; last intact checkpoint: {summary.get('checkpoint', 'none')}", file=sys.stderr)
    return 3 if errors else 0


def _resume(args: Any) -> tuple[RLHFConfig, tuple[dict[str, Any], Path]]:
    if args.config:
        raise ConfigError("resume: --config cannot be combined with --resume (a run keeps its config)")
    from ppo_torchrl.rlhf.real.checkpoint import load_state, resumed_config

    state, path = load_state(args.resume)
    given = {name: getattr(args, name) for name in RLHFConfig.field_names() if hasattr(args, name)}
    return resumed_config(state, given, path), (state, path)


def _toy(cfg: RLHFConfig) -> dict[str, Any]:
    if cfg.model_path is not None and not Path(cfg.model_path).is_dir():
        raise ConfigError(f"model_path: not a folder: {cfg.model_path}")
    from ppo_torchrl.rlhf.common import quiet_transformers

    quiet_transformers()  # first: an ImportError here names transformers, before torch loads
    from ppo_torchrl.rlhf.toy.pipeline import run_pipeline

    return run_pipeline(cfg)


def _real(cfg: RLHFConfig, resume: tuple[dict[str, Any], Path] | None) -> dict[str, Any]:
    from ppo_torchrl.rlhf.common import quiet_transformers
    from ppo_torchrl.rlhf.real.hub import locate

    locate(cfg.model, cfg.model_path, cfg.gguf_file)  # before torch and transformers load
    quiet_transformers()
    from ppo_torchrl.rlhf.real.pipeline import run_task_pipeline

    return run_task_pipeline(cfg, resume=resume)


def _report(cfg: RLHFConfig, s: dict[str, Any]) -> str:
    name = cfg.algo.upper()
    if cfg.task in REAL_TASKS:
        each = ", ".join(
            f"{k} {s['base_eval_rewards'][k]:.3g} -> {v:.3g}" for k, v in s["final_eval_rewards"].items()
        )
        return (
            f"\nbase model {s['base_eval_reward']:.3f} -> {name} {s['final_eval_reward']:.3f} held-out "
            f"reward (greedy, {s['held_out_prompts']} prompts; {s['eval_reward_gain']:+.3f}; {each}); "
            f"KL to pi_ref {s['final_kl_to_ref']:.3f} nats per response; {s['updates']} updates in "
            f"{s['rl_seconds']:.0f} s. -> {s['output_dir']}"
        )
    return (
        f"\nSFT reference S0 {s['S0']:.1f} -> {name} {s['final_score']:.1f} (true-rule score, 0-100, "
        f"held-out prompts, sampled; greedy {s['final_score_greedy']:.1f}); KL to pi_ref "
        f"{s['final_kl_to_ref']:.3f} nats per completion; reward model held-out accuracy "
        f"{s['rm_heldout_accuracy']:.1%}; best prompt-independent completion "
        f"{s['best_constant_score']:.1f}; {s['total_seconds']:.0f} s. -> {s['output_dir']}"
    )


if __name__ == "__main__":
    sys.exit(main())
