"""The greedy policy as a plain module: an observation tensor in, an action tensor out.

What evaluation plays (``ExplorationType.DETERMINISTIC``: argmax for discrete actions, the
squashed mean or the mean for continuous ones), with the observation normalisation the actor
carries, and no TensorDict at its edges, so that code outside this package can call it and
``torch.export`` / ONNX can trace it (tried on Discrete, MultiDiscrete and Box actions, both
continuous heads). Box actions are clamped to the bounds given, as the training and
evaluation envs clip them (a no-op for the TanhNormal head, which is inside them already).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type


class GreedyPolicy(nn.Module):
    def __init__(
        self, actor: TensorDictModuleBase, low: torch.Tensor | None = None, high: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.actor = actor
        self.bounded = low is not None and high is not None
        self.register_buffer("low", torch.as_tensor(low if low is not None else 0.0, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high if high is not None else 0.0, dtype=torch.float32))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            action = self.actor(TensorDict({"observation": observation}, observation.shape[:1]))["action"]
        if self.bounded:
            action = torch.clamp(action, self.low, self.high)
        return action
