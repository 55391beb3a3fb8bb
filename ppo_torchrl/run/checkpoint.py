"""Checkpoints on disk: one versioned schema, written atomically, read back checked whole.

Format 4 holds, and nothing else:

    format_version  4
    kind            "latest" (last.pt, final.pt: the run where it stands, resumable) or
                    "best" (best.pt: the run at its best greedy evaluation; evaluate it,
                    resume the run from its latest checkpoint)
    config          the run's PPOConfig, as a dict of fields
    actor, critic   the networks' state dicts
    optimizer       Adam's state dict (one group over actor then critic parameters)
    progress        `Progress`: counters, history, evaluations (frames, seconds, mean, std, n)
    rng             {"torch": CPU RNG, "update": the minibatch shuffle generator (None on the
                    program route), "cuda": or None}
    env             the Collector route's torch-native envs' snapshot, or None (gymnasium
                    cannot save its envs; the program route keeps its envs in ``program``)
    episode_carry   [num_envs] returns of the episodes in flight, or None
    reward_norm     the reward normaliser's state (running returns [num_envs], count,
                    mean, var), or None when rewards are not normalised
    program         the program route's whole state (run/learners.py, seeds_program.py: weights,
                    Adam moments, envs, stream positions), or None on the Collector route
    tracking        the tracker's state: run id, store URI, metrics not yet sent ({} untracked)

(Observation statistics are buffers of the networks, so they are in ``actor`` and ``critic``.
On the program route ``optimizer`` shows the program's Adam moments as torch's state dict.)
Format 3 (no ``program``: every run then learned on the Collector route, and resumes on it),
format 2 (no ``reward_norm``) and format 1 (before the schema: a ``counters`` copy of three
progress fields, no ``kind``, no best evaluation, evaluations without their training
seconds) are read too.
Writes are atomic (temporary file in the same folder, fsync, rename), so a crash or a kill
during a save leaves the previous checkpoint intact rather than a torn file.
`load_checkpoint` checks every field's presence, type and shape against the stored config;
`check_weights` checks that the networks and the optimizer fit the modules that config
builds. Anything else is a `CheckpointError` with a one-line message.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.files import write_atomically
from ppo_torchrl.run.checkpoint_schema import FIELDS, FORMAT_VERSION, check_fields, one_line, upgrade
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.errors import CheckpointError

if TYPE_CHECKING:
    from torch import nn


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (the format's fields) to ``path`` atomically and return the path."""
    # Serialised in memory first: torch.save turns a failed write (a full disk) into an opaque
    # RuntimeError; a plain write keeps the OSError and its errno. Checkpoints are small.
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    return write_atomically(Path(path), buffer.getbuffer())


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run's folder standing for the ``last.pt`` inside it (a
    many-seeds run's folder: its ``final.pt``)."""
    path = Path(path)
    if not path.is_dir():
        return path
    return (
        path / "final.pt"
        if (path / "final.pt").is_file() and not (path / "last.pt").exists()
        else path / "last.pt"
    )


def load_checkpoint(path: str | Path, allow_seeds: bool = False) -> dict[str, Any]:
    """Read and check a checkpoint (a file or a run folder); CheckpointError (one line) if it
    is missing, truncated, foreign, of another format, or any field is off. A many-seeds
    run's checkpoint (seeds_checkpoint.py) comes back unchecked with ``allow_seeds``, and is
    refused otherwise."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a torn or foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({reason[:120]})") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not a ppo_torchrl checkpoint")
    version = state.pop("format_version")
    if state.get("format") == "ppo_torchrl-seeds":
        if allow_seeds:
            return state
        raise CheckpointError(
            f"{path} holds {len(state.get('seeds') or [])} seeds trained together (--num-seeds): "
            "evaluate or export one of them with --seed-index K"
        )
    version = upgrade(state, version)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version!r}, expected {FORMAT_VERSION}")
    missing = [f for f in FIELDS if f not in state]
    extra = sorted(str(k) for k in state if k not in FIELDS)
    if missing or extra:
        what = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
        raise CheckpointError(f"{path} is not a ppo_torchrl checkpoint ({what})")
    try:
        check_fields(state)
    except (TypeError, ValueError, RuntimeError, KeyError) as err:
        raise CheckpointError(f"{path}: {one_line(err)}") from None
    return state


def config_from_checkpoint(state: dict[str, Any], path: str | Path = "") -> PPOConfig:
    try:
        return PPOConfig(**state["config"])
    except (TypeError, ConfigError) as err:
        raise CheckpointError(f"{path}: stored config is invalid ({one_line(err)})") from None


def rng_state(update_generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """The ``rng`` field: torch's CPU generator, the minibatch shuffle's, and CUDA's on a GPU."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"torch": torch.get_rng_state(), "update": update_generator.get_state(), "cuda": cuda}


def restore_rng(rng: dict[str, Any], update_generator: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    update_generator.set_state(rng["update"])
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)


def check_weights(
    state: dict[str, Any],
    actor: nn.Module,
    critic: nn.Module,
    path: str | Path = "",
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Load the stored networks into ``actor`` and ``critic`` (built from the stored config)
    and check that the optimizer state fits their parameters; CheckpointError if not. With
    ``optimizer`` (a run being resumed), load that state into it too."""
    for name, module in (("actor", actor), ("critic", critic)):
        try:
            module.load_state_dict(state[name])
        except (RuntimeError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"{path}: {name} weights do not fit its config ({one_line(err)[:160]})"
            ) from None
    # Once each, in the loss's order: a pixel policy shares its CNN with the critic, and the
    # optimizer (built over the loss's parameters) holds the shared tensors once.
    params = list({id(p): p for p in [*actor.parameters(), *critic.parameters()]}.values())
    groups, per_param = state["optimizer"]["param_groups"], state["optimizer"]["state"]
    indices = [i for group in groups for i in group["params"]]
    if sorted(indices) != list(range(len(params))):
        raise CheckpointError(f"{path}: optimizer state does not fit the networks ({len(params)} tensors)")
    for i, moments in per_param.items():
        if i not in indices:
            raise CheckpointError(f"{path}: optimizer state names tensor {i!r}, which the networks lack")
        for key, value in moments.items():
            if key != "step" and value.shape != params[i].shape:
                raise CheckpointError(f"{path}: optimizer {key} of tensor {i} does not fit its weights")
    if optimizer is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{path}: optimizer state does not fit ({err})") from None


def load_policy(
    path: str | Path, device: torch.device | str | None = None, seed_index: int | None = None
) -> tuple[PPOConfig, nn.Module]:
    """The config and the trained actor of a checkpoint (checked whole), on ``device``; of a
    many-seeds checkpoint, seed number ``seed_index``'s (0-based)."""
    from ppo_torchrl.envs.factory import make_env
    from ppo_torchrl.models.actor_critic import make_actor_critic
    from ppo_torchrl.run.seeds_checkpoint import is_seeds_checkpoint, seed_policy

    state = load_checkpoint(path, allow_seeds=True)
    if is_seeds_checkpoint(state):
        return seed_policy(checkpoint_path(path), state, seed_index, device)
    if seed_index is not None:
        raise CheckpointError(f"--seed-index: {checkpoint_path(path)} holds one seed's run, not many")
    cfg = config_from_checkpoint(state, path)
    env = make_env(cfg.env, 1, **cfg.env_options())
    try:
        actor, critic = make_actor_critic(env, device=device, **cfg.network_options())
    finally:
        env.close()
    check_weights(state, actor, critic, checkpoint_path(path))
    return cfg, actor
