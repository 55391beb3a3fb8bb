"""Training environments: gymnasium envs as batched TorchRL envs.

`make_env` returns a TorchRL ``EnvBase`` whose batch dimension is ``num_envs``, from one of
two backends:

- ``gymnasium``: TorchRL's ``GymWrapper`` over a gymnasium sync vector env of
  `make_gym_env` envs (any env id, its kwargs, observations encoded as gym_envs.py says).
  It steps on the CPU (gymnasium is NumPy); the collector moves data to the policy's device.
- ``envpool``: EnvPool's C++ threads for Atari and MuJoCo ids (envpool_env.py), with the
  same Atari preprocessing as the gymnasium path.
- ``torch``: a torch-native batched copy of the env (CartPole-v1 and Acrobot-v1, see
  cartpole.py and acrobot.py), checked against gymnasium's step for step by a spec; many
  times faster to step with many envs, and it runs on any torch device.

``auto`` (the default) takes ``torch`` where a native copy exists and no env kwargs change
it. Rewards are the env's own; the trainer reads episode returns off the batches and
scales (or normalises) rewards for learning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import torch
from torchrl.envs import EnvBase, GymWrapper

from ppo_torchrl.envs.acrobot import TorchAcrobot
from ppo_torchrl.envs.atari import INFO_KEYS, is_atari
from ppo_torchrl.envs.cartpole import TorchCartPole
from ppo_torchrl.envs.envpool_env import EnvPoolEnv, task_id
from ppo_torchrl.envs.gym_envs import check_env_kwargs, env_spec, make_gym_env
from ppo_torchrl.envs.native import TorchNativeEnv
from ppo_torchrl.fields import ConfigError

TORCH_NATIVE_ENVS = {"CartPole-v1": TorchCartPole, "Acrobot-v1": TorchAcrobot}
BACKENDS = ("auto", "gymnasium", "torch", "envpool")

# GymWrapper logs at INFO while it infers the specs of the vector env's info dict.
logging.getLogger("torchrl").setLevel(logging.WARNING)


def reward_threshold(env_id: str) -> float | None:
    """The mean return gymnasium's registration counts as solved (None where it sets none)."""
    return env_spec(env_id).reward_threshold


def backend_for(env_id: str, backend: str = "auto", env_kwargs: Mapping[str, Any] | None = None) -> str:
    """The training backend ``backend`` resolves to for ``env_id``; ConfigError if it cannot
    serve that env."""
    check_env_kwargs(env_id, env_kwargs)
    native = env_id in TORCH_NATIVE_ENVS and not env_kwargs
    if backend == "auto":
        return "torch" if native else "gymnasium"
    if backend == "envpool":
        task_id(env_id)  # installed, and serves this id
    if backend == "torch" and not native:
        names = ", ".join(TORCH_NATIVE_ENVS)
        raise ConfigError(
            f"env_backend: 'torch' exists only for {names} without env_kwargs (got env {env_id!r})"
        )
    return backend


def make_env(
    env_id: str,
    num_envs: int = 1,
    *,
    seed: int = 0,
    backend: str = "auto",
    device: torch.device | str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
) -> EnvBase:
    """A batched TorchRL env over ``num_envs`` copies of ``env_id`` made with ``env_kwargs``,
    seeded with ``seed``. A torch-native env lives on ``device`` (default CPU); a gymnasium
    one always on the CPU."""
    chosen = backend_for(env_id, backend, env_kwargs)
    if chosen == "torch":
        return TORCH_NATIVE_ENVS[env_id](num_envs, seed=seed, device=device)
    if chosen == "envpool":
        return EnvPoolEnv(env_id, num_envs, seed, env_kwargs)
    return _gymnasium_env(env_id, num_envs, seed, env_kwargs or {})


def snapshot_env(env: EnvBase) -> dict | None:
    """The env's full dynamic state, for a checkpoint; None where the backend cannot give it
    (gymnasium has no API to save and restore an arbitrary env mid-episode)."""
    return env.snapshot() if isinstance(env, TorchNativeEnv) else None


def restore_env(env: EnvBase, snapshot: dict | None) -> bool:
    """Arrange for the env's next full reset to return ``snapshot``; False if it cannot."""
    if snapshot is None or not isinstance(env, TorchNativeEnv):
        return False
    env.restore_on_reset(snapshot)
    return True


class OnlyInfo(gym.Wrapper):
    """Keeps only ``keys`` of the sub-env's info dict (none by default). GymWrapper turns
    info entries into keys with specs guessed from one dummy step; an entry whose type
    changes between reset and step (FrozenLake's ``prob``: int, then float) breaks
    collection. What is kept is what training reads: an Atari env's true game score
    (atari.py), which GymWrapper writes beside the reward as ``("next", "game_reward")`` and
    ``("next", "game_over")``. The vector env's own ``final_obs`` entry, which GymWrapper
    needs, is unaffected."""

    def __init__(self, env: gym.Env, keys: tuple[str, ...] = ()) -> None:
        super().__init__(env)
        self.keys = keys

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        observation, info = self.env.reset(**kwargs)
        return observation, {key: info[key] for key in self.keys}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, terminated, truncated, {key: info[key] for key in self.keys}


def _gymnasium_env(env_id: str, num_envs: int, seed: int, env_kwargs: Mapping[str, Any]) -> EnvBase:
    """GymWrapper over gymnasium's in-process sync vector env.

    In-process beats worker processes for small, fast envs on a 2-core machine.
    GymWrapper needs autoreset mode SAME_STEP so that ``("next", "observation")`` holds the
    true final observation at a time-limit truncation, which GAE bootstraps from.
    """
    make_gym_env(env_id, env_kwargs).close()  # fail with one line here, not inside the vector env
    keys = INFO_KEYS if is_atari(env_spec(env_id)) else ()
    vector_env = gym.vector.SyncVectorEnv(
        [lambda: OnlyInfo(make_gym_env(env_id, env_kwargs, training=True), keys)] * num_envs,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    env = GymWrapper(vector_env, categorical_action_encoding=True)
    env.set_seed(seed)
    return env
