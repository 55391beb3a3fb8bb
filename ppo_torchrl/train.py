"""`python -m ppo_torchrl.train`: train PPO from the command line.

Exit status: 0 after a completed run; 2 for bad input (one line on stderr, nothing
started); 1 when training had to stop (e.g. a non-finite loss); 3 when training ran to its
end but a file it leaves (final.pt, the summary, the learning curve) could not be written: one
line each, naming the path, the error and the last intact checkpoint (a periodic checkpoint
the disk refuses is one warning line, and training goes on); 130 / 143 after SIGINT /
SIGTERM. The first such signal lets the current update finish, writes a checkpoint and
ends the MLflow run KILLED; a second one exits at once (the last checkpoint stays intact).
Every MLflow run this starts ends with a true status: FINISHED, FAILED or KILLED.
"""

from __future__ import annotations

import json
import signal
import sys
import types
from pathlib import Path
from typing import Any

from ppo_torchrl.cli import (
    OneLineArgumentParser,
    add_config_flags,
    check_writable_folder,
    config_from_args,
    one_line,
)
from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.errors import CheckpointError, TrainingError
from ppo_torchrl.run.tracking import TrackingError, make_tracker

SIGNAL_WAIT = 3.0  # seconds a run stopped by a signal waits for tracking to catch up

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
        "the run keeps its config: only "
        + ", ".join("--" + f.replace("_", "-") for f in SAFE_ON_RESUME)
        + " may change)",
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
    add_config_flags(parser)
    return parser


