"""ppo_torchrl: Proximal Policy Optimization built from TorchRL's TensorDict modules.

    from ppo_torchrl import PPOConfig, train
    result = train(PPOConfig(env="CartPole-v1", seed=0))

The layout is the architecture, imports pointing one way, down (docs/architecture.md):

    train.py evaluate.py export.py track.py   entry points (python -m ppo_torchrl.<name>)
    sweep/  rlhf/                             many runs as one experiment; token-level RLHF
    cli/                                      the command lines
    run/                                      one training run: trainer, evaluation, checkpoints
    tracking/                                 MLflow, off the training loop's critical path
    core/  envs/  models/                     PPO core (RLHF reuses it), env adapters, networks
    fields.py  device.py  lazy.py             parameter dataclasses, the device setting, lazy names

Names are imported on first use, so that ``python -m ppo_torchrl.train --help`` and
bad-input errors answer without first loading torch and TorchRL.
"""

from __future__ import annotations

from ppo_torchrl.lazy import lazy_exports

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
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
