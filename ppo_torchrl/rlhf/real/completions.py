"""A batch of sampled completions, laid out as the loss reads them, and their rewards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Row = dict[str, Any]  # one prompt row: "prompt" and the columns the rewards read


@dataclass
class Completions:
    rows: list[Row]
    sequence: torch.Tensor  # [B, W] prompt + completion, right-padded with pad_id
    starts: torch.Tensor  # [B] prompt lengths
    lengths: torch.Tensor  # [B] completion tokens, the EOS included where one was written
    texts: list[str]
    ids: list[list[int]]  # each completion's tokens, without its EOS
    sampler_log_prob: torch.Tensor  # [B, N] log-prob of each completion token where it was sampled

    def select(self, keep: list[int]) -> Completions:
        index = torch.tensor(keep, dtype=torch.long, device=self.sequence.device)
        return Completions(
            [self.rows[i] for i in keep],
            self.sequence.index_select(0, index),
            self.starts.index_select(0, index),
            self.lengths.index_select(0, index),
            [self.texts[i] for i in keep],
            [self.ids[i] for i in keep],
            self.sampler_log_prob.index_select(0, index),
        )

    @staticmethod
    def concat(parts: list[Completions], pad_id: int) -> Completions:
        """One batch of several, sequences and log-probs right-padded to the widest."""
        if len(parts) == 1:
            return parts[0]
        width = max(p.sequence.shape[1] for p in parts)
        steps = max(p.sampler_log_prob.shape[1] for p in parts)
        sequence = torch.cat(
            [nn.functional.pad(p.sequence, (0, width - p.sequence.shape[1]), value=pad_id) for p in parts]
        )
        log_prob = torch.cat(
            [nn.functional.pad(p.sampler_log_prob, (0, steps - p.sampler_log_prob.shape[1])) for p in parts]
        )
        return Completions(
            [r for p in parts for r in p.rows],
            sequence,
            torch.cat([p.starts for p in parts]),
            torch.cat([p.lengths for p in parts]),
            [t for p in parts for t in p.texts],
            [i for p in parts for i in p.ids],
            log_prob,
        )


@dataclass
class Scored:
    """A batch's rewards: the weighted total per completion and each function's values."""

    total: torch.Tensor
    values: dict[str, list[float | None]]
