"""ppo_torchrl: Proximal Policy Optimization built from TorchRL's TensorDict modules.

    from ppo_torchrl import PPOConfig, train
    result = train(PPOConfig(env="CartPole-v1", seed=0))

The layout is the architecture, imports pointing one way, down:

    train.py, evaluate.py, cli.py, rlhf/__main__.py   entry points
    rlhf/                                             token-level RLHF on the core
    run/                                              trainer, evaluation, checkpoints, tracking, progress
    core/  envs/  models/                             PPO core (RLHF reuses it), env adapters, networks
    fields.py                                         validated parameter dataclasses

Names are imported on first use, so that ``python -m ppo_torchrl.train --help`` and
bad-input errors answer without first loading torch and TorchRL.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConfigError": "fields",
    "PPOConfig": "run.config",
    "GAEParams": "core.params",
    "LossParams": "core.params",
    "UpdateParams": "core.params",
    "make_advantage": "core.advantage",
    "make_loss": "core.loss",
    "PPOUpdate": "core.update",
    "make_optimizer": "core.update",
    "make_update": "core.update",
    "make_env": "envs.factory",
    "make_actor_critic": "models.actor_critic",
    "EvalResult": "run.evaluation",
    "evaluate_policy": "run.evaluation",
    "TrainResult": "run.results",
    "Trainer": "run.trainer",
    "train": "run.trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ppo_torchrl' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ppo_torchrl.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
