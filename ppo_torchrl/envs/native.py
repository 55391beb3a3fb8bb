"""What every torch-native env shares: a TorchRL ``EnvBase`` over pure physics functions.

A subclass (cartpole.py, acrobot.py) names its physics and sizes as class attributes:
``dynamics(state, action) -> (next_state, terminated)``, ``observe(state)``,
``reward(terminated)``, the float64 state's size, the number of actions, the observation
bounds, the start-state bound and the time limit. This class turns them into a batched env
with GymWrapper's keys, seeding and snapshots for exact resume; the many-seeds program
(run/seeds_program.py) steps the same functions over [seeds, envs], so each env's physics
are written once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase


class TorchNativeEnv(EnvBase):
    """``num_envs`` copies of an env stepping together on ``device``; keys as GymWrapper
    writes them. Start states are drawn on the CPU, so a seed gives the same episodes on
    every device and a snapshot restores on any device."""

    STATE_DIM: ClassVar[int] = 4
    NUM_ACTIONS: ClassVar[int]
    MAX_EPISODE_STEPS: ClassVar[int]
    RESET_BOUND: ClassVar[float]  # start states: uniform in [-bound, bound] on every dimension
    FLOAT32_START: ClassVar[bool] = False  # start states rounded to float32 (gymnasium's Acrobot)
    OBSERVATION_HIGH: ClassVar[tuple[float, ...]]  # gymnasium's observation_space bounds (±)
    dynamics: ClassVar[Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]
    observe: ClassVar[Callable[[torch.Tensor], torch.Tensor]]
    reward: ClassVar[Callable[[torch.Tensor], torch.Tensor]]

    def __init__(
        self, num_envs: int, seed: int | None = None, device: torch.device | str | None = None
    ) -> None:
        # On the CPU the env declares no device, as TorchRL's own CPU envs do: a declared
        # device makes TensorDict and TorchRL cast every step's data (+25 µs a step, measured).
        self.data_device = torch.device(device or "cpu")
        super().__init__(
            batch_size=torch.Size([num_envs]),
            device=None if self.data_device.type == "cpu" else self.data_device,
        )
        n, dev = (num_envs,), self.data_device
        high = torch.tensor(self.OBSERVATION_HIGH, dtype=torch.float32, device=dev)
        size = len(self.OBSERVATION_HIGH)
        self.observation_spec = Composite(
            observation=Bounded(
                low=-high.expand(*n, size), high=high.expand(*n, size), shape=(*n, size), dtype=torch.float32,
                device=dev,
            ),
            shape=n,
            device=dev,
        )  # fmt: skip
        self.action_spec = Categorical(self.NUM_ACTIONS, shape=n, dtype=torch.int64, device=dev)
        self.reward_spec = Unbounded(shape=(*n, 1), dtype=torch.float32, device=dev)
        flag = {"n": 2, "shape": (*n, 1), "dtype": torch.bool, "device": dev}
        self.full_done_spec = Composite(
            done=Categorical(**flag),
            terminated=Categorical(**flag),
            truncated=Categorical(**flag),
            shape=n,
            device=dev,
        )
        self.state = torch.zeros(*n, self.STATE_DIM, dtype=torch.float64, device=dev)
        self.elapsed = torch.zeros(n, dtype=torch.int64, device=dev)
        self.rng = torch.Generator()  # CPU: see the class docstring
        self._set_seed(seed)
        self._restore: dict[str, torch.Tensor] | None = None

    @classmethod
    def start_states(cls, uniform: torch.Tensor) -> torch.Tensor:
        """Start states from uniforms on [0, 1) (float64), as gymnasium's reset draws them."""
        start = uniform * (2 * cls.RESET_BOUND) - cls.RESET_BOUND
        # gymnasium's Acrobot stores the start state as float32 (.astype); the first step
        # promotes it back to float64.
        return start.float().double() if cls.FLOAT32_START else start

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self.rng.seed()
        else:
            self.rng.manual_seed(seed)

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Everything that decides this env's future: states, step counts, RNG."""
        return {"state": self.state.clone(), "elapsed": self.elapsed.clone(), "rng": self.rng.get_state()}

    def restore_on_reset(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Make the next full reset return exactly the moment ``snapshot`` was taken, so that
        a collector's own ``reset()`` resumes the interrupted episodes."""
        self._restore = snapshot

    def set_state(self, state: torch.Tensor) -> TensorDictBase:
        """Put every copy in ``state`` [num_envs, STATE_DIM] (float64) with a fresh time limit."""
        self.state = state.to(self.data_device, torch.float64).clone()
        self.elapsed.zero_()
        return self._observe(self._no_done())

    def _no_done(self) -> torch.Tensor:
        return torch.zeros(self.batch_size, dtype=torch.bool, device=self.data_device)

    def _observe(self, done: torch.Tensor) -> TensorDictBase:
        done = done.unsqueeze(-1)
        return TensorDict(
            {
                "observation": type(self).observe(self.state),
                "done": done,
                "terminated": done.clone(),
                "truncated": done.clone(),
            },
            batch_size=self.batch_size,
            device=self.device,  # None on the CPU: see __init__
        )

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: object) -> TensorDictBase:
        reset = None if tensordict is None else tensordict.get("_reset", None)
        if reset is None and self._restore is not None:
            snapshot, self._restore = self._restore, None
            self.state = snapshot["state"].to(self.data_device, torch.float64).clone()
            self.elapsed = snapshot["elapsed"].to(self.data_device, torch.int64).clone()
            self.rng.set_state(snapshot["rng"].cpu())
            return self._observe(self._no_done())
        if reset is None:
            mask = torch.ones(self.batch_size, dtype=torch.bool, device=self.data_device)
        else:
            mask = reset.reshape(self.batch_size).to(self.data_device)
        uniform = torch.rand(*self.batch_size, self.STATE_DIM, generator=self.rng, dtype=torch.float64)
        fresh = self.start_states(uniform).to(self.data_device, non_blocking=True)
        self.state = torch.where(mask.unsqueeze(-1), fresh, self.state)
        self.elapsed = torch.where(mask, 0, self.elapsed)
        return self._observe(self._no_done())

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        cls = type(self)
        self.state, terminated = cls.dynamics(self.state, tensordict["action"])
        self.elapsed = self.elapsed + 1
        truncated = self.elapsed >= self.MAX_EPISODE_STEPS
        return TensorDict(
            {
                "observation": cls.observe(self.state),
                "reward": cls.reward(terminated).to(self.data_device).unsqueeze(-1),
                "done": (terminated | truncated).unsqueeze(-1),
                "terminated": terminated.unsqueeze(-1),
                "truncated": truncated.unsqueeze(-1),
            },
            batch_size=self.batch_size,
            device=self.device,  # None on the CPU: see __init__
        )
