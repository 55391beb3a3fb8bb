"""Stage 2, the reward model: a scalar head trained on preference pairs (Bradley-Terry).

    loss = -log sigmoid(r(prompt, chosen) - r(prompt, rejected))

Pairs are judged by the true rule, with a share of the labels flipped (noisy annotators).
Held-out accuracy is measured against the rule itself, without label noise.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ppo_torchrl.rlhf.toy.fit import fit
from ppo_torchrl.rlhf.toy.lm import sequence_scores
from ppo_torchrl.rlhf.toy.task import Pair
from ppo_torchrl.rlhf.toy.text import completion_ids, lengths, pad, prompt_ids


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected)."""
    return -F.logsigmoid(chosen - rejected).mean()


def encode_pairs(tokenizer, pairs: list[Pair], device: torch.device | None = None):
    """((chosen ids, lengths), (rejected ids, lengths)), right-padded to one width so that both
    sides can share a forward pass."""
    chosen, rejected = [], []
    for pair in pairs:
        prompt = prompt_ids(tokenizer, pair.example)
        chosen.append(prompt + completion_ids(tokenizer, *pair.chosen))
        rejected.append(prompt + completion_ids(tokenizer, *pair.rejected))
    width = max(map(len, chosen + rejected))
    return tuple(
        (pad(rows, tokenizer.pad_token_id, width).to(device), lengths(rows).to(device))
        for rows in (chosen, rejected)
    )


def train_reward_model(
    model: nn.Module, tokenizer, pairs: list[Pair], *, epochs: int, batch_size: int, lr: float, seed: int, log
) -> dict[str, float]:
    (chosen, chosen_len), (rejected, rejected_len) = encode_pairs(
        tokenizer, pairs, next(model.parameters()).device
    )

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        both = torch.cat([chosen[idx], rejected[idx]])  # one forward pass for both sides
        scores = sequence_scores(model, both, torch.cat([chosen_len[idx], rejected_len[idx]]))
        return bradley_terry_loss(scores[: len(idx)], scores[len(idx) :])

    return fit(model, len(chosen), loss_of, "rm", epochs, batch_size, lr, seed, log)


@torch.no_grad()
def pair_accuracy(model: nn.Module, tokenizer, pairs: list[Pair]) -> float:
    """Share of pairs where the model scores the rule's preferred completion higher."""
    chosen, rejected = encode_pairs(tokenizer, pairs, next(model.parameters()).device)
    return float((sequence_scores(model, *chosen) > sequence_scores(model, *rejected)).float().mean())