class StopSignal:
    """First SIGINT/SIGTERM: ask the trainer to stop at the next batch boundary.
    Second: stop now (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        self._previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this update to write a checkpoint "
            "(signal again to exit at once)",
            file=sys.stderr,
            flush=True,
        )

    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


def resolve(args: Any) -> tuple[PPOConfig, dict[str, Any] | None, Path | None, str | None]:
    """The run's config, its preset's name, and when resuming the checked checkpoint state
    and its file; ConfigError or CheckpointError otherwise."""
    if not args.resume:
        from ppo_torchrl.fields import load_config_file
        from ppo_torchrl.run.presets import resolve_preset

        in_file = load_config_file(args.config, PPOConfig) if args.config else {}
        env_id = getattr(args, "env", None) or in_file.get("env") or PPOConfig.env
        preset, values = resolve_preset(args.preset, str(env_id))
        return config_from_args(args, base=values), None, None, preset
    from ppo_torchrl.run.checkpoint import checkpoint_path, config_from_checkpoint, load_checkpoint

    if args.config:
        raise ConfigError("resume: --config cannot be combined with --resume (a run keeps its config)")
    if args.preset != "auto":
        raise ConfigError("resume: --preset cannot be combined with --resume (a run keeps its config)")
    path = checkpoint_path(args.resume)
    state = load_checkpoint(path)
    if state["kind"] != "latest":
        raise CheckpointError(
            f"{path} holds the run at its best evaluation, not where it stands: resume the run from "
            f"{path.with_name('last.pt')} (or its folder); evaluate or export {path.name} as it is"
        )
    given = {name: getattr(args, name) for name in PPOConfig.field_names() if hasattr(args, name)}
    for name in given:
        if name not in SAFE_ON_RESUME:
            allowed = ", ".join("--" + f.replace("_", "-") for f in SAFE_ON_RESUME)
            raise ConfigError(
                f"resume: --{name.replace('_', '-')} cannot change when resuming (allowed: {allowed})"
            )
    base = config_from_checkpoint(state, path)
    return PPOConfig(**{**base.to_dict(), **given}), state, path, None


def check_outputs(cfg: PPOConfig) -> None:
    """What the end of the run will need, checked before it starts (ConfigError)."""
    if cfg.track and cfg.log_model:
        from ppo_torchrl.run.mlflow_model import check_registry_names

        check_registry_names(cfg.register_model, cfg.model_alias)
    if cfg.track and cfg.system_metrics:
        from ppo_torchrl.run.system_metrics import check_system_metrics

        check_system_metrics()
    if cfg.video:  # renders a frame: headless from here on, before MuJoCo is first imported
        from ppo_torchrl.run.video import check_video

        check_video(cfg.env, cfg.env_kwargs, cfg.video_format)


def main(argv: list[str] | None = None) -> int:
    stop = StopSignal()
    stop.install()  # first thing: a signal during start-up must not leave a traceback
    try:
        return _main(argv, stop)
    except KeyboardInterrupt:  # a second signal while the first one's checkpoint and end ran
        print("interrupted", file=sys.stderr)
        return stop.exit_code
    finally:
        stop.uninstall()


def _main(argv: list[str] | None, stop: StopSignal) -> int:
    args = build_parser().parse_args(argv)
    trainer = None
    try:
        cfg, state, path, preset = resolve(args)
        # Checkpoints (and videos) go to the resumed run's folder or under checkpoint_dir.
        check_writable_folder(path.parent if path else Path(cfg.checkpoint_dir), "checkpoint_dir")
        # torch and TorchRL load here, after the cheap checks.
        check_outputs(cfg)
        from ppo_torchrl.envs.factory import backend_for
        from ppo_torchrl.run.collection import check_collector
        from ppo_torchrl.run.device import resolve_device

        if cfg.num_seeds:
            from ppo_torchrl.run.seeds_trainer import check_seeds_config

            check_seeds_config(cfg)
        backend_for(cfg.env, cfg.env_backend, cfg.env_kwargs)
        check_collector(cfg)
        resolve_device(cfg.device)
        if args.summary_json and not Path(args.summary_json).parent.is_dir():
            raise ConfigError(f"summary-json: folder does not exist: {Path(args.summary_json).parent}")
        if args.dry_run:
            print(f"preset: {preset or 'none'}")
            print("\n".join(f"{k}: {v}" for k, v in cfg.to_dict().items()))
            return 0
        if stop.requested():
            return stop.exit_code  # stopped before anything started
        if cfg.num_seeds:
            return _run_seeds(cfg, stop, args, preset)
        from ppo_torchrl.run.progress import ConsoleReporter
        from ppo_torchrl.run.trainer import Trainer

        trainer = Trainer(cfg, reporter=ConsoleReporter(), run_dir=path.parent if path else None)
        if state is not None:  # weights that do not fit the stored config are refused here
            trainer.load_state_dict(state, path)
        resume = state.get("tracking") if state else None
        tags = {"env": cfg.env, "algorithm": "PPO", "preset": preset or "none"}
        trainer.tracker = make_tracker(cfg, run_name=f"{cfg.env}-seed{cfg.seed}", resume=resume, tags=tags)
    except (ConfigError, TrackingError, CheckpointError) as err:
        if trainer is not None:
            trainer.collection.shutdown()
        print(f"error: {one_line(str(err))}", file=sys.stderr)  # a value may hold a line break
        return 2
    return _run(trainer, stop, args, resumed_from=path, preset=preset)


def _run_seeds(cfg: PPOConfig, stop: StopSignal, args: Any, preset: str | None) -> int:
    """``--num-seeds N``: every seed in one program (run/seeds_run.py)."""
    from ppo_torchrl.run.device import resolve_device
    from ppo_torchrl.run.seeds_run import run_seeds

    tags = {"env": cfg.env, "algorithm": "PPO", "preset": preset or "none"}
    try:
        tracker = make_tracker(
            cfg, run_name=f"{cfg.env}-seeds{cfg.seed}-{cfg.seed + cfg.num_seeds - 1}", tags=tags
        )
    except TrackingError as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 2
    try:
        code = run_seeds(cfg, tracker, resolve_device(cfg.device), stop.requested, args.summary_json)
    except KeyboardInterrupt:  # a second signal
        tracker.end("KILLED", flush=False, wait=1.0)
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    return stop.exit_code if code == 130 else code  # 130 / 143: the signal that stopped it


def _run(trainer: Any, stop: StopSignal, args: Any, resumed_from: Path | None, preset: str | None) -> int:
    from ppo_torchrl.run.explain import explain, last_update_stats

    cfg, tracker = trainer.cfg, trainer.tracker
    print(
        f"=== PPO on {cfg.env} ===  seed {cfg.seed}, {cfg.num_envs} envs, gamma {cfg.gamma}, "
        f"lambda {cfg.lam}, clip epsilon {cfg.clip_epsilon}, device {trainer.device}"
    )
    if preset:
        print(f"preset: {preset} (its fields sit under --config and flags; --preset none turns it off)")
    if cfg.device == "auto" and trainer.device.type == "cuda":
        print("device: auto chose CUDA; small MLPs are often faster on the CPU (--device cpu)")
    if tracker.run_id:
        print(f"MLflow run {tracker.run_id} in {tracker.uri}")
    if resumed_from is not None:
        print(f"resumed from {resumed_from} at {trainer.progress.frames:,} frames")
    try:
        result = trainer.run(should_stop=stop.requested)
    except KeyboardInterrupt:
        # Metrics past the last checkpoint stay unsent: a resume will log them once.
        tracker.end("KILLED", flush=False, wait=1.0)  # at once, give or take the status
        print("interrupted", file=sys.stderr)
        return stop.exit_code
    except TrainingError as err:
        tracker.end("FAILED")
        print(f"error: {err}", file=sys.stderr)
        return 1
    except BaseException:
        tracker.end("FAILED")
        raise
    if result.interrupted:  # a signal asked to stop: seconds, not the whole end-of-run deadline
        tracker.end("KILLED", wait=min(cfg.tracking_end_timeout, SIGNAL_WAIT))
        kept = result.checkpoint
        print(
            f"interrupted at {result.frames:,} frames; checkpoint {kept}\n"
            f"resume with: python -m ppo_torchrl.train --resume {kept}"
            if kept
            else f"interrupted at {result.frames:,} frames; no checkpoint could be written",
            file=sys.stderr,
        )
        return stop.exit_code
    tracker.set_tags({"mlflow.note.content": describe(cfg, result), "solved": str(result.solved).lower()})
    tracker.end("FINISHED")
    failed = list(result.write_errors)
    if args.summary_json:
        try:
            Path(args.summary_json).write_text(json.dumps(result.summary(), indent=2) + "\n")
        except OSError as err:
            failed.append(f"summary not written: cannot write {args.summary_json} ({err.strerror})")
    if args.explain:
        stats = {}
        if result.last_update:
            stats = last_update_stats(trainer.actor, trainer.last_batch, cfg.clip_epsilon, result.last_update)
        print(explain(cfg, result, stats))
    for line in failed:  # the run trained to its end; some of what it leaves is not on disk
        print(f"error: {line}; last intact checkpoint: {trainer.last_checkpoint or 'none'}", file=sys.stderr)
    return 3 if failed else 0


def describe(cfg: PPOConfig, result: Any) -> str:
    """The run's description in MLflow's UI (markdown): what ran, how it ended, what to do next."""
    outcome = f"solved (first at {result.solved_at_frames:,} frames)" if result.solved else "not solved"
    lines = [
        f"**PPO on {cfg.env}**, seed {cfg.seed}: {outcome}; final greedy evaluation "
        f"{result.final_eval_mean:.1f} ± {result.final_eval_std:.1f} over {result.eval_episodes} episodes.",
        f"{result.frames:,} frames in {result.train_seconds:.1f} s of training.",
    ]
    if result.best_checkpoint:
        lines.append(f"Best evaluation {result.best_eval_mean:.1f} at {result.best_eval_frames:,} frames.")
        lines.append(f"\nEvaluate: `python -m ppo_torchrl.evaluate {result.best_checkpoint}`")
    folder = Path(result.checkpoint).parent
    lines.append(f"Continue: `python -m ppo_torchrl.train --resume {folder} --frames {2 * cfg.frames}`")
    return "  \n".join(lines)


class _CallableTrainModule(types.ModuleType):
    """``ppo_torchrl.train`` names both this CLI module and the public ``train()`` function.

    Importing a submodule rebinds the package attribute to the module, which would shadow
    the function for ``from ppo_torchrl import train``; calling the module trains instead.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from ppo_torchrl.run.trainer import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableTrainModule

if __name__ == "__main__":
    sys.exit(main())
