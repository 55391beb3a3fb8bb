"""Atari and MuJoCo ids stepped by EnvPool's C++ threads (``--env-backend envpool``).

EnvPool (Weng et al., 2022) steps a whole batch of envs in native threads, with the Atari
preprocessing built in; CleanRL's ``ppo_atari_envpool.py`` and LeanRL are built on it.
TorchRL's own wrapper (``MultiThreadedEnv``) does not serve here: it reads no ``info``, so
an Atari game's true score is lost behind the clipped reward, and it lets EnvPool's
next-step autoreset through as a transition that never happened (the final frame, an
action EnvPool ignores, the first frame of the next episode). `EnvPoolEnv` is a small
``EnvBase`` instead:

- a step is one ``step`` of the whole pool; the observation after a ``done`` is the true
  final one (what GAE bootstraps from at a time limit);
- TorchRL's partial reset of the done envs is EnvPool's autoreset, done at once: one step of
  just those envs, whose action EnvPool ignores. After a lost life (episodic life) that
  continues the game, as gymnasium's path does; a full ``reset()`` would restart it.

Atari is configured as envs/atari.py configures gymnasium's path: no-op reset up to 30,
frame skip 4 with max-pooling, 84 x 84 grayscale (OpenCV's area resize), a 4-frame stack,
FIRE at each life's start, episodic life and sign-clipped rewards for training, the sticky
actions the gymnasium id defines (v5: 0.25), and the 108,000-frame game limit. The true
score comes from EnvPool's ``info`` (``reward`` unclipped, ``terminated`` at the game's end)
as ``game_reward`` and ``game_over``. One difference remains: EnvPool keeps the frame stack
across a lost life, where gymnasium's path starts a new stack.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from ppo_torchrl.envs import atari
from ppo_torchrl.envs.gym_envs import env_spec, extra_for
from ppo_torchrl.fields import ConfigError

INSTALL = "install it with: pip install -e '.[envpool]'"


@functools.cache
def task_id(env_id: str) -> str:
    """EnvPool's name for a gymnasium id (``ALE/Pong-v5`` -> ``Pong-v5``); ConfigError when
    EnvPool is missing or has no such task."""
    try:
        import envpool
    except ImportError:
        raise ConfigError(f"env_backend: envpool is not installed; {INSTALL}") from None
    family = extra_for(env_id)
    task = env_id.rpartition(":")[2].removeprefix("ALE/")
    if family not in ("atari", "mujoco") or task not in envpool.list_all_envs():
        raise ConfigError(
            f"env_backend: envpool serves Atari and MuJoCo ids (ALE/Pong-v5, HalfCheetah-v5, ...); "
            f"it has no {env_id!r}"
        )
    return task


def pool_kwargs(env_id: str, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """EnvPool's settings for ``env_id``: for Atari, gymnasium's path's preprocessing."""
    spec = env_spec(env_id)
    if not atari.is_atari(spec):
        return dict(env_kwargs)
    frames = spec.kwargs.get("max_num_frames_per_episode") or 108_000
    return {
        "noop_max": atari.NOOP_MAX,
        "frame_skip": atari.FRAME_SKIP,
        "img_height": atari.SCREEN_SIZE,
        "img_width": atari.SCREEN_SIZE,
        "stack_num": atari.FRAME_STACK,
        "gray_scale": True,
        "use_inter_area_resize": True,
        "episodic_life": True,
        "reward_clip": True,
        "use_fire_reset": True,
        "repeat_action_probability": spec.kwargs.get("repeat_action_probability", 0.25),
        "full_action_space": spec.kwargs.get("full_action_space", False),
        "max_episode_steps": frames // atari.FRAME_SKIP,
        **env_kwargs,
    }


