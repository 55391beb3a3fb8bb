"""Validated parameter dataclasses: the base that every config and parameter object uses.

A field declared with ``config_field`` carries its help text and its bounds; the dataclass
converts and checks every field on construction, so a bad value fails before any work
starts, with one line naming the field. The CLI builds one flag per field from the same
metadata, and YAML files may set any field. This module imports nothing from the package:
the PPO core's parameter objects, the trainer's ``PPOConfig`` and the RLHF config all
stand on it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

# The default of a field that has none where it is declared: whoever builds the object says.
REQUIRED: Any = dataclasses.MISSING
P = TypeVar("P", bound="Config")


class ConfigError(ValueError):
    """A user-facing configuration problem; its message is one line naming the field."""


def config_field(default: Any, help: str, **constraints: Any) -> Any:
    """A dataclass field with its help text and bounds (min, max, gt, lt, choices); ``REQUIRED``
    for none (a keyword-only field, so it may follow fields that have one)."""
    metadata = {"help": help, **constraints}
    if default is REQUIRED:
        return field(metadata=metadata, kw_only=True)
    if isinstance(default, (dict, list)):  # a mutable default: each config gets its own copy
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def field_like(owner: type, name: str, default: Any = REQUIRED, help: str | None = None) -> Any:
    """A field with the help text and bounds of ``owner``'s field ``name``, and its default
    unless one is given here: a config that composes a parameter object states each rule and
    each default once. Where ``owner`` holds no default, the config must give one."""
    spec = next(f for f in dataclasses.fields(owner) if f.name == name)
    meta = dict(spec.metadata)
    if help is not None:
        meta["help"] = help
    if default is REQUIRED:
        default = spec.default
        if default is REQUIRED:
            raise TypeError(f"{owner.__name__}.{name} has no default: the config must give one")
    return field(default=default, metadata=meta)


class Config:
    """Base of the project's parameter dataclasses (frozen or not): fields declared with
    ``config_field`` are converted and checked on construction."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _check(f, getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def params(self, cls: type[P]) -> P:
        """The parameter object ``cls`` (the core's, the tracker's) from this config's fields of
        the same names, with `param_overrides` on top; the fields this config lacks keep
        ``cls``'s own defaults."""
        mine = set(self.field_names())
        values = {name: getattr(self, name) for name in cls.field_names() if name in mine}
        overrides = {k: v for k, v in self.param_overrides().items() if k in cls.field_names()}
        return cls(**{**values, **overrides})

    def param_overrides(self) -> dict[str, Any]:
        """Parameter-object fields this config names differently or derives (none here)."""
        return {}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    return list(value) if isinstance(value, (tuple, list)) else value


def _check(f: dataclasses.Field, value: Any) -> Any:
    """Coerce ``value`` to the field's type and check its bounds; ConfigError if it can't."""
    name, meta, kind = f.name, f.metadata, str(f.type)
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: must be true or false (got {value!r})")
        return value
    if kind.startswith("tuple"):
        return _check_sizes(name, value)
    if kind.startswith("dict"):
        return _check_mapping(name, value)
    if kind.startswith("list"):
        return _check_list(name, value, float if "float" in kind else str)
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


def _check_list(name: str, value: Any, item: type) -> list[Any]:
    """A list of non-empty strings or of finite numbers (a repeatable flag); empty is allowed."""
    if value is None:
        return []
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name}: must be a list (got {value!r})")
    if item is float:
        return [_as_float(name, v) for v in value]
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name}: must be a list of non-empty strings (got {value!r})")
    return list(value)


def _check_mapping(name: str, value: Any) -> dict[str, Any]:
    """A mapping of names to plain values; from the command line, ``key=value`` words whose
    values are read as YAML scalars (``is_slippery=false`` gives False, ``size=8`` gives 8)."""
    import yaml

    if value is None:
        return {}
    if isinstance(value, str):
        value = value.split()
    if isinstance(value, (list, tuple)):
        pairs: dict[str, Any] = {}
        for word in value:
            key, sep, text = str(word).partition("=")
            if not sep or not key:
                raise ConfigError(f"{name}: expected key=value (got {word!r})")
            try:
                pairs[key] = yaml.safe_load(text) if text else ""
            except yaml.YAMLError:
                pairs[key] = text
        value = pairs
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise ConfigError(f"{name}: must be a mapping of argument names to values (got {value!r})")
    return dict(value)


def load_config_file(path: str | Path, cls: type[Config]) -> dict[str, Any]:
    """Read a YAML mapping of ``cls`` fields; ConfigError otherwise."""
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
    known = set(cls.field_names())
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"config: unknown key {key!r} in {path}")
        values[name] = value
    return values
