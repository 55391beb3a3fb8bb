"""Stage 2, the reward model: a scalar head trained on preference pairs (Bradley-Terry).

    loss = -log sigmoid(r(prompt, chosen) - r(prompt, rejected))

Pairs are judged by the true rule, with a share of the labels flipped (noisy annotators).
Held-out accuracy is measured against the rule itself, without label noise.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

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
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    step, loss = 0, torch.tensor(float("nan"))
    for _ in range(epochs):
        order = torch.randperm(len(chosen), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            both = torch.cat([chosen[idx], rejected[idx]])
            scores = model(input_ids=both, attention_mask=(both != pad_id).long()).logits.squeeze(-1)
            loss = bradley_terry_loss(scores[: len(idx)], scores[len(idx) :])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            if step % 20 == 0:
                log({"rm_loss": float(loss.detach())}, step)
    if step % 20:  # the last step, when the every-20 log missed it
        log({"rm_loss": float(loss.detach())}, step)
    model.eval()
    return {"rm_final_loss": float(loss.detach()), "rm_steps": step}


@torch.no_grad()
def pair_accuracy(model: nn.Module, tokenizer, pairs: list[Pair]) -> float:
    """Share of pairs where the model scores the rule's preferred completion higher."""
    chosen, rejected = encode_pairs(tokenizer, pairs)
    pad_id = tokenizer.pad_token_id
    return float(
        (sequence_scores(model, chosen, pad_id) > sequence_scores(model, rejected, pad_id)).float().mean()
    )
