"""`python -m ppo_torchrl.sweep`: many training runs (seeds x a grid) as one experiment.

    python -m ppo_torchrl.sweep --seeds 0-4 --grid lr=1e-3,3e-3 --workers 2 --frames 100000

Every trial is a full ``python -m ppo_torchrl.train`` run (any train flag given here is
passed through), in its own process on this machine (``--backend local``) or as a Ray task
(``--backend ray``: a local Ray instance, or the cluster at RAY_ADDRESS). Each is a nested
MLflow run under one parent run for the sweep; the parent gets the per-grid-point mean
and interquartile mean of the final evaluation with 95% bootstrap intervals, the learning
curves and the table of trials (record.py, aggregate.py). The trials are planned in plan.py
and run by backends.py; nothing here imports the trainer: a trial is a process of its own.

Exit status: 0 when every trial finished; 1 when any failed (the others still ran, and
each failure is recorded with its one-line error); 2 for bad input (one line, nothing
started); 130 / 143 after SIGINT / SIGTERM, passed on once to the running trials (they
checkpoint and end KILLED) and no new trial starts.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ppo_torchrl.cli.flags import OneLineArgumentParser
from ppo_torchrl.fields import ConfigError
from ppo_torchrl.tracking.send import TrackingError

NOT_PASSED_THROUGH = ("--seed", "--resume", "--summary-json", "--dry-run", "--explain")


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m ppo_torchrl.sweep",
        description="Run PPO training over seeds and a grid of config values, as nested MLflow "
        "runs with aggregate statistics. Any other flag is a train flag, passed to every trial "
        "(python -m ppo_torchrl.train --help).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--seeds", default="0-4", help="seeds: a range 0-4, a list 0,3,7, or both (default: 0-4)"
    )
    parser.add_argument(
        "--grid",
        nargs="+",
        default=[],
        metavar="FIELD=V1,V2",
        help="config values to cross, e.g. lr=1e-3,3e-3 clip_epsilon=0.1,0.2 (tuple items "
        "joined by x: hidden_sizes=64x64,256x256); every point runs every seed",
    )
    parser.add_argument("--workers", type=int, default=1, help="trials running at once (default: 1)")
    parser.add_argument(
        "--backend",
        choices=("local", "ray", "vectorized"),
        default="local",
        help="'local': subprocesses of this machine; 'ray': Ray tasks on a local instance, or on "
        "the cluster at RAY_ADDRESS; 'vectorized': each grid point's seeds in one program "
        "(train --num-seeds; torch-native envs only) (default: local)",
    )
    parser.add_argument(
        "--sweep-dir",
        metavar="DIR",
        help="folder for the table, curves, logs and checkpoints (default: sweeps/<time>)",
    )
    parser.add_argument("--summary-json", metavar="PATH", help="also write the sweep's summary JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args, passthrough = build_parser().parse_known_args(argv)
    stop: dict[str, int] = {}
    try:
        trials, cfg, folder, threads, groups = _prepare(args, passthrough)
        from ppo_torchrl.sweep.backends import LocalPool, RayPool
        from ppo_torchrl.sweep.record import SweepRecord

        pool = RayPool(threads) if args.backend == "ray" else LocalPool(args.workers)
    except (ConfigError, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    params = {
        "seeds": args.seeds,
        "grid": " ".join(args.grid) or "none",
        "workers": args.workers,
        "backend": args.backend,
        "train_flags": " ".join(passthrough) or "none",
        "trials": len(trials),
    }
    try:
        record = SweepRecord(cfg, folder, params, trials)
    except TrackingError as err:  # e.g. a tracking server that does not answer
        pool.close()
        print(f"error: {err}", file=sys.stderr)
        return 2
    (folder / "logs").mkdir(parents=True, exist_ok=True)

    def on_signal(signum: int, frame: Any) -> None:
        if not stop:
            print(
                f"\n{signal.Signals(signum).name}: stopping the running trials (they checkpoint); "
                "no new trial starts",
                file=sys.stderr,
                flush=True,
            )
            stop["signum"] = signum  # the loop stops the trials: Ray calls must not run in a handler

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _run(trials, pool, record, folder, args.workers, stop, groups)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        pool.close()
    failed = [t for t in trials if t.outcome and t.outcome["status"] != "FINISHED"]
    status = "KILLED" if stop else ("FAILED" if failed else "FINISHED")
    summary = record.finish(trials, status, cfg.threshold())
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    _report(summary, folder)
    if stop:
        return 128 + stop["signum"]
    return 1 if failed else 0


def _prepare(args: Any, passthrough: list[str]) -> tuple[list[Any], Any, Path, int, dict[int, Any] | None]:
    """Every trial planned and its config checked before anything starts."""
    from ppo_torchrl.cli.train_args import build_parser as train_parser
    from ppo_torchrl.cli.train_args import new_run_config
    from ppo_torchrl.run.preflight import check_run
    from ppo_torchrl.sweep.plan import parse_grid, parse_seeds, plan

    if args.workers < 1:
        raise ConfigError(f"workers: must be >= 1 (got {args.workers})")
    for flag in passthrough:
        name = flag.split("=")[0]
        if name in NOT_PASSED_THROUGH:
            why = "seeds come from --seeds" if name == "--seed" else "each trial is a new run of its own"
            raise ConfigError(f"{name}: cannot be passed to a sweep's trials ({why})")
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(
                "backend: 'ray' needs Ray, which is not installed: pip install 'ppo_torchrl[distributed]'"
            ) from None
    if args.summary_json and not Path(args.summary_json).parent.is_dir():
        raise ConfigError(f"summary-json: folder does not exist: {Path(args.summary_json).parent}")
    trials = plan(parse_seeds(args.seeds), parse_grid(args.grid), passthrough)
    folder = Path(args.sweep_dir or Path("sweeps") / time.strftime("%Y%m%d-%H%M%S")).resolve()
    parser = train_parser()
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    configs = []
    for trial in trials:
        parsed = parser.parse_args(trial.argv)  # a bad train flag: one line, exit 2
        cfg, _ = new_run_config(parsed)
        check_run(cfg)
        if not hasattr(parsed, "checkpoint_dir"):
            trial.argv += ["--checkpoint-dir", str(folder / "checkpoints")]
        if cfg.torch_threads == 0:  # trials side by side must not each take every core
            trial.argv += ["--torch-threads", str(threads)]
        configs.append(cfg)
    groups = None
    if args.backend == "vectorized":
        from ppo_torchrl.run.preflight import check_seeds_config
        from ppo_torchrl.sweep.plan import vectorized_groups

        groups = {}
        for carrier, members in vectorized_groups(trials):
            cfg, _ = new_run_config(parser.parse_args(carrier.argv))
            check_seeds_config(cfg)
            groups[carrier.index] = (carrier, members)
    return trials, configs[0], folder, threads, groups


def _run(
    trials: list[Any],
    pool: Any,
    record: Any,
    folder: Path,
    workers: int,
    stop: dict[str, int],
    groups: dict[int, Any] | None = None,
) -> None:
    """Run the trials (or, vectorised, one program per grid point) ``workers`` at a time."""
    from ppo_torchrl.sweep.plan import split_outcome

    queue = [carrier for carrier, _ in groups.values()] if groups else list(trials)
    total = len(trials)
    print(
        f"sweep: {total} trials, {workers} at a time; folder {folder}"
        + (f"; MLflow parent run {record.run_id} in {record.uri}" if record.run_id else ""),
        flush=True,
    )
    stopping = False
    while (queue and not stop) or pool.running:
        if stop and not stopping:
            stopping = True
            pool.stop()
        while queue and pool.running < workers and not stop:
            trial = queue.pop(0)
            env = {
                "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
                **(record.trial_env(trial) if not groups else {}),
            }
            log = folder / "logs" / f"{trial.name}.log"
            pool.submit(trial, (trial.argv, env, os.getcwd(), str(log)))
            seeds = groups[trial.index][1] if groups else None
            together = f" (seeds {seeds[0].seed}..{seeds[-1].seed} in one program)" if seeds else ""
            print(f"[start] {trial.name}{together}", flush=True)
        for trial, outcome in pool.finished(timeout=0.5):
            if outcome.get("output") is not None:  # ran on another node: keep its log here
                (folder / "logs" / f"{trial.name}.log").write_text(outcome["output"])
            if groups:
                members = groups[trial.index][1]
                cfg = record.cfg
                threshold = cfg.threshold()
                per_seed = split_outcome(outcome, members, threshold)
            else:
                per_seed = [(trial, outcome)]
            for member, result in per_seed:
                record.trial_done(member, result, logged_itself=not groups)
                o = member.outcome
                line = f"final {o['final_eval_mean']:.1f}" if o["status"] == "FINISHED" else o["error"]
                done = sum(1 for t in trials if t.outcome)
                print(f"[{done}/{total}] {member.name}: {o['status']}, {line}", flush=True)


def _report(summary: dict[str, Any], folder: Path) -> None:
    print(f"\n=== sweep {summary['status']} ===  final greedy evaluation per grid point (95% bootstrap CI)")
    for label, agg in summary["aggregates"].items():
        unfinished = ", ".join(f"{agg[k]} {k}" for k in ("failed", "killed") if agg[k])
        if not agg["runs"]:
            print(f"{label}: no finished trial ({unfinished})")
            continue
        (ml, mh), (il, ih) = agg["mean_ci95"], agg["iqm_ci95"]
        failed = f", {unfinished}" if unfinished else ""
        print(
            f"{label}: mean {agg['mean']:.1f} [{ml:.1f}, {mh:.1f}]  IQM {agg['iqm']:.1f} [{il:.1f}, {ih:.1f}]"
            f"  over {agg['runs']} seeds{failed}"
        )
    for what, name in (("table", "trials.md"), ("curves", "learning_curves.png"), ("JSON", "summary.json")):
        print(f"{what}: {folder / name}")
    if summary["parent_run_id"]:
        print(f"MLflow parent run {summary['parent_run_id']} in {summary['tracking_uri']}")
