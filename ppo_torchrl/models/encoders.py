"""What turns an observation into features: running normalisation, and a CNN for pixels.

`ObservationNorm` is the observation half of SB3's VecNormalize, kept inside the networks
rather than in the env: its statistics then travel with the weights, into checkpoints,
greedy evaluation, ``evaluate`` and any export, with nothing to apply by hand. The trainer
calls `update` after each PPO update with the batch just learned from, so the statistics
are frozen while a batch is collected and while it is learned from: the log-probabilities
stored at collection and those the loss recomputes see the same inputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ObservationNorm(nn.Module):
    """``clamp((x - mean) / sqrt(var + eps), -clip, clip)`` with running mean and variance
    over every observation seen (Chan et al.'s parallel update, float64 accumulators)."""

    def __init__(self, size: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(x.dtype), (self.var + self.eps).sqrt().to(x.dtype)
        return ((x - mean) / std).clamp(-self.clip, self.clip)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the statistics of ``x`` (any leading dims, features last) into the running ones."""
        x = x.reshape(-1, x.shape[-1]).to(torch.float64)
        n = x.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var.copy_(
            (self.var * self.count + batch_var * n + delta.square() * self.count * n / total) / total
        )
        self.count.copy_(total)


class NatureCNN(nn.Module):
    """The DQN Nature paper's encoder (Mnih et al., 2015), as CleanRL and SB3 use for pixels:
    uint8 pixels scaled to [0, 1], three conv layers, a 512-unit ReLU layer."""

    def __init__(self, shape: tuple[int, ...], features: int = 512, bf16: bool = False) -> None:
        super().__init__()
        self.bf16 = bf16
        self.image_dims = len(shape)
        if len(shape) == 2:
            shape = (*shape, 1)
        # Channels last (H, W, C) unless the last dim is clearly not a channel count.
        self.channels_last = shape[-1] <= 4 or shape[0] > 4
        c, h, w = (shape[2], shape[0], shape[1]) if self.channels_last else shape
        self.convs = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, c, h, w)).shape[-1]
        self.head = nn.Sequential(nn.Linear(n_flat, features), nn.ReLU())
        self.out_features = features
        # Orthogonal weights with gain sqrt(2) for ReLU layers, zero biases: CleanRL's layer_init.
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(layer.weight, gain=math.sqrt(2))
                nn.init.zeros_(layer.bias)
        self.convs.to(memory_format=torch.channels_last)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        lead = pixels.shape[: pixels.dim() - self.image_dims]
        # Under bf16 the convolutions would round float32 input to bfloat16 anyway: converting
        # the bytes straight to it halves the largest tensor of the pass.
        x = pixels.reshape(-1, *pixels.shape[len(lead) :]).to(torch.bfloat16 if self.bf16 else torch.float32)
        x = x / 255.0
        if x.dim() == 3:  # H x W, one channel
            x = x.unsqueeze(-1)
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        # bf16: the convolutions and the 512-unit layer in bfloat16 (float32 weights, cast
        # per op by autocast); the features leave as float32, so the heads' logits and
        # log-probabilities, whose differences are PPO's ratios, keep full precision.
        # Channels-last convolutions run a quarter faster in oneDNN (and on tensor cores).
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            features = self.head(self.convs(x))
        return features.float().reshape(*lead, self.out_features)
