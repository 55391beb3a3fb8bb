"""Stage 1, supervised fine-tuning: next-token cross-entropy on (noisy) demonstrations.

Only completion tokens are learned (the prompt is context). A stated share of the
demonstrations are wrong — the prompt's digits copied unsorted — so the SFT model is good
but imperfect; it becomes the frozen reference policy pi_ref of the RL stage.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from ppo_torchrl.rlhf.fit import fit
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
    pad_id = tokenizer.pad_token_id

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        x = inputs[idx]
        return lm(input_ids=x, attention_mask=(x != pad_id).long(), labels=labels[idx]).loss

    loss, steps = fit(
        lm,
        len(inputs),
        loss_of,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        log=log,
        name="sft_loss",
    )
    return {"sft_final_loss": loss, "sft_steps": steps}
