"""ppo_torchrl: Proximal Policy Optimization built from TorchRL's TensorDict modules.

    from ppo_torchrl import PPOConfig, train
    result = train(PPOConfig(env="CartPole-v1", seed=0))

Names are imported on first use, so that ``python -m ppo_torchrl.train --help`` and
bad-input errors answer without first loading torch and TorchRL.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConfigError": "config",
    "PPOConfig": "config",
    "make_env": "envs",
    "make_actor_critic": "models",
    "make_advantage": "objectives",
    "make_loss": "objectives",
    "PPOUpdate": "update",
    "make_optimizer": "update",
    "make_update": "update",
    "EvalResult": "evaluate",
    "evaluate_policy": "evaluate",
    "TrainResult": "trainer",
    "train": "trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ppo_torchrl' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ppo_torchrl.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
