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
trajectories part: ``tests/test_env_parity_acrobot.py`` states and measures both.
"""

from __future__ import annotations

import math

import torch

from ppo_torchrl.envs.native import TorchNativeEnv

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


class TorchAcrobot(TorchNativeEnv):
    """``num_envs`` Acrobot-v1 copies stepping together on ``device`` (native.py)."""

    NUM_ACTIONS = 3
    MAX_EPISODE_STEPS = MAX_EPISODE_STEPS
    RESET_BOUND = RESET_BOUND
    FLOAT32_START = True  # gymnasium draws in float64 and stores the start state as float32
    # gymnasium's observation_space: float32 bounds, so 4π and 9π rounded to float32.
    OBSERVATION_HIGH = (1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2)
    dynamics = staticmethod(acrobot_dynamics)
    observe = staticmethod(acrobot_observation)
    reward = staticmethod(acrobot_reward)
