"""PPOConfig: every hyperparameter of a run, named once, with its default and its meaning.

The dataclass is the single source of truth: the CLI builds one flag per field from it,
YAML config files may set any field, and MLflow logs all of it as the run's params.
A config validates itself on construction, so a bad value fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A user-facing configuration problem; its message is one line naming the field."""


def _field(default: Any, help: str, **constraints: Any) -> Any:
    return field(default=default, metadata={"help": help, **constraints})


config_field = _field  # for other config dataclasses built on `Config`


class Config:
    """Base of the project's config dataclasses: fields declared with ``config_field`` carry
    their help text and bounds, and are converted and checked on construction."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, _check(f, getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]


@dataclass
class PPOConfig(Config):
    # --- environment -------------------------------------------------------------------
    env: str = _field("CartPole-v1", "gymnasium environment id")
    seed: int = _field(0, "random seed for torch, the envs and evaluation", min=0)
    num_envs: int = _field(32, "parallel environments collected from", min=1)
    env_backend: str = _field(
        "auto",
        "training env backend: 'gymnasium' (GymWrapper over a gymnasium vector env), 'torch' "
        "(torch-native batched copy, CartPole-v1 only) or 'auto' (torch where it exists)",
        choices=("auto", "gymnasium", "torch"),
    )
    reward_scale: float = _field(1.0, "multiplies rewards before GAE (returns are reported unscaled)", gt=0.0)
    # --- budget --------------------------------------------------------------------------
    frames: int = _field(500_000, "training budget in environment frames", min=1)
    episodes: int = _field(0, "training budget in completed episodes (0: no episode limit)", min=0)
    stop_when_solved: bool = _field(True, "stop once a greedy evaluation reaches the solved threshold")
    solved_threshold: float | None = _field(
        None, "mean greedy return that counts as solved (default: the env's reward_threshold)"
    )
    # --- rollout and advantage ---------------------------------------------------------------
    rollout_steps: int = _field(
        32, "steps per env per update (frames per batch = num_envs * rollout_steps)", min=1
    )
    gamma: float = _field(0.99, "discount factor", min=0.0, max=1.0)
    lam: float = _field(0.95, "GAE lambda: 0 gives the TD error, 1 the Monte-Carlo return", min=0.0, max=1.0)
    # --- PPO loss ------------------------------------------------------------------------------
    clip_epsilon: float = _field(0.3, "PPO clip range epsilon, in (0, 1)", gt=0.0, lt=1.0)
    entropy_coef: float = _field(0.0, "weight of the entropy bonus", min=0.0)
    critic_coef: float = _field(0.5, "weight of the value loss", min=0.0)
    critic_loss: str = _field(
        "l2", "value loss: 'l2' (squared error), 'smooth_l1' or 'l1'", choices=("l2", "smooth_l1", "l1")
    )
    clip_value: bool = _field(False, "clip the value loss around the old values by clip_epsilon")
    normalize_advantage: bool = _field(True, "standardise advantages in each minibatch")
    # --- optimisation --------------------------------------------------------------------------
    lr: float = _field(2e-3, "Adam learning rate", gt=0.0)
    anneal_lr: bool = _field(False, "decay the learning rate linearly to 0 over the frame budget")
    epochs: int = _field(3, "passes over each collected batch", min=1)
    minibatch_size: int = _field(512, "frames per gradient step (must divide into the batch)", min=1)
    max_grad_norm: float = _field(0.5, "gradient-norm clip (0 disables)", min=0.0)
    hidden_sizes: tuple[int, ...] = _field((64, 64), "hidden layer widths of both MLPs")
    activation: str = _field(
        "tanh", "hidden activation of both MLPs: 'tanh' or 'relu'", choices=("tanh", "relu")
    )
    # --- evaluation, checkpoints, tracking -------------------------------------------------------
    eval_episodes: int = _field(100, "greedy evaluation episodes", min=1)
    eval_every_frames: int = _field(2048, "frames between greedy solved-checks (0: only at the end)", min=0)
    checkpoint_dir: str = _field("checkpoints", "folder for checkpoints")
    checkpoint_every_frames: int = _field(
        50_000, "frames between periodic checkpoints (0: only the final one)", min=0
    )
    track: bool = _field(True, "log the run to MLflow (MLFLOW_TRACKING_URI, or ./mlflow.db)")
    experiment: str = _field("ppo_torchrl", "MLflow experiment name")

    def __post_init__(self) -> None:
        super().__post_init__()
        batch = self.num_envs * self.rollout_steps
        if self.minibatch_size > batch:
            raise ConfigError(
                f"minibatch_size: must be at most num_envs * rollout_steps = {batch} "
                f"(got {self.minibatch_size})"
            )

    @property
    def frames_per_batch(self) -> int:
        return self.num_envs * self.rollout_steps


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _check(f: dataclasses.Field, value: Any) -> Any:
    """Coerce ``value`` to the field's type and check its bounds; ConfigError if it can't."""
    name, meta, kind = f.name, f.metadata, str(f.type)
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: must be true or false (got {value!r})")
        return value
    if kind.startswith("tuple"):
        return _check_sizes(name, value)
    if value is None and "None" in kind:
        return None
    if kind.startswith("int"):
        value = _as_int(name, value)
    elif kind.startswith("float"):
        value = _as_float(name, value)
    elif kind.startswith("str") and (not isinstance(value, str) or not value):
        raise ConfigError(f"{name}: must be a non-empty string (got {value!r})")
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(repr(c) for c in meta["choices"])
        raise ConfigError(f"{name}: must be one of {allowed} (got {value!r})")
    _check_bounds(name, value, meta)
    return value


def _check_bounds(name: str, value: Any, meta: Any) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    gt, lt = meta.get("gt"), meta.get("lt")
    ok = (
        (lo is None or value >= lo)
        and (hi is None or value <= hi)
        and (gt is None or value > gt)
        and (lt is None or value < lt)
    )
    if ok:
        return
    if lo is not None and hi is not None:
        rule = f"in [{lo}, {hi}]"
    elif gt is not None and lt is not None:
        rule = f"in ({gt}, {lt})"
    elif gt is not None:
        rule = f"> {gt}"
    else:
        rule = f">= {lo}"
    raise ConfigError(f"{name}: must be {rule} (got {value!r})")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: must be a whole number (got {value!r})")
    if isinstance(value, str):
        try:
            value = float(value.replace("_", "")) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise ConfigError(f"{name}: must be a whole number (got {value!r})") from None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ConfigError(f"{name}: must be a whole number (got {value!r})")
        value = int(value)
    if not isinstance(value, int):
        raise ConfigError(f"{name}: must be a whole number (got {value!r})")
    return value


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: must be a number (got {value!r})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: must be a number (got {value!r})") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name}: must be a finite number (got {value!r})")
    return number


def _check_sizes(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{name}: must be a non-empty list of layer widths (got {value!r})")
    sizes = tuple(_as_int(name, v) for v in value)
    if min(sizes) < 1:
        raise ConfigError(f"{name}: layer widths must be >= 1 (got {value!r})")
    return sizes


def load_config_file(path: str | Path, cls: type[Config] | None = None) -> dict[str, Any]:
    """Read a YAML mapping of ``cls`` fields (PPOConfig's by default); ConfigError otherwise."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config: cannot read {path}: {err.__class__.__name__}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config: {path} is not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of field: value")
    known = set((cls or PPOConfig).field_names())
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"config: unknown key {key!r} in {path}")
        values[name] = value
    return values
