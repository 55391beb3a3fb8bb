"""Checkpoints on disk: one versioned schema, written atomically, read back checked whole.

Format 3 holds, and nothing else:

    format_version  3
    kind            "latest" (last.pt, final.pt: the run where it stands, resumable) or
                    "best" (best.pt: the run at its best greedy evaluation; evaluate it,
                    resume the run from its latest checkpoint)
    config          the run's PPOConfig, as a dict of fields
    actor, critic   the networks' state dicts
    optimizer       Adam's state dict (one group over actor then critic parameters)
    progress        `Progress`: counters, history, evaluations (frames, seconds, mean, std, n)
    rng             {"torch": CPU RNG, "update": the minibatch shuffle generator, "cuda": or None}
    env             the torch-native envs' snapshot, or None (gymnasium cannot save its envs)
    episode_carry   [num_envs] returns of the episodes in flight, or None
    reward_norm     the reward normaliser's state (running returns [num_envs], count,
                    mean, var), or None when rewards are not normalised
    tracking        the tracker's state: run id, store URI, metrics not yet sent ({} untracked)

(Observation statistics are buffers of the networks, so they are in ``actor`` and ``critic``.)
Format 2 (no ``reward_norm``) and format 1 (before the schema: a ``counters`` copy of three
progress fields, no ``kind``, no best evaluation, evaluations without their training
seconds) are read too.
Writes are atomic (temporary file in the same folder, fsync, rename), so a crash or a kill
during a save leaves the previous checkpoint intact rather than a torn file.
`load_checkpoint` checks every field's presence, type and shape against the stored config;
`check_weights` checks that the networks and the optimizer fit the modules that config
builds. Anything else is a `CheckpointError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.errors import CheckpointError, DiskWriteError
from ppo_torchrl.run.results import Progress

if TYPE_CHECKING:
    from torch import nn

FORMAT_VERSION = 3
FIELDS = (
    "kind", "config", "actor", "critic", "optimizer", "progress", "rng", "env", "episode_carry",
    "reward_norm", "tracking",
)  # fmt: skip
KINDS = ("latest", "best")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (the format's fields) to ``path`` atomically and return the path."""
    path = Path(path)
    # Serialised in memory first: torch.save turns a failed write (a full disk) into an opaque
    # RuntimeError; a plain write keeps the OSError and its errno. Checkpoints are small.
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise DiskWriteError(path, err) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run's folder standing for the ``last.pt`` inside it."""
    path = Path(path)
    return path / "last.pt" if path.is_dir() else path


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
            f"{path} holds {len(state.get('seeds') or [])} seeds trained together (--num-seeds), which "
            "cannot be resumed yet; evaluate or export one of them with --seed-index K"
        )
    if version == 1 and isinstance(state.get("counters"), dict):
        _from_format_1(state)
        version = 2
    if version == 2:
        state.setdefault("reward_norm", None)  # format 2 had no reward normalisation
        version = 3
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version!r}, expected {FORMAT_VERSION}")
    missing = [f for f in FIELDS if f not in state]
    extra = sorted(str(k) for k in state if k not in FIELDS)
    if missing or extra:
        what = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
        raise CheckpointError(f"{path} is not a ppo_torchrl checkpoint ({what})")
    try:
        _check_fields(state)
    except (TypeError, ValueError, RuntimeError, KeyError) as err:
        raise CheckpointError(f"{path}: {_one_line(err)}") from None
    return state


def _from_format_1(state: dict[str, Any]) -> None:
    """Format 1 -> 2: drop the counters copy; every format-1 file was a run's latest state;
    its evaluations had no training seconds and it tracked no best evaluation."""
    del state["counters"]
    state["kind"] = "latest"
    progress = state.get("progress")
    if isinstance(progress, dict):
        progress.setdefault("best_frames", None)
        progress.setdefault("best_mean", None)
        points = progress.get("eval_points")
        if isinstance(points, list):
            progress["eval_points"] = [[p[0], None, *p[1:]] if len(p) == 4 else p for p in points]


def config_from_checkpoint(state: dict[str, Any], path: str | Path = "") -> PPOConfig:
    try:
        return PPOConfig(**state["config"])
    except (TypeError, ConfigError) as err:
        raise CheckpointError(f"{path}: stored config is invalid ({_one_line(err)})") from None


def check_weights(state: dict[str, Any], actor: nn.Module, critic: nn.Module, path: str | Path = "") -> None:
    """Load the stored networks into ``actor`` and ``critic`` (built from the stored config)
    and check that the optimizer state fits their parameters; CheckpointError if not."""
    for name, module in (("actor", actor), ("critic", critic)):
        try:
            module.load_state_dict(state[name])
        except (RuntimeError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"{path}: {name} weights do not fit its config ({_one_line(err)[:160]})"
            ) from None
    params = [*actor.parameters(), *critic.parameters()]
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
    env = make_env(cfg.env, 1, seed=cfg.seed, backend=cfg.env_backend, env_kwargs=cfg.env_kwargs)
    try:
        actor, critic = make_actor_critic(
            env,
            hidden_sizes=cfg.hidden_sizes,
            activation=cfg.activation,
            device=device,
            normalize_observations=cfg.normalize_observations,
            continuous_actions=cfg.continuous_actions,
        )
    finally:
        env.close()
    check_weights(state, actor, critic, checkpoint_path(path))
    return cfg, actor


