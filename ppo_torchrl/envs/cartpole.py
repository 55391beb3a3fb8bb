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
``tests/test_env_parity_cartpole.py`` states and checks that tolerance.
"""

from __future__ import annotations

import math

import torch

from ppo_torchrl.envs.native import TorchNativeEnv

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


def cartpole_observation(state: torch.Tensor) -> torch.Tensor:
    """The observation is the state, as float32 (gymnasium's ``np.array(state, float32)``)."""
    return state.to(torch.float32)


def cartpole_reward(terminated: torch.Tensor) -> torch.Tensor:
    """1.0 on every step, the terminating one included."""
    return torch.ones(terminated.shape, device=terminated.device)


class TorchCartPole(TorchNativeEnv):
    """``num_envs`` CartPole-v1 copies stepping together on ``device`` (native.py)."""

    NUM_ACTIONS = 2
    MAX_EPISODE_STEPS = MAX_EPISODE_STEPS
    RESET_BOUND = RESET_BOUND
    OBSERVATION_HIGH = (
        X_THRESHOLD * 2,
        torch.finfo(torch.float32).max,
        THETA_THRESHOLD * 2,
        torch.finfo(torch.float32).max,
    )
    dynamics = staticmethod(cartpole_dynamics)
    observe = staticmethod(cartpole_observation)
    reward = staticmethod(cartpole_reward)
