"""Torch-native envs with a seed dimension: state [seeds, envs, ...], one random stream per seed.

The many-seeds trainer (run/seeds_trainer.py) steps these directly instead of through a
TorchRL ``EnvBase`` and collector: at 16 x 16 envs a CartPole step is ~20 µs of arithmetic,
and the TensorDict bookkeeping of ``EnvBase.step`` would cost several times that. The
physics are the very functions the single-seed torch-native envs step (cartpole.py,
acrobot.py), which the specs hold against gymnasium. Resets draw from the seeds' own
streams (core/streams.py, passed in), so seed k's episodes are the same alone or beside others.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ppo_torchrl.envs.acrobot import TorchAcrobot
from ppo_torchrl.envs.cartpole import TorchCartPole
from ppo_torchrl.envs.native import TorchNativeEnv


class RandomStreams(Protocol):
    """One random stream per seed (core/streams.py's `Streams`, given by the caller)."""

    def uniform(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor: ...
    def state(self) -> int: ...
    def load(self, drawn: int) -> None: ...


# The physics of each torch-native env, read off its class (native.py).
DYNAMICS: dict[str, type[TorchNativeEnv]] = {"CartPole-v1": TorchCartPole, "Acrobot-v1": TorchAcrobot}


class SeededEnv:
    """``num_envs`` copies of an env per seed, stepping together on ``device``."""

    def __init__(
        self,
        env_id: str,
        streams: RandomStreams,
        num_seeds: int,
        num_envs: int,
        device: torch.device | str | None = None,
    ) -> None:
        self.dynamics = DYNAMICS[env_id]
        self.shape = (num_seeds, num_envs)
        self.device = torch.device(device or "cpu")
        self.streams = streams  # start states: [seeds, num_envs, 4] per draw
        self.state = self._fresh()
        self.elapsed = torch.zeros(self.shape, dtype=torch.int64, device=self.device)

    def _fresh(self) -> torch.Tensor:
        u = self.streams.uniform(self.shape[1], self.dynamics.STATE_DIM, dtype=torch.float64)
        return self.dynamics.start_states(u)

    def observation(self) -> torch.Tensor:
        return self.dynamics.observe(self.state)

    def step(self, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Advance every env; episodes that end are reset (fresh states drawn every step, so
        each seed's stream advances the same whatever its episodes do). Returns the step's
        ``observation`` (the true final one where an episode ended), ``reward``,
        ``terminated``, ``truncated`` and ``done``, each [seeds, envs]."""
        state, terminated = self.dynamics.dynamics(self.state, action)
        self.elapsed = self.elapsed + 1
        truncated = (self.elapsed >= self.dynamics.MAX_EPISODE_STEPS) & ~terminated
        done = terminated | truncated
        out = {
            "observation": self.dynamics.observe(state),
            "reward": self.dynamics.reward(terminated),
            "terminated": terminated,
            "truncated": truncated,
            "done": done,
        }
        self.state = torch.where(done.unsqueeze(-1), self._fresh(), state)
        self.elapsed = torch.where(done, 0, self.elapsed)
        return out

    def snapshot(self) -> dict:
        return {"state": self.state.cpu(), "elapsed": self.elapsed.cpu(), "drawn": self.streams.state()}

    def restore(self, snapshot: dict) -> None:
        self.state = snapshot["state"].to(self.device, torch.float64)
        self.elapsed = snapshot["elapsed"].to(self.device, torch.int64)
        self.streams.load(snapshot["drawn"])
