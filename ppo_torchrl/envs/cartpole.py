"""CartPole-v1 as a batched, torch-native TorchRL env: gymnasium's physics, no Python loop.

gymnasium steps each sub-env in Python (about 10 µs a step) and TorchRL converts its numpy
arrays every step; this env advances all ``num_envs`` carts in a few tensor ops, on any
torch device. It follows gymnasium's ``CartPoleEnv.step`` line for line — Euler
integration in float64, the same constants, thresholds and reward (1.0 on every step, the
terminating one included) — and its 500-step ``TimeLimit`` (``truncated``). It is used for
training only: evaluation always runs on gymnasium's own env.

Equal to gymnasium up to the last bit of cos/sin: torch's float64 cos and sin (CPU or
CUDA) differ from the C library's that gymnasium calls by one unit in the last place on
about 0.15% of inputs, so one step from the same state agrees to ~1e-16, not bit for bit,
and since CartPole is unstable such a bit can grow over a long episode.
``specs/test_cartpole_matches_gymnasium.py`` states and checks that tolerance.
"""

from __future__ import annotations

import math

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

# gymnasium.envs.classic_control.cartpole.CartPoleEnv constants
GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
MAX_EPISODE_STEPS = 500  # CartPole-v1's registered TimeLimit
RESET_BOUND = 0.05


def cartpole_dynamics(state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step of gymnasium's CartPole for a batch: ``(next_state, terminated)``.

    ``state`` is [..., 4] float64 (x, x_dot, theta, theta_dot); ``action`` [...] in {0, 1}.
    Each expression keeps gymnasium's order of floating-point operations.
    """
    _, x_dot, theta, theta_dot = state.unbind(-1)
    force = (action * 2 - 1).to(state.dtype) * FORCE_MAG  # +10 for action 1, -10 for 0
    costheta, sintheta = torch.cos(theta), torch.sin(theta)
    temp = (force + POLEMASS_LENGTH * theta_dot.square() * sintheta) / TOTAL_MASS
    thetaacc = (GRAVITY * sintheta - costheta * temp) / (
        LENGTH * (4.0 / 3.0 - MASSPOLE * costheta.square() / TOTAL_MASS)
    )
    xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
    velocities = torch.stack((x_dot, xacc, theta_dot, thetaacc), -1)
    next_state = state + TAU * velocities
    # |x| > t is exactly "x < -t or x > t".
    terminated = (next_state[..., 0].abs() > X_THRESHOLD) | (next_state[..., 2].abs() > THETA_THRESHOLD)
    return next_state, terminated


class TorchCartPole(EnvBase):
    """``num_envs`` CartPole-v1 copies stepping together on ``device``; keys as GymWrapper
    writes them. Start states are drawn on the CPU, so a seed gives the same episodes on
    every device and a snapshot restores on any device."""

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
        high = torch.tensor(
            [
                X_THRESHOLD * 2,
                torch.finfo(torch.float32).max,
                THETA_THRESHOLD * 2,
                torch.finfo(torch.float32).max,
            ],
            device=dev,
        )
        self.observation_spec = Composite(
            observation=Bounded(
                low=-high.expand(*n, 4),
                high=high.expand(*n, 4),
                shape=(*n, 4),
                dtype=torch.float32,
                device=dev,
            ),
            shape=n,
            device=dev,
        )
        self.action_spec = Categorical(2, shape=n, dtype=torch.int64, device=dev)
        self.reward_spec = Unbounded(shape=(*n, 1), dtype=torch.float32, device=dev)
        flag = {"n": 2, "shape": (*n, 1), "dtype": torch.bool, "device": dev}
        self.full_done_spec = Composite(
            done=Categorical(**flag),
            terminated=Categorical(**flag),
            truncated=Categorical(**flag),
            shape=n,
            device=dev,
        )
        self.state = torch.zeros(*n, 4, dtype=torch.float64, device=dev)
        self.elapsed = torch.zeros(n, dtype=torch.int64, device=dev)
        self.rng = torch.Generator()  # CPU: see the class docstring
        self._set_seed(seed)
        self._restore: dict[str, torch.Tensor] | None = None

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self.rng.seed()
        else:
            self.rng.manual_seed(seed)

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Everything that decides this env's future: cart states, step counts, RNG."""
        return {"state": self.state.clone(), "elapsed": self.elapsed.clone(), "rng": self.rng.get_state()}

    def restore_on_reset(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Make the next full reset return exactly the moment ``snapshot`` was taken, so that
        a collector's own ``reset()`` resumes the interrupted episodes."""
        self._restore = snapshot

    def set_state(self, state: torch.Tensor) -> TensorDictBase:
        """Put every cart in ``state`` [num_envs, 4] (float64) with a fresh time limit."""
        self.state = state.to(self.data_device, torch.float64).clone()
        self.elapsed.zero_()
        return self._observe(self._no_done())

    def _no_done(self) -> torch.Tensor:
        return torch.zeros(self.batch_size, dtype=torch.bool, device=self.data_device)

    def _observe(self, done: torch.Tensor) -> TensorDictBase:
        done = done.unsqueeze(-1)
        return TensorDict(
            {
                "observation": self.state.to(torch.float32),
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
        fresh = torch.rand(*self.batch_size, 4, generator=self.rng, dtype=torch.float64)
        fresh = (fresh * (2 * RESET_BOUND) - RESET_BOUND).to(self.data_device, non_blocking=True)
        self.state = torch.where(mask.unsqueeze(-1), fresh, self.state)
        self.elapsed = torch.where(mask, 0, self.elapsed)
        return self._observe(self._no_done())

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.state, terminated = cartpole_dynamics(self.state, tensordict["action"])
        self.elapsed = self.elapsed + 1
        truncated = self.elapsed >= MAX_EPISODE_STEPS
        return TensorDict(
            {
                "observation": self.state.to(torch.float32),
                "reward": torch.ones(*self.batch_size, 1, device=self.data_device),
                "done": (terminated | truncated).unsqueeze(-1),
                "terminated": terminated.unsqueeze(-1),
                "truncated": truncated.unsqueeze(-1),
            },
            batch_size=self.batch_size,
            device=self.device,  # None on the CPU: see __init__
        )
