"""Reward normalisation: the reward half of SB3's VecNormalize, on collected batches.

Each env keeps a running discounted return ``R <- gamma * R + r`` (reset where an episode
ends); rewards are divided by the running standard deviation of those returns, so the
critic's targets keep a steady scale whatever the env's reward units. The statistics are
updated with a whole batch before it is scaled, and they live in checkpoints so that a
resumed run continues exactly. Episode returns reported to the user stay the env's own.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase


class RewardNormalizer:
    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8) -> None:
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.returns = torch.zeros(num_envs, dtype=torch.float64)
        self.count = 0.0
        self.mean = 0.0
        self.var = 1.0

    def __call__(self, batch: TensorDictBase) -> None:
        """Scale ``batch["next", "reward"]`` ([num_envs, steps, 1]) in place of the key."""
        reward = batch["next", "reward"]
        done = batch["next", "done"].reshape(reward.shape[:2])
        r = reward.reshape(reward.shape[:2]).detach().to("cpu", torch.float64)
        finished = done.to("cpu")
        discounted = torch.empty_like(r)
        running = self.returns
        for t in range(r.shape[1]):  # short loop over time; every env at once
            running = running * self.gamma + r[:, t]
            discounted[:, t] = running
            running = torch.where(finished[:, t], 0.0, running)
        self.returns = running
        self._merge(discounted.reshape(-1))
        std = (self.var + self.eps) ** 0.5
        batch["next", "reward"] = (reward / std).clamp(-self.clip, self.clip)

    def _merge(self, x: torch.Tensor) -> None:
        n = x.numel()
        batch_mean, batch_var = float(x.mean()), float(x.var(unbiased=False))
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"returns": self.returns.clone(), "count": self.count, "mean": self.mean, "var": self.var}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns = state["returns"].to(torch.float64).clone()
        self.count, self.mean, self.var = float(state["count"]), float(state["mean"]), float(state["var"])
