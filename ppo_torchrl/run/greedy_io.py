"""A run's greedy policy as code outside this package meets it, and real observations for it.

The export, the MLflow model and the videos all play `GreedyPolicy` (models/greedy.py):
observations encoded as `make_gym_env` gives them in, actions as gymnasium takes them out.
Checks and input examples use real observations from the env under random actions, not
random tensors: a policy with observation normalisation, or one that only ever saw a
narrow band of states, is tested where it will be used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase

from ppo_torchrl.envs.gym_envs import make_gym_env
from ppo_torchrl.models.greedy import GreedyPolicy


def greedy_policy(actor: TensorDictModuleBase, env_id: str, env_kwargs: Mapping[str, Any]) -> GreedyPolicy:
    """The actor's greedy policy on the CPU, with Box actions clamped to the env's bounds."""
    env = make_gym_env(env_id, env_kwargs)
    try:
        space = env.action_space
    finally:
        env.close()
    bounds = {}
    if isinstance(space, gym.spaces.Box):
        bounds = {"low": torch.as_tensor(space.low), "high": torch.as_tensor(space.high)}
    return GreedyPolicy(actor, **bounds).eval()


def sample_observations(env_id: str, env_kwargs: Mapping[str, Any], samples: int, seed: int) -> torch.Tensor:
    """``samples`` observations from the env under uniformly random actions, stacked."""
    env = make_gym_env(env_id, env_kwargs)
    try:
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        rows = []
        for _ in range(samples):
            rows.append(np.asarray(obs))
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset()
    finally:
        env.close()
    return torch.as_tensor(np.stack(rows))


def numpy_policy(policy: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """``policy`` as gymnasium-side code calls one: a batch of observations in, actions out."""

    device = next(policy.parameters()).device

    @torch.no_grad()
    def act(observations: np.ndarray) -> np.ndarray:
        return policy(torch.as_tensor(np.asarray(observations), device=device)).cpu().numpy()

    return act
