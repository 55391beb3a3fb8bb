"""ppo_torchrl: Proximal Policy Optimization built from TorchRL's TensorDict modules.

from ppo_torchrl import PPOConfig, train
result = train(PPOConfig(env="CartPole-v1", seed=0))
"""

from ppo_torchrl.config import ConfigError, PPOConfig
from ppo_torchrl.envs import make_env
from ppo_torchrl.evaluate import EvalResult, evaluate_policy
from ppo_torchrl.models import make_actor_critic
from ppo_torchrl.objectives import make_advantage, make_loss
from ppo_torchrl.trainer import TrainResult, train
from ppo_torchrl.update import PPOUpdate, make_optimizer

__all__ = [
    "ConfigError",
    "EvalResult",
    "PPOConfig",
    "PPOUpdate",
    "TrainResult",
    "evaluate_policy",
    "make_actor_critic",
    "make_advantage",
    "make_env",
    "make_loss",
    "make_optimizer",
    "train",
]
