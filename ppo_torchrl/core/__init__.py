"""The PPO core: GAE advantages, the clipped loss and the update loop, each built by a
factory from a small parameter object. It is what token-level RLHF reuses unchanged, and
it imports nothing from the rest of the package but `ppo_torchrl.fields`.

    from ppo_torchrl.core import GAEParams, LossParams, UpdateParams
    from ppo_torchrl.core import make_advantage, make_loss, make_update

Names are imported on first use: the parameter objects load no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GAEParams": "params",
    "LossParams": "params",
    "UpdateParams": "params",
    "make_advantage": "advantage",
    "make_loss": "loss",
    "NonFiniteError": "update",
    "PPOUpdate": "update",
    "make_optimizer": "update",
    "make_update": "update",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ppo_torchrl.core' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ppo_torchrl.core.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
