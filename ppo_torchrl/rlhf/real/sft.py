"""Supervised fine-tuning of a real causal LM on the user's demonstrations.

A row is ``{"prompt": str | [messages], "completion": str | [one assistant message]}`` or
``{"messages": [...]}`` (the prompt: every message but the last; the completion: the last,
an assistant message). The loss is next-token cross-entropy on the completion's tokens
only, its EOS included (the model learns to stop); the prompt is context, labelled
`IGNORE`. Prompts become ids the way the RL stage sees them (`prompts.prompt_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.rlhf.data import Rows, check_prompts, completion_text, prompt_problem, require
from ppo_torchrl.rlhf.real.finetune import IGNORE, attention_mask, chunks, lengths, pad, precision
from ppo_torchrl.rlhf.real.prompts import completion_ids, prompt_ids


@dataclass
class Demo:
    prompt: str | list[dict[str, str]]
    completion: str


@dataclass
class Encoded:
    """Token ids of each row with its prompt length; how many rows ``max_length`` cut, and how
    many it left without a single completion token (those are dropped)."""

    ids: list[list[int]]
    starts: list[int]
    truncated: int = 0
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def demonstrations(rows: Rows, what: str) -> list[Demo]:
    """Each row as (prompt, completion), in either format; the first bad row in file order is
    one line naming it."""
    demos: list[Demo] = []
    for i, (row, where) in enumerate(zip(rows.rows, rows.where, strict=True)):
        messages = row.get("messages")
        if messages is None:
            one = rows.subset([i])
            require(one, ("prompt", "completion"), what)
            check_prompts(one, what)
            text = completion_text(row["completion"], what, f"{rows.path} {where}", "completion")
            demos.append(Demo(row["prompt"], text))
            continue
        problem = prompt_problem(messages)
        if problem is None and len(messages) < 2:
            problem = "needs a prompt before the assistant's last message"
        if problem is None and messages[-1]["role"] != "assistant":
            problem = f"must end with an assistant message (the last is {messages[-1]['role']!r})"
        if problem:
            raise ConfigError(f"{what}: {rows.path} {where}: 'messages' {problem}")
        demos.append(Demo(messages[:-1], messages[-1]["content"]))
    return demos


def encode(tokenizer: Any, demos: list[Demo], max_length: int) -> Encoded:
    """prompt + completion + EOS per row, the first ``max_length`` tokens kept (a cut row may
    lose its EOS; a row whose prompt fills ``max_length`` has nothing to learn and is dropped)."""
    out = Encoded([], [])
    for demo in demos:
        prompt = prompt_ids(tokenizer, demo.prompt)
        ids = prompt + completion_ids(tokenizer, demo.completion, eos=True)
        if len(ids) > max_length:
            out.truncated += 1
            if len(prompt) >= max_length:
                out.dropped += 1
                continue
            ids = ids[:max_length]
        out.ids.append(ids)
        out.starts.append(len(prompt))
    return out


def labels_of(ids: list[int], start: int) -> list[int]:
    """The row's labels: IGNORE over the prompt, the completion's own ids (EOS included) after."""
    return [IGNORE] * start + ids[start:]


def batch(encoded: Encoded, idx: list[int], pad_id: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(input_ids, attention_mask, labels) of rows ``idx``, right-padded; padding is IGNORE."""
    rows = [encoded.ids[i] for i in idx]
    labels = pad([labels_of(encoded.ids[i], encoded.starts[i]) for i in idx], IGNORE)
    inputs = pad(rows, pad_id)
    return inputs.to(device), attention_mask(lengths(rows), inputs.shape[1]).to(device), labels.to(device)


def token_nll(lm: nn.Module, inputs: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood of each labelled token (flat, float32). Position t predicts
    token t + 1; logits are computed at the predicting positions only (``logits_to_keep`` as a
    boolean mask), not over the whole prompt: the vocabulary projection is a large share of a
    small model's cost."""
    targets = labels[:, 1:]
    keep = F.pad(targets != IGNORE, (0, 1), value=False)  # [B, T]: positions whose next token counts
    logits = lm(input_ids=inputs, attention_mask=mask, logits_to_keep=keep).logits
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets[targets != IGNORE], reduction="none"
    )


def sft_loss(lm: nn.Module, encoded: Encoded, idx: list[int], pad_id: int) -> torch.Tensor:
    """Mean next-token cross-entropy over the completion tokens of rows ``idx``."""
    device = next(lm.parameters()).device
    return token_nll(lm, *batch(encoded, idx, pad_id, device)).mean()


@torch.no_grad()
def held_out_loss(lm: nn.Module, encoded: Encoded, batch_size: int, pad_id: int) -> dict[str, float]:
    """Mean cross-entropy per completion token over every held-out row (each token counts
    once, however the rows are batched)."""
    device = next(lm.parameters()).device
    total, count = 0.0, 0
    lm.eval()
    for idx in chunks(len(encoded), batch_size):
        with precision(device):
            nll = token_nll(lm, *batch(encoded, idx, pad_id, device))
        total, count = total + float(nll.sum()), count + nll.numel()
    return {"held_out_loss": total / count, "held_out_tokens": count}
