"""Small gymnasium envs, one per space kind the real registry lacks, registered on import.

Each is a one-step-ahead matching task a policy can learn in a few thousand frames, so a
test can check learning, not only that a run ends: the observation says what to do, the
reward says how much of it the action did. Reach them as ``tests.toy_envs:<id>``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

LENGTH = 8  # steps per episode


class _Matching(gym.Env):
    """Draws a target each step; reward = the fraction of the target the action matched."""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.t = 0
        self.target = self._draw()
        return self._observe(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        reward = self._score(np.asarray(action))
        self.t += 1
        self.target = self._draw()
        return self._observe(), float(reward), False, self.t >= LENGTH, {}


class MatchMultiDiscrete(_Matching):
    """MultiDiscrete observation (the target) and MultiDiscrete action (copy it)."""

    nvec = np.array([3, 4, 2])

    def __init__(self) -> None:
        self.observation_space = gym.spaces.MultiDiscrete(self.nvec)
        self.action_space = gym.spaces.MultiDiscrete(self.nvec)

    def _draw(self) -> np.ndarray:
        return self.np_random.integers(0, self.nvec)

    def _observe(self) -> np.ndarray:
        return self.target.copy()

    def _score(self, action: np.ndarray) -> float:
        return float((action == self.target).mean())


class MatchBits(_Matching):
    """MultiBinary observation and MultiBinary action (copy the bits)."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.MultiBinary(5)
        self.action_space = gym.spaces.MultiBinary(5)

    def _draw(self) -> np.ndarray:
        return self.np_random.integers(0, 2, 5).astype(np.int8)

    def _observe(self) -> np.ndarray:
        return self.target.copy()

    def _score(self, action: np.ndarray) -> float:
        return float((action == self.target).mean())


class MatchDict(_Matching):
    """Dict observation (a float64 Box of noise and a Discrete flag); Discrete action = the flag."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict(
            {"noise": gym.spaces.Box(-1.0, 1.0, (2,), np.float64), "flag": gym.spaces.Discrete(3)}
        )
        self.action_space = gym.spaces.Discrete(3)

    def _draw(self) -> int:
        return int(self.np_random.integers(0, 3))

    def _observe(self) -> dict:
        return {"noise": self.np_random.uniform(-1, 1, 2), "flag": self.target}

    def _score(self, action: np.ndarray) -> float:
        return float(int(action) == self.target)


class MatchPixels(_Matching):
    """Image observation (uint8 36 x 36 x 3, one half lit); Discrete action = the lit half."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def _draw(self) -> int:
        return int(self.np_random.integers(0, 2))

    def _observe(self) -> np.ndarray:
        image = self.np_random.integers(0, 40, (36, 36, 3), dtype=np.uint8)
        image[:, 18 * self.target : 18 * (self.target + 1)] += 200
        return image

    def _score(self, action: np.ndarray) -> float:
        return float(int(action) == self.target)


class CrashingCartPole(gym.Wrapper):
    """CartPole whose simulator dies after ``CRASH_AFTER`` steps, as a remote simulator or a
    flaky physics engine does: a trial that fails mid-training, for real."""

    CRASH_AFTER = 100

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.steps += 1
        if self.steps > self.CRASH_AFTER:
            raise RuntimeError(f"simulator connection lost after {self.CRASH_AFTER} steps")
        return self.env.step(action)


TOYS = {
    "CrashingCartPole-v0": CrashingCartPole,
    "MatchMultiDiscrete-v0": MatchMultiDiscrete,
    "MatchBits-v0": MatchBits,
    "MatchDict-v0": MatchDict,
    "MatchPixels-v0": MatchPixels,
}
for _id, _cls in TOYS.items():
    if _id not in gym.registry:
        gym.register(_id, entry_point=_cls)
