"""Training environments: gymnasium envs as batched TorchRL envs.

`make_env` returns a TorchRL ``EnvBase`` whose batch dimension is ``cfg.num_envs``, from
one of two backends:

- ``gymnasium``: TorchRL's ``GymWrapper`` over a gymnasium sync vector env; any env id.
- ``torch``: a torch-native batched copy of the env (CartPole-v1 only, see cartpole.py),
  proven step-for-step equal to gymnasium's by a spec; many times faster to step.

``auto`` (the default) takes ``torch`` where a native copy exists. Rewards are the env's
own; the trainer reads episode returns off the batches and scales rewards for learning.
"""

from __future__ import annotations

import logging

import gymnasium as gym
from torchrl.envs import EnvBase, GymWrapper

from ppo_torchrl.cartpole import TorchCartPole
from ppo_torchrl.config import ConfigError, PPOConfig

TORCH_NATIVE_ENVS = {"CartPole-v1": TorchCartPole}

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


def backend_for(cfg: PPOConfig) -> str:
    """The training backend ``cfg`` resolves to; ConfigError if it cannot serve ``cfg.env``."""
    env_spec(cfg.env)
    if cfg.env_backend == "auto":
        return "torch" if cfg.env in TORCH_NATIVE_ENVS else "gymnasium"
    if cfg.env_backend == "torch" and cfg.env not in TORCH_NATIVE_ENVS:
        native = ", ".join(TORCH_NATIVE_ENVS)
        raise ConfigError(f"env_backend: 'torch' exists only for {native} (got env {cfg.env!r})")
    return cfg.env_backend


def solved_threshold(cfg: PPOConfig) -> float | None:
    """The mean greedy return that counts as solved: the config's, else the env's own."""
    if cfg.solved_threshold is not None:
        return cfg.solved_threshold
    return env_spec(cfg.env).reward_threshold


def make_env(cfg: PPOConfig, num_envs: int | None = None) -> EnvBase:
    """A batched TorchRL env over ``num_envs`` (default ``cfg.num_envs``) copies of ``cfg.env``."""
    num_envs = num_envs or cfg.num_envs
    if backend_for(cfg) == "torch":
        return TORCH_NATIVE_ENVS[cfg.env](num_envs, seed=cfg.seed)
    return _gymnasium_env(cfg, num_envs)


def snapshot_env(env: EnvBase) -> dict | None:
    """The env's full dynamic state, for a checkpoint; None where the backend cannot give it
    (gymnasium has no API to save and restore an arbitrary env mid-episode)."""
    return env.snapshot() if isinstance(env, TorchCartPole) else None


def restore_env(env: EnvBase, snapshot: dict | None) -> bool:
    """Arrange for the env's next full reset to return ``snapshot``; False if it cannot."""
    if snapshot is None or not isinstance(env, TorchCartPole):
        return False
    env.restore_on_reset(snapshot)
    return True


def _gymnasium_env(cfg: PPOConfig, num_envs: int) -> EnvBase:
    """GymWrapper over gymnasium's in-process sync vector env.

    In-process beats worker processes for small, fast envs on a 2-core machine.
    GymWrapper needs autoreset mode SAME_STEP so that ``("next", "observation")`` holds the
    true final observation at a time-limit truncation, which GAE bootstraps from.
    """
    vector_env = gym.make_vec(
        cfg.env,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    env = GymWrapper(vector_env, categorical_action_encoding=True)
    env.set_seed(cfg.seed)
    return env
