"""The supervised loop shared by SFT and the reward model: shuffled minibatches, AdamW,
gradient-norm clip 1.0, the loss logged every 20 steps and at the last."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LOG_EVERY = 20


def fit(
    model: nn.Module,
    n_rows: int,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    name: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    log: Callable[[dict[str, float], int], None],
) -> dict[str, float]:
    """Train ``model`` on ``loss_of(row indices)``, logging ``<name>_loss``; returns the stage's
    ``<name>_final_loss`` and ``<name>_steps``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    model.train()
    step, loss = 0, torch.tensor(float("nan"))
    for _epoch in range(epochs):
        order = torch.randperm(n_rows, generator=generator)  # on the CPU: the same on any device
        for idx in order.split(batch_size):
            loss = loss_of(idx.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            if step % LOG_EVERY == 0:
                log({f"{name}_loss": float(loss.detach())}, step)
    if step % LOG_EVERY:  # the last step, when the periodic log missed it
        log({f"{name}_loss": float(loss.detach())}, step)
    model.eval()
    return {f"{name}_final_loss": float(loss.detach()), f"{name}_steps": step}
