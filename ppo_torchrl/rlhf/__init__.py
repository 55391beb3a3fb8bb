"""RLHF on a language model with the core's PPO modules: SFT, a reward model, then PPO or
GRPO, offline on a CPU. ``python -m ppo_torchrl.rlhf --help``."""

from ppo_torchrl.rlhf.config import RLHFConfig

__all__ = ["RLHFConfig"]
