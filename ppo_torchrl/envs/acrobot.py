"""Acrobot-v1 as a batched, torch-native TorchRL env: gymnasium's physics, no Python loop.

Why: gymnasium's ``AcrobotEnv.step`` runs a Python RK4 over NumPy scalars (32 µs a step
here, per env) and TorchRL converts its numpy arrays every step; this env advances all
``num_envs`` acrobots in ~240 tensor ops, on any torch device (on one CPU thread: 0.67 ms
a step for 8 envs, 1 ms for 1024, measured through ``step_and_maybe_reset``). It is used
for training only: evaluation always runs on gymnasium's own env.

It follows gymnasium 1.x line for line (the book dynamics, ``book_or_nips = "book"``;
``torque_noise_max = 0``). With state (θ1, θ2, dθ1, dθ2), torque a in {-1, 0, +1}, both
links 1 kg, 1 m, centre of mass at 0.5 m, moment of inertia 1, g = 9.8:

    d1    = m1 lc1² + m2 (l1² + lc2² + 2 l1 lc2 cos θ2) + I1 + I2
    d2    = m2 (lc2² + l1 lc2 cos θ2) + I2
    φ2    = m2 lc2 g cos(θ1 + θ2 - π/2)
    φ1    = -m2 l1 lc2 dθ2² sin θ2 - 2 m2 l1 lc2 dθ2 dθ1 sin θ2 + (m1 lc1 + m2 l1) g cos(θ1 - π/2) + φ2
    ddθ2  = (a + d2/d1 φ1 - m2 l1 lc2 dθ1² sin θ2 - φ2) / (m2 lc2² + I2 - d2²/d1)
    ddθ1  = -(d2 ddθ2 + φ1) / d1

One RK4 step of dt = 0.2 s (gymnasium's ``rk4(_dsdt, s, [0, dt])``: k1..k4 at 0, dt/2,
dt/2, dt), then θ1, θ2 wrapped into [-π, π], dθ1 clipped to ±4π and dθ2 to ±9π.
terminated = -cos θ1 - cos(θ2 + θ1) > 1 (the tip above the bar); reward -1 per step, 0 on
the terminating one; truncated at 500 steps (Acrobot-v1's ``TimeLimit``). Observation:
(cos θ1, sin θ1, cos θ2, sin θ2, dθ1, dθ2) as float32. Start: uniform(-0.1, 0.1) on all
four, rounded to float32 as gymnasium's ``reset`` does (the first step promotes to float64).

Tolerance. The state is float64 and every expression keeps gymnasium's order of
floating-point operations, but cos and sin come from torch (any device, no NumPy round
trip), which differ from the C library's by one unit in the last place on ~0.15% of
inputs, and gymnasium's ``x**2`` on a NumPy scalar calls the C library's ``pow``, which
misses the correctly rounded ``x*x`` torch computes on ~0.1%. One step from the same
state agrees bit for bit on ~99.5% of states and otherwise within ~1e-13 (RK4 spreads the
bit). Acrobot is chaotic, so over a free-running episode such a bit can grow until the
trajectories part: ``specs/test_acrobot_matches_gymnasium.py`` states and measures both.
"""

from __future__ import annotations

import math

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

# gymnasium.envs.classic_control.acrobot.AcrobotEnv constants (names as there)
DT = 0.2
LINK_LENGTH_1 = 1.0
LINK_MASS_1 = 1.0
LINK_MASS_2 = 1.0
LINK_COM_POS_1 = 0.5
LINK_COM_POS_2 = 0.5
LINK_MOI = 1.0
GRAVITY = 9.8
MAX_VEL_1 = 4 * math.pi
MAX_VEL_2 = 9 * math.pi
AVAIL_TORQUE = (-1.0, 0.0, 1.0)
MAX_EPISODE_STEPS = 500  # Acrobot-v1's registered TimeLimit
RESET_BOUND = 0.1
# One step moves an angle at most 9.46π (maximised numerically over the state box the
# velocity bounds allow), so 5 passes of ±2π finish gymnasium's while-loops; one spare.
WRAP_PASSES = 6


def _dsdt(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """gymnasium's ``AcrobotEnv._dsdt`` (book dynamics) on [..., 4]; ``a`` is the torque.
    Written as gymnasium writes it so that Python folds the same constants in the same
    order; the torque's zero derivative is left out rather than carried as a 5th entry."""
    m1, m2, l1, lc1, lc2 = LINK_MASS_1, LINK_MASS_2, LINK_LENGTH_1, LINK_COM_POS_1, LINK_COM_POS_2
    I1 = I2 = LINK_MOI  # gymnasium's names
    g, pi = GRAVITY, math.pi
    theta1, theta2, dtheta1, dtheta2 = s.unbind(-1)
    cos2, sin2 = torch.cos(theta2), torch.sin(theta2)
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos2) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * cos2) + I2
    phi2 = m2 * lc2 * g * torch.cos(theta1 + theta2 - pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * dtheta2**2 * sin2
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin2
        + (m1 * lc1 + m2 * l1) * g * torch.cos(theta1 - pi / 2)
        + phi2
    )
    ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * sin2 - phi2) / (
        m2 * lc2**2 + I2 - d2**2 / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2), -1)


