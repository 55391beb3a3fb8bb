"""`python -m ppo_torchrl.track sync RUN_DIR`: send what a run's journal still holds.

A run whose tracking server was unreachable at its end leaves the records it could not send
in its folder's ``tracking.jsonl`` (the run said how many, and this command). Every journal
in the folder and below it is synced (tracking/sync.py): an RLHF run's, a sweep's parent and
its trials. Running it again sends nothing twice; a sync cut short resumes where it stopped.

Exit status: 0 everything sent (or nothing left to send); 1 the server did not take it all
(run it again later); 2 bad input (not a run folder with a journal), one line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ppo_torchrl.cli.flags import OneLineArgumentParser
from ppo_torchrl.tracking.journal import JOURNAL
from ppo_torchrl.tracking.sync import journals_under, sync


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m ppo_torchrl.track", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sync_cmd = commands.add_parser("sync", help="send the records a run's journal still holds")
    sync_cmd.add_argument(
        "run_dir", help="the run's folder (checkpoints/<run id>, an RLHF output folder, a sweep folder)"
    )
    sync_cmd.add_argument("--uri", help="the tracking store to send to (default: the one the run used)")
    sync_cmd.add_argument(
        "--timeout", type=int, default=10, help="seconds an HTTP request may take (default: 10)"
    )
    args = parser.parse_args(argv)
    folder = Path(args.run_dir)
    journals = journals_under(folder, args.uri)
    if not journals:
        print(f"error: {folder}: not a tracked run's folder (no {JOURNAL} with its run id)", file=sys.stderr)
        return 2
    return max(sync(journal, args.timeout, rebuild_policy) for journal in journals)


def rebuild_policy(checkpoint: str) -> tuple[Any, Any]:
    """A finished run's MLflow model, made again from its final checkpoint: the greedy policy
    and five real observations for its signature (as the run itself logs it)."""
    from ppo_torchrl.run.checkpoint import load_policy
    from ppo_torchrl.run.greedy_io import greedy_policy, sample_observations

    cfg, actor = load_policy(checkpoint, "cpu")
    observations = sample_observations(cfg.env, cfg.env_kwargs, 5, cfg.seed)
    return greedy_policy(actor, cfg.env, cfg.env_kwargs), observations


if __name__ == "__main__":
    sys.exit(main())
