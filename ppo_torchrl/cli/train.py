"""`python -m ppo_torchrl.train`: train PPO from the command line.

The loop itself is `Trainer.run` (run/trainer.py; docs/algorithm.md walks it); this module
turns flags into a run and a run's end into an exit status and one-line errors.

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

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from ppo_torchrl.cli.flags import check_writable_folder, one_line
from ppo_torchrl.cli.train_args import SAFE_ON_RESUME, build_parser, flag_names, new_run_config
from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.errors import CheckpointError, TrainingError
from ppo_torchrl.tracking.params import TrackingParams
from ppo_torchrl.tracking.tracker import Tracker, TrackingError, make_tracker

SIGNAL_WAIT = 3.0  # seconds a run stopped by a signal waits for tracking to catch up


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


def resume_config(args: argparse.Namespace) -> tuple[PPOConfig, dict[str, Any], Path]:
    """A resumed run's config (the checkpoint's, with the few flags that may change), its
    checked state and its file; ConfigError or CheckpointError otherwise."""
    from ppo_torchrl.run.checkpoint import checkpoint_path, config_from_checkpoint, load_checkpoint

    if args.config:
        raise ConfigError("resume: --config cannot be combined with --resume (a run keeps its config)")
    if args.preset != "auto":
        raise ConfigError("resume: --preset cannot be combined with --resume (a run keeps its config)")
    from ppo_torchrl.run.seeds_checkpoint import check_seeds_state, is_seeds_checkpoint

    path = checkpoint_path(args.resume)
    state = load_checkpoint(path, allow_seeds=True)
    if is_seeds_checkpoint(state) and state.get("kind") != "latest":
        raise CheckpointError(
            f"{path} holds every seed at its best evaluation, not where the run stands: resume the "
            f"run from {path.with_name('final.pt')}; evaluate or export {path.name} with --seed-index K"
        )
    if state["kind"] != "latest":
        raise CheckpointError(
            f"{path} holds the run at its best evaluation, not where it stands: resume the run from "
            f"{path.with_name('last.pt')} (or its folder); evaluate or export {path.name} as it is"
        )
    given = {name: getattr(args, name) for name in PPOConfig.field_names() if hasattr(args, name)}
    for name in given:
        if name not in SAFE_ON_RESUME:
            raise ConfigError(
                f"resume: --{name.replace('_', '-')} cannot change when resuming "
                f"(allowed: {flag_names(SAFE_ON_RESUME)})"
            )
    base = (
        check_seeds_state(state, path) if is_seeds_checkpoint(state) else config_from_checkpoint(state, path)
    )
    return PPOConfig(**{**base.to_dict(), **given}), state, path


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
        state, path, preset = None, None, None
        if args.resume:
            cfg, state, path = resume_config(args)
        else:
            cfg, preset = new_run_config(args)
        # Checkpoints (and videos) go to the resumed run's folder or under checkpoint_dir.
        check_writable_folder(path.parent if path else Path(cfg.checkpoint_dir), "checkpoint_dir")
        from ppo_torchrl.run.preflight import check_run, env_wrappers, uses_program  # torch, TorchRL load

        check_run(cfg)
        if args.summary_json and not Path(args.summary_json).parent.is_dir():
            raise ConfigError(f"summary-json: folder does not exist: {Path(args.summary_json).parent}")
        if args.dry_run:
            print(f"preset: {preset or 'none'}")
            print("\n".join(f"{k}: {v}" for k, v in cfg.to_dict().items()))
            if wrappers := env_wrappers(cfg):
                print(f"env wrappers: {wrappers}")
            return 0
        if stop.requested():
            return stop.exit_code  # stopped before anything started
        tags = {"env": cfg.env, "algorithm": "PPO", "preset": preset or "none"}
        if cfg.num_seeds:
            last = cfg.seed + cfg.num_seeds - 1
            resume = (state, path) if state is not None else None
            tracker = _tracker(
                cfg, f"{cfg.env}-seeds{cfg.seed}-{last}", state and state.get("tracking"), tags
            )
            return _run_seeds(cfg, tracker, stop, args.summary_json, resume)
        from ppo_torchrl.run.progress import ConsoleReporter
        from ppo_torchrl.run.trainer import Trainer

        # A resumed run keeps the route its checkpoint was written on (run/learners.py).
        route = None if state is None else state.get("program") is not None
        if route and not uses_program(cfg):
            raise ConfigError(
                f"{path} learned on the program route (a torch-native env in this process); it "
                "resumes only there: drop the --collector / --collectors given to --resume"
            )
        run_dir = path.parent if path else None
        trainer = Trainer(cfg, reporter=ConsoleReporter(), run_dir=run_dir, program=route)
        if state is not None:  # weights that do not fit the stored config are refused here
            trainer.load_state_dict(state, path)
        resume = state.get("tracking") if state else None
        trainer.tracker = _tracker(cfg, f"{cfg.env}-seed{cfg.seed}", resume, tags)
    except (ConfigError, TrackingError, CheckpointError) as err:
        if trainer is not None:
            trainer.learner.shutdown()
        print(f"error: {one_line(str(err))}", file=sys.stderr)  # a value may hold a line break
        return 2
    return _run(trainer, stop, args, resumed_from=path, preset=preset)


def _tracker(cfg: PPOConfig, name: str, resume: dict[str, Any] | None, tags: dict[str, str]) -> Tracker:
    return make_tracker(cfg.params(TrackingParams), cfg.to_dict(), name, resume, tags)


def _run_seeds(
    cfg: PPOConfig,
    tracker: Tracker,
    stop: StopSignal,
    summary_json: str | None,
    resume: tuple[dict[str, Any], Path] | None,
) -> int:
    """``--num-seeds N``: every seed in one program (run/seeds_run.py)."""
    from ppo_torchrl.device import resolve_device
    from ppo_torchrl.run.seeds_run import run_seeds

    try:
        code = run_seeds(cfg, tracker, resolve_device(cfg.device), stop.requested, summary_json, resume)
    except KeyboardInterrupt:  # a second signal
        tracker.end("KILLED", flush=False, wait=1.0)
        raise
    except CheckpointError as err:  # a --resume whose state does not fit
        tracker.end("FAILED")
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 2
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
    print(trainer.learner.describe())
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