def acrobot_dynamics(state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One RK4 step of gymnasium's Acrobot for a batch: ``(next_state, terminated)``.

    ``state`` is [..., 4] float64 (θ1, θ2, dθ1, dθ2); ``action`` [...] int in {0, 1, 2}.
    """
    torque = (action - 1).to(state.dtype)  # AVAIL_TORQUE[action], without a gather
    dt = DT  # gymnasium's rk4 over t = [0, dt]: k1 at 0, k2 and k3 at dt / 2, k4 at dt
    dt2 = dt / 2.0
    k1 = _dsdt(state, torque)
    k2 = _dsdt(state + dt2 * k1, torque)
    k3 = _dsdt(state + dt2 * k2, torque)
    k4 = _dsdt(state + dt * k3, torque)
    ns = state + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    angles, velocities = ns[..., :2], ns[..., 2:]
    # gymnasium's wrap: repeated ±2π (not a remainder, which rounds differently), as a fixed
    # number of masked passes so that no step waits on the device to learn how many.
    for _ in range(WRAP_PASSES):
        angles = torch.where(
            angles > math.pi,
            angles - 2 * math.pi,
            torch.where(angles < -math.pi, angles + 2 * math.pi, angles),
        )
    # gymnasium's bound; Python-number limits, so no per-step tensor to copy to the device.
    dtheta1 = velocities[..., :1].clamp(-MAX_VEL_1, MAX_VEL_1)
    dtheta2 = velocities[..., 1:].clamp(-MAX_VEL_2, MAX_VEL_2)
    next_state = torch.cat((angles, dtheta1, dtheta2), -1)
    theta1, theta2 = next_state[..., 0], next_state[..., 1]
    terminated = -torch.cos(theta1) - torch.cos(theta2 + theta1) > 1.0
    return next_state, terminated


def acrobot_observation(state: torch.Tensor) -> torch.Tensor:
    """gymnasium's ``_get_ob``: (cos θ1, sin θ1, cos θ2, sin θ2, dθ1, dθ2), float32 [..., 6]."""
    theta1, theta2, dtheta1, dtheta2 = state.unbind(-1)
    parts = (torch.cos(theta1), torch.sin(theta1), torch.cos(theta2), torch.sin(theta2), dtheta1, dtheta2)
    return torch.stack(parts, -1).to(torch.float32)


def acrobot_reward(terminated: torch.Tensor) -> torch.Tensor:
    """-1 on every step, 0 on the one that reaches the goal; float32, ``terminated``'s shape."""
    return terminated.to(torch.float32) - 1.0


class TorchAcrobot(EnvBase):
    """``num_envs`` Acrobot-v1 copies stepping together on ``device``; keys as GymWrapper
    writes them. Start states are drawn on the CPU, so a seed gives the same episodes on
    every device and a snapshot restores on any device."""

    def __init__(
        self, num_envs: int, seed: int | None = None, device: torch.device | str | None = None
    ) -> None:
        # On the CPU the env declares no device, as TorchRL's own CPU envs do: a declared
        # device makes TensorDict and TorchRL cast every step's data (see TorchCartPole).
        self.data_device = torch.device(device or "cpu")
        super().__init__(
            batch_size=torch.Size([num_envs]),
            device=None if self.data_device.type == "cpu" else self.data_device,
        )
        n, dev = (num_envs,), self.data_device
        # gymnasium's observation_space: float32 bounds, so 4π and 9π rounded to float32.
        high = torch.tensor([1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2], dtype=torch.float32, device=dev)
        self.observation_spec = Composite(
            observation=Bounded(
                low=-high.expand(*n, 6),
                high=high.expand(*n, 6),
                shape=(*n, 6),
                dtype=torch.float32,
                device=dev,
            ),
            shape=n,
            device=dev,
        )
        self.action_spec = Categorical(3, shape=n, dtype=torch.int64, device=dev)
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
        """Everything that decides this env's future: link states, step counts, RNG."""
        return {"state": self.state.clone(), "elapsed": self.elapsed.clone(), "rng": self.rng.get_state()}

    def restore_on_reset(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Make the next full reset return exactly the moment ``snapshot`` was taken, so that
        a collector's own ``reset()`` resumes the interrupted episodes."""
        self._restore = snapshot

    def set_state(self, state: torch.Tensor) -> TensorDictBase:
        """Put every acrobot in ``state`` [num_envs, 4] (θ1, θ2, dθ1, dθ2; float64) with a
        fresh time limit."""
        self.state = state.to(self.data_device, torch.float64).clone()
        self.elapsed.zero_()
        return self._observe(self._no_done())

    def _no_done(self) -> torch.Tensor:
        return torch.zeros(self.batch_size, dtype=torch.bool, device=self.data_device)

    def _observe(self, done: torch.Tensor) -> TensorDictBase:
        done = done.unsqueeze(-1)
        return TensorDict(
            {
                "observation": acrobot_observation(self.state),
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
        # gymnasium draws in float64 and stores the start state as float32 (.astype).
        fresh = (fresh * (2 * RESET_BOUND) - RESET_BOUND).float().double()
        self.state = torch.where(
            mask.unsqueeze(-1), fresh.to(self.data_device, non_blocking=True), self.state
        )
        self.elapsed = torch.where(mask, 0, self.elapsed)
        return self._observe(self._no_done())

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.state, terminated = acrobot_dynamics(self.state, tensordict["action"])
        self.elapsed = self.elapsed + 1
        truncated = self.elapsed >= MAX_EPISODE_STEPS
        return TensorDict(
            {
                "observation": acrobot_observation(self.state),
                "reward": acrobot_reward(terminated).unsqueeze(-1),
                "done": (terminated | truncated).unsqueeze(-1),
                "terminated": terminated.unsqueeze(-1),
                "truncated": truncated.unsqueeze(-1),
            },
            batch_size=self.batch_size,
            device=self.device,  # None on the CPU: see __init__
        )
