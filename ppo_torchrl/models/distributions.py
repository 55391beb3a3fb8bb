"""The action distribution for vectors of discrete choices (MultiDiscrete, MultiBinary).

TorchRL's GymWrapper gives both as one bounded integer spec (``low`` .. ``high`` per entry;
MultiBinary is 0 .. 1). The policy treats each entry as its own Categorical over
``high - low + 1`` values, as CleanRL and SB3 treat MultiDiscrete: the log-probability and
the entropy of an action are sums over its entries. ``deterministic_sample`` (what
TorchRL's greedy exploration type asks for) is each entry's most likely value.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.distributions import Categorical, Distribution


class MultiCategorical(Distribution):
    """Independent Categoricals; ``logits`` is the concatenation of each entry's logits
    (``sum(sizes)`` wide); an action holds ``low + index`` per entry, in ``dtype``."""

    arg_constraints: ClassVar[dict] = {}

    def __init__(
        self, logits: torch.Tensor, sizes: tuple[int, ...], low: torch.Tensor, dtype: torch.dtype
    ) -> None:
        self.parts = [
            Categorical(logits=chunk, validate_args=False) for chunk in logits.split(list(sizes), -1)
        ]
        self.low, self.dtype = low.to(logits.device, torch.long), dtype
        super().__init__(batch_shape=logits.shape[:-1], event_shape=(len(sizes),), validate_args=False)

    def _action(self, index: torch.Tensor) -> torch.Tensor:
        return (index + self.low).to(self.dtype)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        return self._action(
            torch.stack([part.sample(torch.Size(sample_shape)) for part in self.parts], dim=-1)
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        index = value.long() - self.low
        return torch.stack([part.log_prob(index[..., i]) for i, part in enumerate(self.parts)], -1).sum(-1)

    def entropy(self) -> torch.Tensor:
        return torch.stack([part.entropy() for part in self.parts], -1).sum(-1)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self._action(torch.stack([part.logits.argmax(-1) for part in self.parts], dim=-1))

    @property
    def mode(self) -> torch.Tensor:
        return self.deterministic_sample
