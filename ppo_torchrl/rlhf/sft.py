"""Stage 1, supervised fine-tuning: next-token cross-entropy on (noisy) demonstrations.

Only completion tokens are learned (the prompt is context). A stated share of the
demonstrations are wrong — the prompt's digits copied unsorted — so the SFT model is good
but imperfect; it becomes the frozen reference policy pi_ref of the RL stage.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from ppo_torchrl.rlhf.task import Example, demonstration
from ppo_torchrl.rlhf.text import completion_ids, pad, prompt_ids

IGNORE = -100  # Hugging Face's label for "no loss here"


def sft_batches(tokenizer, examples: list[Example], wrong_share: float, rng: random.Random):
    """(input_ids, labels) rows: prompt + demonstrated completion + EOS; labels mask the prompt."""
    rows, labels = [], []
    for example in examples:
        prompt = prompt_ids(tokenizer, example)
        answer = completion_ids(tokenizer, demonstration(example, wrong_share, rng), stopped=True)
        rows.append(prompt + answer)
        labels.append([IGNORE] * len(prompt) + answer)
    return pad(rows, tokenizer.pad_token_id), pad(labels, IGNORE)


def train_sft(
    lm: nn.Module,
    tokenizer,
    examples: list[Example],
    *,
    wrong_share: float,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    log,
) -> dict[str, float]:
    rng = random.Random(seed)
    inputs, labels = sft_batches(tokenizer, examples, wrong_share, rng)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    lm.train()
    step, loss = 0, torch.tensor(float("nan"))
    for _epoch in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = inputs[idx]
            loss = lm(
                input_ids=x, attention_mask=(x != tokenizer.pad_token_id).long(), labels=labels[idx]
            ).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            optimizer.step()
            step += 1
            if step % 20 == 0:
                log({"sft_loss": float(loss.detach())}, step)
    if step % 20:  # the last step, when the every-20 log missed it
        log({"sft_loss": float(loss.detach())}, step)
    lm.eval()
    return {"sft_final_loss": float(loss.detach()), "sft_steps": step}
