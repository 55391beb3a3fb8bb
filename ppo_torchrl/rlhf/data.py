"""A task's rows from the user's files, for every stage (SFT, reward model, RL).

A file is JSONL, one JSON object a line (blank lines skipped), or a folder written by
``datasets.Dataset.save_to_disk``. Whatever is wrong with it is one `ConfigError` line that
names the file and, for JSONL, the line: a missing file, an empty one, a line that is not
JSON or not an object, a row without a field the stage needs, a prompt of the wrong shape.

A prompt is a string or a list of chat messages (``{"role": ..., "content": ...}``), as TRL's
datasets hold them; a completion (SFT's ``completion``, the reward model's ``chosen`` and
``rejected``) is a string or a list holding one assistant message.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppo_torchrl.fields import ConfigError


@dataclass
class Rows:
    """The rows of one file, and where each came from (its JSONL line, or its dataset index)."""

    path: str
    rows: list[dict[str, Any]]
    where: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, index: list[int]) -> Rows:
        return Rows(self.path, [self.rows[i] for i in index], [self.where[i] for i in index])


def read_rows(path: str | Path, what: str) -> Rows:
    """Every row of ``path`` (JSONL file or dataset folder); ``what`` names the flag in errors."""
    source = Path(path)
    if source.is_dir():
        return _from_dataset(source, what)
    if not source.is_file():
        raise ConfigError(f"{what}: no such file or folder: {path}")
    rows, where = [], []
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what}: cannot read {path} ({getattr(err, 'strerror', None) or err})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{what}: {path} line {number} is not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{what}: {path} line {number} is not a JSON object")
        rows.append(row)
        where.append(f"line {number}")
    if not rows:
        raise ConfigError(f"{what}: {path} is empty (no rows)")
    return Rows(str(path), rows, where)


def _from_dataset(folder: Path, what: str) -> Rows:
    try:
        from datasets import load_from_disk
    except ImportError:
        raise ConfigError(f"{what}: reading a dataset folder needs datasets: pip install datasets") from None
    try:
        data = load_from_disk(str(folder))
    except Exception as err:  # FileNotFoundError, or datasets' own for a foreign folder
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{what}: {folder} is not a JSONL file nor a saved dataset ({reason})") from None
    if hasattr(data, "keys") and not hasattr(data, "column_names"):  # a DatasetDict
        splits = ", ".join(data)
        raise ConfigError(f"{what}: {folder} holds several splits ({splits}); give one split's folder")
    rows = [dict(row) for row in data]
    if not rows:
        raise ConfigError(f"{what}: {folder} is empty (no rows)")
    return Rows(str(folder), rows, [f"row {i + 1}" for i in range(len(rows))])


def require(rows: Rows, fields: tuple[str, ...], what: str) -> None:
    """Every row has every one of ``fields``; else the first row that lacks one, named."""
    for row, where in zip(rows.rows, rows.where, strict=True):
        for name in fields:
            if name not in row or row[name] is None:
                raise ConfigError(f"{what}: {rows.path} {where} has no {name!r} field")


def check_prompts(rows: Rows, what: str, name: str = "prompt") -> None:
    for row, where in zip(rows.rows, rows.where, strict=True):
        problem = prompt_problem(row[name])
        if problem:
            raise ConfigError(f"{what}: {rows.path} {where}: {name!r} {problem}")


def prompt_problem(prompt: Any) -> str | None:
    """Why ``prompt`` is neither a non-empty string nor a list of chat messages (None: it is)."""
    if isinstance(prompt, str):
        return None if prompt.strip() else "is empty"
    if not isinstance(prompt, list) or not prompt:
        return "must be a string or a list of chat messages"
    for message in prompt:
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            return 'messages must be objects with "role" and "content"'
        if not isinstance(message["role"], str) or not isinstance(message["content"], str):
            return 'a message\'s "role" and "content" must be strings'
    return None


def completion_text(value: Any, what: str, where: str, name: str) -> str:
    """A completion as text: a string, or a list holding one assistant message (TRL's form)."""
    if isinstance(value, str):
        return value
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and isinstance(value[0].get("content"), str)
    ):
        return value[0]["content"]
    raise ConfigError(f"{what}: {where}: {name!r} must be a string or a list of one assistant message")


def split_held_out(rows: Rows, fraction: float, seed: int, what: str) -> tuple[Rows, Rows]:
    """(training rows, held-out rows): a seeded shuffle, ``round(fraction * n)`` held out (at
    least one), the training rows in the shuffled order."""
    n = len(rows)
    held = max(1, round(fraction * n))
    if held >= n:
        raise ConfigError(
            f"{what}: {rows.path} has {n} rows; a held-out share of {fraction:g} leaves none to train on"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return rows.subset(order[held:]), rows.subset(order[:held])
