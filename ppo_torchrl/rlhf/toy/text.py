"""Between the task's text and token ids, for whichever tokenizer the models use."""

from __future__ import annotations

import torch

from ppo_torchrl.rlhf.toy.task import Example, digits_of


def prompt_ids(tokenizer, example: Example) -> list[int]:
    return tokenizer(example.prompt, add_special_tokens=False)["input_ids"]


def completion_ids(tokenizer, digits: tuple[int, ...], stopped: bool) -> list[int]:
    ids = tokenizer(" " + " ".join(map(str, digits)), add_special_tokens=False)["input_ids"] if digits else []
    return [*ids, tokenizer.eos_token_id] if stopped else ids


def pad(rows: list[list[int]], pad_id: int, width: int | None = None) -> torch.Tensor:
    """Right-padded [N, L] token ids (L = the longest row, or ``width``)."""
    width = width or max(len(r) for r in rows)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)


def lengths(rows: list[list[int]]) -> torch.Tensor:
    """[N] real lengths of the rows, from which attention masks are built (never from the pad id)."""
    return torch.tensor([len(r) for r in rows], dtype=torch.long)


def read_completion(tokenizer, ids: list[int]) -> tuple[tuple[int, ...], bool]:
    """(digits written, stopped?) of generated ids: everything up to the first EOS."""
    stopped = tokenizer.eos_token_id in ids
    if stopped:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    return digits_of(tokenizer.decode(ids)), stopped
