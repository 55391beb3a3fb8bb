"""RLHF on a language model with the core's PPO modules (``python -m ppo_torchrl.rlhf --help``).

toy/        the miniature three-stage pipeline: SFT -> reward model -> PPO or GRPO
real/       a real LM (SmolLM2-135M) with a rule reward, LoRA
tokens.py   what both feed the core: token-step TensorDicts, KL estimators, reward
            shaping, GRPO group advantages, the k3 KL loss term
common.py   what both do around it: tracked runs, the summary, the curves plot
config.py   RLHFConfig: every knob of both
"""

from ppo_torchrl.rlhf.config import RLHFConfig

__all__ = ["RLHFConfig"]
