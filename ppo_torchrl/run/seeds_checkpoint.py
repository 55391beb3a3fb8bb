"""The checkpoint of a many-seeds run: every seed in one file, any one of them taken out.

    format          "ppo_torchrl-seeds"
    kind            "latest" (final.pt) or "best" (best.pt: each seed's actor at its own best
                    torch-native evaluation; the other fields as in final.pt)
    best            each seed's best evaluation mean and its frames
    seeds_format_version  2 (format_version is checkpoint.py's writer's own; 1, before the
                    compiled program, held the old update's state and cannot be resumed)
    config          the run's PPOConfig (num_seeds >= 1), as a dict of fields
    seeds           [seed, seed+1, ...]
    actor, critic   the stacked networks' flat weights, [seeds, P] each
    program         the program's state (run/seeds_program.py): every seed's weights, Adam
                    moments and step counts, envs, episodes in flight, stream positions
    progress        frames per seed, training and evaluation seconds, evaluations per seed
    tracking        the MLflow run to continue (as a single-seed checkpoint's)

`seed_policy(path, k)` rebuilds seed k's actor as an ordinary single-seed actor, so
``evaluate --seed-index k`` and ``export --seed-index k`` reuse the single-seed code.
Written atomically by checkpoint.py's `save_checkpoint(path, seeds_state(trainer))`; read
back checked (checkpoint.py's `load_policy` hands it here), with one-line
`CheckpointError`s. `restore(trainer, state)` resumes a run exactly where it stood: the same
weights after N + M iterations as an uninterrupted run (tests/test_seeds.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.errors import CheckpointError

if TYPE_CHECKING:
    from torch import nn

    from ppo_torchrl.run.seeds_trainer import SeedsTrainer

FORMAT = "ppo_torchrl-seeds"
VERSION = 2


def seeds_state(
    trainer: SeedsTrainer, kind: str = "latest", tracking: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every seed where it stands (``latest``, final.pt), or (``best``, best.pt) each seed's
    policy at its own best evaluation during training, with those evaluations."""
    best = kind == "best"
    return {
        "format": FORMAT,
        "seeds_format_version": VERSION,
        "kind": kind,
        "config": trainer.cfg.to_dict(),
        "seeds": list(trainer.seeds),
        "actor": trainer.best_actor.clone() if best else trainer.actor_weights(),
        "best": {
            "means": trainer.best_means.tolist(),
            "frames": trainer.best_frames.tolist(),
            "actor": trainer.best_actor.clone(),
        },
        "program": trainer.program.state_dict(),
        "progress": {
            "frames": trainer.frames,
            "train_seconds": trainer.train_seconds,
            "eval_seconds": trainer.eval_seconds,
            "first_iteration_seconds": trainer.first_iteration_seconds,
            "evals": [[list(p) for p in points] for points in trainer.evals],
        },
        "tracking": tracking or {},
    }


def restore(trainer: SeedsTrainer, state: dict[str, Any], path: Path) -> None:
    """Put a run built from the checkpoint's config back where the checkpoint stood."""
    from ppo_torchrl.run.results import EvalPoint

    if state.get("seeds_format_version") != VERSION or state.get("kind") != "latest":
        raise CheckpointError(
            f"{path} cannot be resumed: it holds every seed at its best evaluation (best.pt) or was "
            f"written before many-seeds runs could resume (format 1); resume from final.pt of a new run"
        )
    if state["seeds"] != trainer.seeds:
        raise CheckpointError(f"{path}: many-seeds checkpoint is damaged (seeds and config disagree)")
    try:
        trainer.program.load_state_dict(state["program"])
        progress = state["progress"]
        trainer.frames = int(progress["frames"])
        trainer.train_seconds = float(progress["train_seconds"])
        trainer.eval_seconds = float(progress["eval_seconds"])
        trainer.first_iteration_seconds = float(progress["first_iteration_seconds"])
        trainer.evals = [[EvalPoint(*p) for p in points] for points in progress["evals"]]
        trainer.best_means = torch.tensor(state["best"]["means"])
        trainer.best_frames = torch.tensor(state["best"]["frames"], dtype=torch.int64)
        trainer.best_actor = state["best"]["actor"].clone()
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path}: many-seeds checkpoint is damaged ({str(err).splitlines()[0]})"
        ) from None
    if len(trainer.evals) != len(trainer.seeds):
        raise CheckpointError(f"{path}: many-seeds checkpoint is damaged (evaluations and seeds disagree)")


def is_seeds_checkpoint(state: Any) -> bool:
    return isinstance(state, dict) and state.get("format") == FORMAT


def check_seeds_state(state: dict[str, Any], path: Path) -> PPOConfig:
    """The stored config, after checking the fields a policy needs; CheckpointError if off."""
    if state.get("seeds_format_version") not in (1, VERSION):  # 1's actors read the same
        raise CheckpointError(
            f"{path}: many-seeds checkpoint format {state.get('seeds_format_version')!r}, expected {VERSION}"
        )
    try:
        cfg = PPOConfig(**state["config"])
    except (TypeError, KeyError, ConfigError) as err:
        raise CheckpointError(f"{path}: stored config is invalid ({str(err).splitlines()[0]})") from None
    seeds = state.get("seeds")
    actor = state.get("actor")
    if not isinstance(seeds, list) or not isinstance(actor, torch.Tensor) or actor.shape[0] != len(seeds):
        raise CheckpointError(f"{path}: many-seeds checkpoint is damaged (seeds and weights disagree)")
    return cfg


def seed_policy(
    path: Path, state: dict[str, Any], index: int | None, device: torch.device | str | None
) -> tuple[PPOConfig, nn.Module]:
    """Seed ``index``'s actor (an ordinary single-seed actor) from a many-seeds checkpoint;
    its config is the single-seed config of that seed."""
    from ppo_torchrl.run.seeds_trainer import seed_actor

    cfg = check_seeds_state(state, path)
    seeds = state["seeds"]
    if index is None:
        raise CheckpointError(
            f"{path} holds {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}) trained together: "
            f"pick one with --seed-index K (0..{len(seeds) - 1})"
        )
    if not 0 <= index < len(seeds):
        raise CheckpointError(f"--seed-index {index} is out of range: {path} holds seeds 0..{len(seeds) - 1}")
    try:
        actor = seed_actor(cfg, state["actor"][index])
    except ValueError as err:
        raise CheckpointError(f"{path}: actor weights do not fit its config ({err})") from None
    single = PPOConfig(**{**cfg.to_dict(), "seed": seeds[index], "num_seeds": 0})
    return single, actor.to(device or "cpu")