class EnvPoolEnv(EnvBase):
    """``num_envs`` copies of ``env_id`` in one EnvPool, as a batched TorchRL env."""

    def __init__(
        self, env_id: str, num_envs: int, seed: int = 0, env_kwargs: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(batch_size=torch.Size([num_envs]))
        self.task, self.num_envs = task_id(env_id), num_envs
        self.kwargs = pool_kwargs(env_id, env_kwargs or {})
        self.scored = atari.is_atari(env_spec(env_id))
        self.pool = self._make_pool(seed)
        self.last_observation: torch.Tensor | None = None
        self._make_specs()

    def _make_pool(self, seed: int) -> Any:
        import envpool

        try:
            return envpool.make(
                self.task, env_type="gymnasium", num_envs=self.num_envs, seed=seed, **self.kwargs
            )
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(f"env_kwargs: envpool's {self.task} refused {self.kwargs} ({err})") from None

    def _make_specs(self) -> None:
        n, obs_space, act_space = self.num_envs, self.pool.observation_space, self.pool.action_space
        if obs_space.dtype == np.uint8:
            observation = Bounded(0, 255, (n, *obs_space.shape), dtype=torch.uint8)
        else:  # MuJoCo's float64 vectors as the networks take them (gym_envs.py does the same)
            observation = Unbounded((n, *obs_space.shape), dtype=torch.float32)
        entries = {"observation": observation}
        if self.scored:
            entries |= {
                "game_reward": Unbounded((n,), dtype=torch.float64),
                "game_over": Categorical(2, (n,), dtype=torch.bool),
            }
        self.observation_spec = Composite(entries, shape=(n,))
        if hasattr(act_space, "n"):
            self.action_spec = Categorical(int(act_space.n), (n,), dtype=torch.int64)
        else:
            low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (act_space.low, act_space.high))
            self.action_spec = Bounded(low.expand(n, -1), high.expand(n, -1), (n, *act_space.shape))
        self.reward_spec = Unbounded((n, 1), dtype=torch.float32)
        flag = Categorical(2, (n, 1), dtype=torch.bool)
        self.done_spec = Composite(done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=(n,))

    def _observation(self, obs: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(obs))
        return tensor if tensor.dtype == torch.uint8 else tensor.float()

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict["action"].cpu().numpy()
        if not self.scored:  # a Normal policy's samples reach the env inside the bounds
            action = np.clip(action, self.pool.action_space.low, self.pool.action_space.high)
        obs, reward, terminated, truncated, info = self.pool.step(action)
        order = np.argsort(info["env_id"])  # the pool answers in env order; make sure
        terminated, truncated = terminated[order], truncated[order]
        self.last_observation = self._observation(obs[order])
        out = {
            "observation": self.last_observation,
            "reward": torch.as_tensor(reward[order], dtype=torch.float32).unsqueeze(-1),
            "done": torch.as_tensor(terminated | truncated).unsqueeze(-1),
            "terminated": torch.as_tensor(terminated).unsqueeze(-1),
            "truncated": torch.as_tensor(truncated).unsqueeze(-1),
        }
        if self.scored:
            out["game_reward"] = torch.as_tensor(info["reward"][order], dtype=torch.float64)
            out["game_over"] = torch.as_tensor((info["terminated"][order] != 0) | truncated)
        return TensorDict(out, batch_size=self.batch_size)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        if mask is None or self.last_observation is None or bool(mask.all()):
            obs, info = self.pool.reset()
            observation = self._observation(obs[np.argsort(info["env_id"])])
        else:  # TorchRL passes only the mask: the other envs keep their last observation
            ids = mask.reshape(-1).nonzero().reshape(-1).numpy().astype(np.int32)
            observation = self.last_observation.clone()
            noop = np.zeros((len(ids), *self.pool.action_space.shape), self.pool.action_space.dtype)
            obs, *_, info = self.pool.step(noop, ids)  # EnvPool's autoreset of those envs
            observation[torch.as_tensor(info["env_id"], dtype=torch.long)] = self._observation(obs)
        self.last_observation = observation
        out = {"observation": observation}
        if self.scored:
            out |= {"game_reward": torch.zeros(self.num_envs, dtype=torch.float64)}
            out |= {"game_over": torch.zeros(self.num_envs, dtype=torch.bool)}
        return TensorDict(out, batch_size=self.batch_size)

    def _set_seed(self, seed: int | None) -> None:
        """EnvPool takes its seed when made (env i gets ``seed + i``): make it again."""
        self.pool.close()
        self.pool, self.last_observation = self._make_pool(seed or 0), None
