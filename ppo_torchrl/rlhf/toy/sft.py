"""Stage 1, supervised fine-tuning: next-token cross-entropy on (noisy) demonstrations.

Only completion tokens are learned (the prompt is context). A stated share of the
demonstrations are wrong — the prompt's digits copied unsorted — so the SFT model is good
but imperfect; it becomes the frozen reference policy pi_ref of the RL stage.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from ppo_torchrl.rlhf.toy.fit import fit
from ppo_torchrl.rlhf.toy.lm import attention_mask
from ppo_torchrl.rlhf.toy.task import Example, demonstration
from ppo_torchrl.rlhf.toy.text import completion_ids, lengths, pad, prompt_ids

IGNORE = -100  # Hugging Face's label for "no loss here"


def sft_batches(tokenizer, examples: list[Example], wrong_share: float, rng: random.Random):
    """(input_ids, lengths, labels): prompt + demonstrated completion + EOS, right-padded;
    the labels ignore the prompt and the padding, and keep the EOS (the model learns to stop)."""
    rows, labels = [], []
    for example in examples:
        prompt = prompt_ids(tokenizer, example)
        answer = completion_ids(tokenizer, demonstration(example, wrong_share, rng), stopped=True)
        rows.append(prompt + answer)
        labels.append([IGNORE] * len(prompt) + answer)
    return pad(rows, tokenizer.pad_token_id), lengths(rows), pad(labels, IGNORE)


def sft_loss(
    lm: nn.Module, inputs: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled tokens; attention from the row lengths."""
    return lm(input_ids=inputs, attention_mask=attention_mask(lengths, inputs.shape[-1]), labels=labels).loss


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
    device = next(lm.parameters()).device
    inputs, sizes, labels = (t.to(device) for t in sft_batches(tokenizer, examples, wrong_share, rng))

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return sft_loss(lm, inputs[idx], sizes[idx], labels[idx])

    return fit(lm, len(inputs), loss_of, "sft", epochs, batch_size, lr, seed, log)
