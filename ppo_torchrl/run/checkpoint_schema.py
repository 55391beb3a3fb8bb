"""The checkpoint format's fields, one check each, and the older formats read into the current one.

`load_checkpoint` (checkpoint.py) runs `check_fields` on every file before anything uses it,
so a torn, foreign or hand-edited checkpoint is one line naming the field, never a traceback
halfway through a resume. Format 1 (before the schema) and format 2 (no reward normaliser) are
upgraded in memory by `upgrade`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.results import Progress

FORMAT_VERSION = 4
FIELDS = (
    "kind", "config", "actor", "critic", "optimizer", "progress", "rng", "env", "episode_carry",
    "reward_norm", "program", "tracking",
)  # fmt: skip
PROGRAM_FIELDS = ("learners", "env", "drawn", "episodes")  # run/seeds_program.py's state_dict
KINDS = ("latest", "best")


def upgrade(state: dict[str, Any], version: Any) -> Any:
    """Formats 1-3 read into format 4, in place; the version it is in now."""
    if version == 1 and isinstance(state.get("counters"), dict):
        _from_format_1(state)
        version = 2
    if version == 2:
        state.setdefault("reward_norm", None)  # format 2 had no reward normalisation
        version = 3
    if version == 3:
        state.setdefault("program", None)  # format 3: every run learned on the Collector route
        version = 4
    return version


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


def check_fields(state: dict[str, Any]) -> None:
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
    _check_program(state, cfg.num_envs)
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


def _check_program(state: dict[str, Any], num_envs: int) -> None:
    """The program route's state (run/learners.py), or None for the Collector route: every
    tensor of the shape the config's networks (``actor``, ``critic``) and envs give it."""
    program = state["program"]
    if program is None:
        return
    _typed(program, dict, "program")
    if set(program) != set(PROGRAM_FIELDS):
        raise ValueError(f"program: fields {sorted(program)} are not {sorted(PROGRAM_FIELDS)}")
    learners = _typed(program["learners"], dict, "program learners")
    sizes = [sum(t.numel() for t in state[name].values()) for name in ("actor", "critic")]
    for key in ("params", "exp_avg", "exp_avg_sq"):
        rows = learners.get(key)
        if not (
            isinstance(rows, (tuple, list))
            and len(rows) == 2
            and all(_tensor_like(r, (1, n), torch.float32) for r, n in zip(rows, sizes, strict=True))
        ):
            raise ValueError(f"program: {key} do not fit the networks ({sizes[0]} and {sizes[1]} weights)")
    if not _tensor_like(learners.get("steps"), (1,), torch.float32):
        raise ValueError("program: steps is not a float32 tensor of shape [1]")
    env = _typed(program["env"], dict, "program env")
    state_ = env.get("state")
    if not (torch.is_tensor(state_) and state_.dtype == torch.float64 and state_.dim() == 3
            and state_.shape[:2] == (1, num_envs)):  # fmt: skip
        raise ValueError(f"program: env state is not a float64 tensor of shape [1, {num_envs}, D]")
    for key, dtype in (("elapsed", torch.int64), ("running", torch.float32)):
        if not _tensor_like(env.get(key), (1, num_envs), dtype):
            raise ValueError(f"program: env {key} is not a {dtype} tensor of shape [1, {num_envs}]")
    drawn = _typed(program["drawn"], dict, "program drawn")
    if set(drawn) != {"env", "act", "mb"} or not all(isinstance(v, int) and v >= 0 for v in drawn.values()):
        raise ValueError("program: drawn is not the env, act and mb stream positions")
    episodes = program["episodes"]
    if not (isinstance(episodes, (list, tuple)) and len(episodes) == 2
            and all(_tensor_like(e, (1,), torch.float32) for e in episodes)):  # fmt: skip
        raise ValueError("program: episodes is not (sum, count) of shape [1]")


def _check_rng(rng: dict) -> None:
    _generator_state(rng.get("torch"), "rng torch")
    if rng.get("update") is not None:  # None on the program route: its streams are counters
        _generator_state(rng["update"], "rng update")
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


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__
