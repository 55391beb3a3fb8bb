"""Checkpoints on disk: policy, critic, optimizer, config, counters and RNG states.

Writes are atomic (temporary file in the same folder, fsync, rename), so a crash or a
kill during a save leaves the previous checkpoint intact rather than a torn file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ppo_torchrl.config import ConfigError, PPOConfig

if TYPE_CHECKING:
    from tensordict.nn import TensorDictModuleBase

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be used; its message is one line."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically and return the path."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format_version": FORMAT_VERSION, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint; CheckpointError (one line) if it is missing, truncated or foreign."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a torn or foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({reason[:120]})") from None
    required = {"format_version", "config", "actor", "critic", "optimizer", "counters"}
    if not isinstance(state, dict) or not required <= state.keys():
        raise CheckpointError(f"{path} is not a ppo_torchrl checkpoint (missing fields)")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {state['format_version']}, expected {FORMAT_VERSION}"
        )
    return state


def config_from_checkpoint(state: dict[str, Any], path: str | Path = "") -> PPOConfig:
    try:
        return PPOConfig(**state["config"])
    except (TypeError, ConfigError) as err:
        raise CheckpointError(f"{path}: stored config is invalid ({err})") from None


def load_policy(path: str | Path) -> tuple[PPOConfig, TensorDictModuleBase]:
    """The config and the trained actor of a checkpoint, ready for evaluation."""
    from ppo_torchrl.envs import make_env
    from ppo_torchrl.models import make_actor_critic

    state = load_checkpoint(path)
    cfg = config_from_checkpoint(state, path)
    env = make_env(cfg, num_envs=1)
    try:
        actor, _ = make_actor_critic(cfg, env)
    finally:
        env.close()
    try:
        actor.load_state_dict(state["actor"])
    except (RuntimeError, KeyError) as err:
        raise CheckpointError(f"{path}: policy weights do not fit its config ({err})") from None
    return cfg, actor
