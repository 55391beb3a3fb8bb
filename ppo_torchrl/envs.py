"""Training environments: gymnasium envs wrapped as batched TorchRL envs.

`make_env` returns a TorchRL ``EnvBase`` whose batch dimension is ``cfg.num_envs``.
Episode returns are accumulated by TorchRL's ``RewardSum`` transform into
``episode_reward`` so the trainer can report them without knowing the env.
"""

from __future__ import annotations

import logging

import gymnasium as gym
from torchrl.envs import EnvBase, GymWrapper, RewardScaling, RewardSum

from ppo_torchrl.config import ConfigError, PPOConfig

# GymWrapper logs at INFO while it infers the specs of the vector env's info dict.
logging.getLogger("torchrl").setLevel(logging.WARNING)


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The gymnasium registration of ``env_id``; ConfigError naming it when unknown."""
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        raise ConfigError(
            f"env: unknown gymnasium environment id {env_id!r} "
            "(see gymnasium.pprint_registry() for the registered ids)"
        ) from None


def solved_threshold(cfg: PPOConfig) -> float | None:
    """The mean greedy return that counts as solved: the config's, else the env's own."""
    if cfg.solved_threshold is not None:
        return cfg.solved_threshold
    return env_spec(cfg.env).reward_threshold


def make_env(cfg: PPOConfig, num_envs: int | None = None) -> EnvBase:
    """A batched TorchRL env over ``num_envs`` (default ``cfg.num_envs``) copies of ``cfg.env``.

    Uses gymnasium's in-process sync vector env: for small, fast envs this beats worker
    processes on a 2-core machine. GymWrapper needs autoreset mode SAME_STEP so that
    ``("next", "observation")`` holds the true final observation at a time-limit
    truncation, which GAE bootstraps from.
    """
    env_spec(cfg.env)
    vector_env = gym.make_vec(
        cfg.env,
        num_envs=num_envs or cfg.num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    # GymWrapper over a vector env is already a TransformedEnv; extend its transforms.
    env = GymWrapper(vector_env, categorical_action_encoding=True)
    env = env.append_transform(RewardSum(in_keys=["reward"], out_keys=["episode_reward"]))
    if cfg.reward_scale != 1.0:
        # Appended after RewardSum so that episode_reward stays in the env's own units.
        env.append_transform(RewardScaling(loc=0.0, scale=cfg.reward_scale))
    env.set_seed(cfg.seed)
    return env
