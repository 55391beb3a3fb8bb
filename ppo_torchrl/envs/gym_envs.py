"""Gymnasium envs as the networks see them: made with the user's kwargs, observations encoded.

Training (through TorchRL's ``GymWrapper``) and evaluation (gymnasium directly) both build
their envs with `make_gym_env`, so the policy sees the same encoding in both:

- a float32 Box vector passes through;
- an image (a uint8 Box of H x W x C, C x H x W or H x W) stays uint8 for the CNN encoder;
- Box actions are clipped into their bounds before they reach the env;
- everything else becomes one float32 vector with gymnasium's own ``flatten``: Box of any
  dtype or shape cast and flattened, Discrete and MultiDiscrete one-hot, MultiBinary as
  0/1, Tuple and Dict each part encoded so and concatenated.

Env ids may name a module to import first, as ``gymnasium.make`` allows
(``my_package.envs:MyEnv-v0``): that is how a user's own registered env is reached.
What can go wrong while making an env (an unknown or deprecated id, a missing optional
dependency, kwargs the env does not take) becomes a one-line ``ConfigError``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from ppo_torchrl.envs.atari import FRAME_SKIP, is_atari, wrap_atari
from ppo_torchrl.fields import ConfigError

# Where a family of envs lives -> the project extra that installs its dependency.
EXTRAS = {
    "gymnasium.envs.mujoco": "mujoco",
    "gymnasium.envs.box2d": "box2d",
    "ale_py": "atari",
    "shimmy": "atari",
}


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The gymnasium registration of ``env_id`` (importing ``module:`` first where named);
    ConfigError with gymnasium's own suggestion when unknown or deprecated."""
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"env: cannot import module {module!r} named in {env_id!r} ({err})") from None
    if name.startswith("ALE/") and name not in gym.registry:
        try:
            import ale_py  # registers the ALE/ ids (gymnasium 1.x no longer does it by itself)
        except ImportError:
            raise ConfigError(
                f"env: {name} needs ale-py, which is not installed; install it with: "
                "pip install -e '.[atari]'"
            ) from None
        gym.register_envs(ale_py)
    try:
        return gym.spec(name)
    except gym.error.DeprecatedEnv as err:
        raise ConfigError(f"env: {err}") from None
    except gym.error.Error as err:
        raise ConfigError(
            f"env: unknown gymnasium environment id {env_id!r}: {err} "
            "(gymnasium.pprint_registry() lists the registered ids)"
        ) from None


def extra_for(env_id: str) -> str | None:
    """The project extra that installs what ``env_id`` needs, where one is known."""
    entry = env_spec(env_id).entry_point
    entry = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    return next((extra for prefix, extra in EXTRAS.items() if entry.startswith(prefix)), None)


def make_gym_env(
    env_id: str, env_kwargs: Mapping[str, Any] | None = None, *, training: bool = False, **make_kwargs: Any
) -> gym.Env:
    """``gymnasium.make(env_id, **env_kwargs)`` with the observation encoding above; an Atari
    id gets the DeepMind preprocessing (atari.py), its learning-only parts when ``training``."""
    spec = env_spec(env_id)
    atari = is_atari(spec)
    if extra_for(env_id) == "mujoco":
        _quiet_mujoco_deprecations()
    check_env_kwargs(env_id, env_kwargs)
    kwargs = {"frameskip": 1, **(env_kwargs or {})} if atari else dict(env_kwargs or {})
    try:
        # The passive checker wraps every step of every env; gymnasium's full check is
        # gymnasium.utils.env_checker.check_env, for whoever writes an env.
        env = gym.make(spec, **kwargs, disable_env_checker=True, **make_kwargs)
    except gym.error.DependencyNotInstalled as err:
        extra = extra_for(env_id)
        hint = f"install it with: pip install -e '.[{extra}]'" if extra else "install the package it names"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"env: {env_id} needs a dependency that is not installed ({first}); {hint}"
        ) from None
    except TypeError as err:
        if env_kwargs:
            raise ConfigError(f"env_kwargs: {env_id} does not take {dict(env_kwargs)!r} ({err})") from None
        raise
    if atari:
        env = wrap_atari(env, training)
    if isinstance(env.action_space, gym.spaces.Box):
        env = ClipToBounds(env)
    return encode_observations(env)


def check_env_kwargs(env_id: str, env_kwargs: Mapping[str, Any] | None) -> None:
    """Refuse the kwargs the wrappers here set themselves (Atari's frame skip)."""
    if is_atari(env_spec(env_id)) and "frameskip" in (env_kwargs or {}):
        raise ConfigError(
            f"env_kwargs: {env_id} takes no frameskip here: the Atari preprocessing skips {FRAME_SKIP} "
            "frames with max-pooling on an env made with frameskip=1"
        )


class ClipToBounds(gym.ActionWrapper):
    """Clips a Box action into the space's bounds and, unlike gymnasium's ClipAction, keeps
    the bounds on the space: a Normal policy's samples (stored unclipped for the loss, as
    CleanRL and SB3 do) reach the env inside them; a TanhNormal's already are."""

    def action(self, action: Any) -> np.ndarray:
        return np.clip(action, self.action_space.low, self.action_space.high)


def _quiet_mujoco_deprecations() -> None:
    """MuJoCo 4 prints a deprecation warning for HalfCheetah's XML at every env made (17 a
    run); those go, every other MuJoCo warning (e.g. an unstable simulation) still shows."""
    try:
        import mujoco
    except ImportError:
        return  # gymnasium.make reports the missing extra

    def warn(message: str) -> None:
        if "deprecated" not in message:
            print(f"MuJoCo warning: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(warn)


def is_image(space: gym.Space) -> bool:
    """A uint8 Box of 2 or 3 dimensions: pixels, for the CNN encoder."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3)


def needs_encoding(space: gym.Space) -> bool:
    """False for what the networks take as it is: a float32 vector or an image."""
    flat_float = isinstance(space, gym.spaces.Box) and space.dtype == np.float32 and len(space.shape) == 1
    return not (flat_float or is_image(space))


def encode_observations(env: gym.Env) -> gym.Env:
    space = env.observation_space
    if not needs_encoding(space):
        return env
    if not isinstance(
        space,
        (
            gym.spaces.Box,
            gym.spaces.Discrete,
            gym.spaces.MultiDiscrete,
            gym.spaces.MultiBinary,
            gym.spaces.Tuple,
            gym.spaces.Dict,
        ),
    ):
        raise ConfigError(
            f"env: observation space {space} is not supported (Box, Discrete, MultiDiscrete, "
            "MultiBinary, Tuple and Dict are)"
        )
    return FloatVectorObservation(env)


class FloatVectorObservation(gym.ObservationWrapper):
    """Any supported observation as one float32 vector, by ``gymnasium.spaces.flatten``."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        flat = gym.spaces.flatten_space(env.observation_space)
        self.observation_space = gym.spaces.Box(
            low=np.asarray(flat.low, dtype=np.float32),
            high=np.asarray(flat.high, dtype=np.float32),
            dtype=np.float32,
        )

    def observation(self, observation: Any) -> np.ndarray:
        return gym.spaces.flatten(self.env.observation_space, observation).astype(np.float32)