# --- the fields, one check each ------------------------------------------------------------------
def _check_fields(state: dict[str, Any]) -> None:
    if state["kind"] not in KINDS:
        raise ValueError(f"kind: {state['kind']!r} is not one of {', '.join(map(repr, KINDS))}")
    try:
        cfg = PPOConfig(**_typed(state["config"], dict, "config"))
    except ConfigError as err:
        raise ValueError(f"stored config is invalid ({err})") from None
    for name in ("actor", "critic"):
        weights = _typed(state[name], dict, name)
        if not weights or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in weights.items()):
            raise TypeError(f"{name}: not a state dict of tensors")
    _check_optimizer(_typed(state["optimizer"], dict, "optimizer"))
    _check_progress(_typed(state["progress"], dict, "progress"))
    _check_rng(_typed(state["rng"], dict, "rng"))
    _check_env(state["env"], cfg.num_envs)
    carry = state["episode_carry"]
    if carry is not None and not _tensor_like(carry, (cfg.num_envs,), torch.float64):
        raise ValueError(f"episode_carry: not a float64 tensor of shape [{cfg.num_envs}]")
    _check_reward_norm(state["reward_norm"], cfg.num_envs, cfg.normalize_rewards)
    _check_tracking(_typed(state["tracking"], dict, "tracking"))


def _check_reward_norm(norm: Any, num_envs: int, expected: bool) -> None:
    if norm is None:
        if expected:
            raise ValueError("reward_norm: missing, but the config normalises rewards")
        return
    _typed(norm, dict, "reward_norm")
    if not expected:
        raise ValueError("reward_norm: present, but the config does not normalise rewards")
    if set(norm) != {"returns", "count", "mean", "var"}:
        raise ValueError("reward_norm: expected returns, count, mean and var")
    if not _tensor_like(norm["returns"], (num_envs,), torch.float64):
        raise ValueError(f"reward_norm: returns is not a float64 tensor of shape [{num_envs}]")
    for key in ("count", "mean", "var"):
        if not isinstance(norm[key], float) or norm[key] != norm[key] or (key != "mean" and norm[key] < 0):
            raise ValueError(f"reward_norm: {key} is not a valid number")


def _check_optimizer(optimizer: dict) -> None:
    groups = _typed(optimizer.get("param_groups"), list, "optimizer param_groups")
    for group in groups:
        params = _typed(group, dict, "optimizer group").get("params")
        if not isinstance(params, list) or not all(isinstance(i, int) for i in params):
            raise TypeError("optimizer: a parameter group has no list of parameter indices")
    for moments in _typed(optimizer.get("state"), dict, "optimizer state").values():
        if not isinstance(moments, dict) or not all(torch.is_tensor(v) for v in moments.values()):
            raise TypeError("optimizer: per-parameter state is not a dict of tensors")


def _check_progress(progress: dict) -> None:
    kinds = {f.name: f.type for f in dataclasses.fields(Progress)}
    if set(progress) != set(kinds):
        raise ValueError(f"progress: fields {sorted(progress)} are not {sorted(kinds)}")
    for name, kind in kinds.items():
        value = progress[name]
        base = {"int": int, "float": (int, float), "list": list}[str(kind).split("[")[0].split(" ")[0]]
        if not (isinstance(value, base) and not isinstance(value, bool)) and not (
            value is None and "None" in str(kind)
        ):
            raise TypeError(f"progress: {name} is {type(value).__name__}, expected {kind}")
    if not all(isinstance(p, (list, tuple)) and len(p) == 5 for p in progress["eval_points"]):
        raise TypeError("progress: eval_points are not (frames, seconds, mean, std, episodes) rows")
    if len(progress["episode_frames"]) != len(progress["episode_returns"]):
        raise ValueError("progress: episode_frames and episode_returns differ in length")


def _check_rng(rng: dict) -> None:
    for name in ("torch", "update"):
        _generator_state(rng.get(name), f"rng {name}")
    cuda = rng.get("cuda")
    if cuda is not None and not _tensor_like(cuda, None, torch.uint8):
        raise TypeError("rng cuda: not a byte tensor")
    if set(rng) - {"torch", "update", "cuda"}:
        raise ValueError(f"rng: unexpected entries {sorted(set(rng) - {'torch', 'update', 'cuda'})}")


def _check_env(env: Any, num_envs: int) -> None:
    if env is None:
        return
    _typed(env, dict, "env")
    shapes = {"state": ((num_envs, 4), torch.float64), "elapsed": ((num_envs,), torch.int64)}
    for key, (shape, dtype) in shapes.items():
        if not _tensor_like(env.get(key), shape, dtype):
            raise ValueError(f"env: {key} is not a {dtype} tensor of shape {list(shape)}")
    _generator_state(env.get("rng"), "env rng")


def _check_tracking(tracking: dict) -> None:
    if not tracking:
        return
    if not isinstance(tracking.get("run_id"), (str, type(None))) or not isinstance(tracking.get("uri"), str):
        raise TypeError("tracking: run_id and uri are not strings")
    pending = _typed(tracking.get("pending"), list, "tracking pending")
    if not all(isinstance(m, (list, tuple)) and len(m) == 4 for m in pending):
        raise TypeError("tracking: pending metrics are not (key, value, timestamp, step) rows")


def _generator_state(value: Any, what: str) -> None:
    if not _tensor_like(value, None, torch.uint8):
        raise TypeError(f"{what}: not a byte tensor")
    torch.Generator().set_state(value.clone())  # RuntimeError unless a CPU generator state


def _tensor_like(value: Any, shape: tuple[int, ...] | None, dtype: torch.dtype) -> bool:
    return (
        torch.is_tensor(value)
        and value.dtype == dtype
        and ((shape is None and value.dim() == 1) or value.shape == shape)
    )


def _typed(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"{what} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__
