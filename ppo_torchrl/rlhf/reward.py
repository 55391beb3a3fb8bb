"""Stage 2, the reward model: a scalar head trained on preference pairs (Bradley-Terry).

    loss = -log sigmoid(r(prompt, chosen) - r(prompt, rejected))

Pairs are judged by the true rule, with a share of the labels flipped (noisy annotators).
Held-out accuracy is measured against the rule itself, without label noise.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ppo_torchrl.rlhf.fit import fit
from ppo_torchrl.rlhf.lm import sequence_scores
from ppo_torchrl.rlhf.task import Pair
from ppo_torchrl.rlhf.text import completion_ids, pad, prompt_ids


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected)."""
    return -F.logsigmoid(chosen - rejected).mean()


def encode_pairs(tokenizer, pairs: list[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
    chosen, rejected = [], []
    for pair in pairs:
        prompt = prompt_ids(tokenizer, pair.example)
        chosen.append(prompt + completion_ids(tokenizer, *pair.chosen))
        rejected.append(prompt + completion_ids(tokenizer, *pair.rejected))
    width = max(map(len, chosen + rejected))  # one width, so both can share a forward pass
    return pad(chosen, tokenizer.pad_token_id, width), pad(rejected, tokenizer.pad_token_id, width)


def train_reward_model(
    model: nn.Module, tokenizer, pairs: list[Pair], *, epochs: int, batch_size: int, lr: float, seed: int, log
) -> dict[str, float]:
    chosen, rejected = encode_pairs(tokenizer, pairs)
    pad_id = tokenizer.pad_token_id

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        both = torch.cat([chosen[idx], rejected[idx]])  # one forward pass for both sides
        scores = model(input_ids=both, attention_mask=(both != pad_id).long()).logits.squeeze(-1)
        return bradley_terry_loss(scores[: len(idx)], scores[len(idx) :])

    loss, steps = fit(
        model,
        len(chosen),
        loss_of,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        log=log,
        name="rm_loss",
    )
    return {"rm_final_loss": loss, "rm_steps": steps}


@torch.no_grad()
def pair_accuracy(model: nn.Module, tokenizer, pairs: list[Pair]) -> float:
    """Share of pairs where the model scores the rule's preferred completion higher."""
    chosen, rejected = encode_pairs(tokenizer, pairs)
    pad_id = tokenizer.pad_token_id
    return float(
        (sequence_scores(model, chosen, pad_id) > sequence_scores(model, rejected, pad_id)).float().mean()
    )
