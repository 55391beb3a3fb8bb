"""The torch-native CartPole used for training is gymnasium's CartPole-v1, step for step.

gymnasium's ``CartPoleEnv.step`` (Euler, tau = 0.02, force +-10 N, gravity 9.8, cart 1 kg,
pole 0.1 kg with half-length 0.5 m):

    temp     = (F + m_p l theta_dot^2 sin(theta)) / (m_c + m_p)
    theta_dd = (g sin(theta) - cos(theta) temp) / (l (4/3 - m_p cos(theta)^2 / (m_c + m_p)))
    x_dd     = temp - m_p l theta_dd cos(theta) / (m_c + m_p)
    x += tau x_dot;  x_dot += tau x_dd;  theta += tau theta_dot;  theta_dot += tau theta_dd
    terminated = |x| > 2.4 or |theta| > 12 degrees;  reward = 1 on every step
    truncated  = 500 steps (CartPole-v1's TimeLimit)

Worked example: from the state (0, 0, 0, 0), pushing right (action 1, F = +10):
temp = 10 / 1.1 = 9.0909..., theta_dd = (0 - 9.0909) / (0.5 * (4/3 - 0.1/1.1)) = -14.634...,
x_dd = 9.0909 + 0.05 * 14.634 / 1.1 = 9.7561...; only the velocities move on this first
Euler step: next state (0, 0.195122, 0, -0.292683).

Tolerance: none. The torch env keeps the state in float64 and computes cos/sin with numpy,
as gymnasium does, so every observation (float32), reward, terminated and truncated flag
must be *identical* to gymnasium's for the same initial state and action sequence.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

from ppo_torchrl.cartpole import TorchCartPole
from specs.check import agree


def step(env: TorchCartPole, actions: np.ndarray) -> TensorDict:
    return env.step(TensorDict({"action": torch.as_tensor(actions)}, env.batch_size))["next"]


def test_first_step_worked_example() -> None:
    env = TorchCartPole(1)
    env.set_state(torch.zeros(1, 4, dtype=torch.float64))
    out = step(env, np.array([1]))
    temp = 10 / 1.1
    theta_dd = (0 - temp) / (0.5 * (4 / 3 - 0.1 / 1.1))
    x_dd = temp - 0.05 * theta_dd / 1.1
    agree("next state", [[0.0, 0.02 * x_dd, 0.0, 0.02 * theta_dd]], env.state.numpy(), atol=0, rtol=0)
    assert out["reward"].item() == 1.0 and not out["done"].item()


def balancing_actions(state: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """A crude controller (push toward the pole's fall) with some random actions mixed in,
    so that episodes run anywhere from a few steps to the 500-step time limit."""
    actions = (state[:, 2] + 0.5 * state[:, 3] > 0).astype(np.int64)
    random = rng.random(len(actions)) < noise
    actions[random] = rng.integers(0, 2, random.sum())
    return actions


def compare_episodes(seeds: list[int], noise: float) -> list[int]:
    """Run gymnasium envs and one batched torch env side by side; return episode lengths."""
    gyms = [gym.make("CartPole-v1") for _ in seeds]
    for env, seed in zip(gyms, seeds, strict=True):
        env.reset(seed=seed)
    torch_env = TorchCartPole(len(seeds))
    torch_env.set_state(torch.as_tensor(np.stack([g.unwrapped.state for g in gyms])))
    rng = np.random.default_rng(seeds[0])
    running = np.ones(len(seeds), dtype=bool)
    lengths = np.zeros(len(seeds), dtype=int)
    while running.any():
        actions = balancing_actions(torch_env.state.numpy(), rng, noise)
        out = step(torch_env, actions)
        for i in np.flatnonzero(running):
            obs, reward, terminated, truncated, _ = gyms[i].step(int(actions[i]))
            t = lengths[i]
            agree(f"env {i} obs at step {t}", obs, out["observation"][i].numpy(), atol=0, rtol=0)
            assert out["reward"][i].item() == reward, (i, t)
            assert out["terminated"][i].item() == terminated, (i, t, terminated)
            assert out["truncated"][i].item() == truncated, (i, t, truncated)
            assert out["done"][i].item() == (terminated or truncated), (i, t)
            lengths[i] += 1
            running[i] = not (terminated or truncated)
    return lengths.tolist()


def test_episodes_match_gymnasium_to_the_last_bit() -> None:
    lengths = compare_episodes(list(range(40)), noise=0.1)
    assert max(lengths) == 500, "some episodes must reach the time limit (truncation)"
    assert min(lengths) < 500, "some episodes must terminate"


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), noise=st.floats(0.0, 1.0))
def test_random_starts_and_actions_match(seed: int, noise: float) -> None:
    compare_episodes([seed, seed + 1, seed + 2], noise)


def test_reset_draws_gymnasium_start_states_and_resets_only_flagged_envs() -> None:
    env = TorchCartPole(256, seed=0)
    first = env.reset()["observation"]
    assert first.dtype == torch.float32 and first.abs().max() <= 0.05
    assert first.std(0).min() > 0.02  # uniform on [-0.05, 0.05] has std 0.029
    before = env.state.clone()
    flags = torch.zeros(256, 1, dtype=torch.bool)
    flags[:3] = True
    # As a collector does: the current observations go in, flagged entries come out reset.
    after = env.reset(TensorDict({"observation": first, "_reset": flags}, [256]))["observation"]
    assert not torch.equal(env.state[:3], before[:3])
    assert torch.equal(env.state[3:], before[3:]) and torch.equal(after[3:], first[3:])
