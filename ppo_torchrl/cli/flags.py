"""Command-line plumbing shared by the entry points: one flag per config field.

Flags are generated from the dataclass, so a new hyperparameter gets its flag, its help
text and its default in ``--help`` without touching this file. Values arrive as strings
and are converted and checked by the config class itself, so a bad value from a flag and
from a config file produce the same one-line error.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, NoReturn

from ppo_torchrl.fields import Config, ConfigError


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def one_line(message: str) -> str:
    """Values may hold line breaks: every character str.splitlines breaks at is escaped."""
    return "".join(ascii(c)[1:-1] if len(f"a{c}b".splitlines()) > 1 else c for c in message)


def _metavar(kind: str) -> str:
    for prefix, name in (
        ("int", "INT"),
        ("float", "FLOAT"),
        ("tuple", "INT"),
        ("list[float]", "FLOAT"),
        ("list", "STR"),
        ("str", "STR"),
        ("dict", "KEY=VALUE"),
    ):
        if kind.startswith(prefix):
            return name
    return "VALUE"


def add_config_flags(parser: argparse.ArgumentParser, cls: type[Config]) -> None:
    """Add ``--field-name`` for every field of ``cls``; unset flags stay out of the namespace."""
    group = parser.add_argument_group(f"hyperparameters ({cls.__name__} fields)")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        shown = f.metadata.get("shown_default", default)  # e.g. a default that depends on another field
        help_text = f"{f.metadata['help']} (default: {_show(shown)})"
        kind = str(f.type)
        if kind.startswith("bool"):
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            # A list is repeatable (--reward a.py:f --reward b.py:g): each use extends it.
            many = kind.startswith(("tuple", "dict", "list"))
            group.add_argument(
                flag,
                dest=f.name,
                default=argparse.SUPPRESS,
                help=help_text,
                metavar=_metavar(kind),
                nargs="+" if many else None,
                **({"action": "extend"} if kind.startswith("list") else {}),
            )


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "none"
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value) or "none"
    return str(value)


def config_from_args(args: argparse.Namespace, cls: type[Config], *layers: dict[str, Any]) -> Any:
    """Defaults, then each of ``layers`` in turn (a preset, the ``--config`` file's values, read
    once by the caller), then the flags given on the command line."""
    values: dict[str, Any] = {}
    for layer in layers:
        values.update(layer)
    values.update({name: getattr(args, name) for name in cls.field_names() if hasattr(args, name)})
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = values.get(f.name)
        if "None" in str(f.type) and isinstance(value, str) and value.lower() == "none":
            values[f.name] = None  # "--solved-threshold none" restores an optional default
    return cls(**values)


def check_writable(path: Path) -> None:
    """Try it (permission bits say nothing to root, nor about a read-only filesystem)."""
    if path.is_dir():
        raise ConfigError(f"output: {path} is a folder; give a file path")
    if not path.parent.is_dir():
        raise ConfigError(f"output: folder does not exist: {path.parent}")
    existed = path.exists()
    try:
        with path.open("ab"):
            pass
    except OSError as err:
        raise ConfigError(f"output: cannot write {path} ({err.strerror or type(err).__name__})") from None
    if not existed:
        path.unlink()


def check_writable_folder(folder: Path, what: str) -> None:
    """A folder files will be written under, made on demand: its nearest existing ancestor
    must be a folder this process can create files in (tried, as above)."""
    import tempfile

    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ConfigError(
            f"{what}: cannot write under {existing} ({err.strerror or type(err).__name__})"
        ) from None
