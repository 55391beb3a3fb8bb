"""Item 6 — Generalized Advantage Estimation, as make_advantage's GAE computes it.

    delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
    value_target_t = A_t + V(s_t)

s_{t+1} is the step's own ``("next", "observation")``: at a time-limit truncation that is
the episode's final observation, whose value the bootstrap uses; only a termination drops
it. Any end (done = terminated or truncated) stops the recursion, and the last step of the
batch bootstraps from V of its next observation. V here is a table: V(state id).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_torchrl import GAEParams, make_advantage
from specs import hand
from specs.cases import Rollout, rollouts
from specs.check import agree
from specs.rig import rollout_batch, table_critic

#     s0    s1    s2    s3    s4    s5
V = [1.0, 2.0, 5.0, 0.5, 1.5, 2.0]
# One env, four steps: s0 -> s1 -> s2 ends the first episode, s3 -> s4 -> s5 runs on past
# the batch's end. Reward 1 every step.
OBS, NEXT, REWARD = [[0, 1, 3, 4]], [[1, 2, 4, 5]], [[1.0, 1.0, 1.0, 1.0]]
ENDS_AT_1 = [[False, True, False, False]]
NEVER = [[False] * 4]


Arrays = tuple[np.ndarray, np.ndarray]


def module_gae(gamma: float, lam: float, values: Any, obs: Any, *step_arrays: Any) -> Arrays:
    """advantage and value_target from make_advantage(GAEParams(gamma, lam), critic)."""
    batch = rollout_batch(obs, *step_arrays)  # next_obs, reward, terminated, truncated
    make_advantage(GAEParams(gamma=gamma, lam=lam), table_critic(values))(batch)
    return batch["advantage"][..., 0].numpy(), batch["value_target"][..., 0].numpy()


def hand_gae(
    gamma: float,
    lam: float,
    values: Any,
    obs: Any,
    next_obs: Any,
    reward: Any,
    terminated: Any,
    truncated: Any,
) -> Arrays:
    v = np.asarray(values)
    term, trunc = np.asarray(terminated), np.asarray(truncated)
    return hand.gae(reward, v[np.asarray(obs)], v[np.asarray(next_obs)], term, term | trunc, gamma, lam)


def test_single_step() -> None:
    """r = 1, V(s) = 2, V(s') = 3, gamma = 0.9: delta = 1 + 0.9 * 3 - 2 = 1.7 = A, target 3.7.
    Terminated instead: delta = 1 - 2 = -1, target 1."""
    for terminated, adv in ((False, 1.7), (True, -1.0)):
        a, target = module_gae(0.9, 0.8, [2.0, 3.0], [[0]], [[1]], [[1.0]], [[terminated]], [[False]])
        agree(f"advantage (terminated={terminated})", [[adv]], a)
        agree(f"value_target (terminated={terminated})", [[adv + 2.0]], target)


def test_termination_mid_batch() -> None:
    """gamma = 0.9, lam = 0.8 (gamma * lam = 0.72); s1 -> s2 terminates:
    delta = [1 + 0.9*2 - 1, 1 + 0 - 2, 1 + 0.9*1.5 - 0.5, 1 + 0.9*2 - 1.5] = [1.8, -1.0, 1.85, 1.3]
    A3 = 1.3, A2 = 1.85 + 0.72*1.3 = 2.786, A1 = -1.0 (cut), A0 = 1.8 + 0.72*(-1) = 1.08
    value_target = A + V(s) = [2.08, 1.0, 3.286, 2.8]"""
    a, target = module_gae(0.9, 0.8, V, OBS, NEXT, REWARD, ENDS_AT_1, NEVER)
    agree(
        "hand formula",
        [[1.08, -1.0, 2.786, 1.3]],
        hand_gae(0.9, 0.8, V, OBS, NEXT, REWARD, ENDS_AT_1, NEVER)[0],
    )
    agree("advantage", [[1.08, -1.0, 2.786, 1.3]], a)
    agree("value_target", [[2.08, 1.0, 3.286, 2.8]], target)


def test_truncation_mid_batch_bootstraps_from_the_final_observation() -> None:
    """The same steps, but s1 -> s2 is a time-limit truncation: the episode did not end,
    it was cut off, so delta_1 = 1 + 0.9 * V(s2) - 2 = 1 + 4.5 - 2 = 3.5 (not -1.0);
    A1 = 3.5 (the recursion still stops), A0 = 1.8 + 0.72 * 3.5 = 4.32; A2, A3 unchanged."""
    a, target = module_gae(0.9, 0.8, V, OBS, NEXT, REWARD, NEVER, ENDS_AT_1)
    agree("advantage", [[4.32, 3.5, 2.786, 1.3]], a)
    agree("value_target", [[5.32, 5.5, 3.286, 2.8]], target)


def test_batch_ending_mid_episode_bootstraps() -> None:
    """s0 -> s1 -> s2 and the batch stops (nothing ended): V = [1, 2, 10], r = 0,
    gamma = lam = 0.5: delta = [0 + 0.5*2 - 1, 0 + 0.5*10 - 2] = [0, 3], A = [0.75, 3]."""
    a, _ = module_gae(
        0.5, 0.5, [1.0, 2.0, 10.0], [[0, 1]], [[1, 2]], [[0.0, 0.0]], [[False] * 2], [[False] * 2]
    )
    agree("advantage", [[0.75, 3.0]], a)


def test_lambda_zero_is_the_td_error() -> None:
    """lam = 0: A_t = delta_t, the one-step TD error: [1.8, -1.0, 1.85, 1.3] (the deltas
    above). GAEParams accepts lam = 0; its help says "0 gives the TD error"."""
    a, _ = module_gae(0.9, 0.0, V, OBS, NEXT, REWARD, ENDS_AT_1, NEVER)
    agree("advantage", [[1.8, -1.0, 1.85, 1.3]], a)


@pytest.mark.parametrize(("gamma", "lam"), [(0.0, 0.8), (1e-4, 1e-4), (0.01, 0.01)])
def test_small_gamma_lambda(gamma: float, lam: float) -> None:
    """gamma * lam near 0 is still the same recursion. gamma = 0: A = delta = r - V(s) =
    [0, -1, 0.5, -0.5]. gamma = lam = 0.01: A2 = delta2 + 1e-4 * delta3 = 0.515 - 0.000048
    = 0.514952 (TorchRL's vectorised GAE keeps the series (gamma*lam)^k only while
    int(log(1e-7) / log(gamma*lam)) says so, which drops this 1e-4 term)."""
    a, _ = module_gae(gamma, lam, V, OBS, NEXT, REWARD, ENDS_AT_1, NEVER)
    agree("advantage", hand_gae(gamma, lam, V, OBS, NEXT, REWARD, ENDS_AT_1, NEVER)[0], a)


def test_lambda_one_is_the_return_minus_value() -> None:
    """lam = 1: A_t = G_t - V(s_t). Episode 1 terminates: G = [1 + 0.9*1, 1] = [1.9, 1],
    A = [0.9, -1.0]. Episode 2 runs past the batch, so G bootstraps from V(s5) = 2:
    G3 = 1 + 0.9*2 = 2.8, G2 = 1 + 0.9*2.8 = 3.52, A = [3.02, 1.3]."""
    a, _ = module_gae(0.9, 1.0, V, OBS, NEXT, REWARD, ENDS_AT_1, NEVER)
    agree("advantage", [[0.9, -1.0, 3.02, 1.3]], a)


def test_several_envs() -> None:
    """[N, T] = [3, 4]: row 0 terminates at t=1, row 1 is truncated there, row 2 never ends.
    Each row is its own trajectory: rows 0 and 1 repeat the two examples above."""
    obs, next_obs, reward = OBS * 3, NEXT * 3, REWARD * 3
    terminated = ENDS_AT_1 + NEVER + NEVER
    truncated = NEVER + ENDS_AT_1 + NEVER
    a, target = module_gae(0.9, 0.8, V, obs, next_obs, reward, terminated, truncated)
    agree("rows 0 and 1", [[1.08, -1.0, 2.786, 1.3], [4.32, 3.5, 2.786, 1.3]], a[:2])
    hand_a, hand_target = hand_gae(0.9, 0.8, V, obs, next_obs, reward, terminated, truncated)
    agree("advantage", hand_a, a)
    agree("value_target", hand_target, target)


def _args(case: Rollout) -> tuple[np.ndarray, ...]:
    return case.values, case.obs, case.next_obs, case.reward, case.terminated, case.truncated


@settings(max_examples=60, deadline=None)
@given(rollouts(), st.floats(0.3, 1), st.floats(0.3, 1))
def test_gae_property(case: Rollout, gamma: float, lam: float) -> None:
    """Random [N, T] rollouts with terminations and truncations anywhere, random gamma, lam.

    gamma, lam >= 0.3 keeps gamma * lam >= 0.09, where TorchRL's truncation of the series
    (gamma*lam)^k costs < 1e-6 of an advantage; smaller products have their own specs
    (test_lambda_zero_*, test_small_gamma_lambda)."""
    a, target = module_gae(gamma, lam, *_args(case))
    hand_a, hand_target = hand_gae(gamma, lam, *_args(case))
    agree("advantage", hand_a, a, atol=1e-4)
    agree("value_target", hand_target, target, atol=1e-4)


def _segments(case: Rollout) -> Iterator[tuple[int, list[int], bool]]:
    """(row, steps of one episode piece, ended by termination?) for every piece of every row."""
    for i in range(case.obs.shape[0]):
        start = 0
        for t in range(case.obs.shape[1]):
            if case.done[i, t] or t == case.obs.shape[1] - 1:
                yield i, list(range(start, t + 1)), bool(case.terminated[i, t])
                start = t + 1


@settings(max_examples=30, deadline=None)
@given(rollouts(), st.floats(0, 1))
def test_lambda_zero_property(case: Rollout, gamma: float) -> None:
    """lam = 0 gives the TD error delta_t on random rollouts, for any gamma."""
    v = case.values
    a, _ = module_gae(gamma, 0.0, *_args(case))
    td = hand.td_error(case.reward, v[case.obs], v[case.next_obs], case.terminated, gamma)
    agree("lam = 0: advantage = delta", td, a, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(rollouts(), st.floats(0.3, 1))
def test_lambda_one_property(case: Rollout, gamma: float) -> None:
    """lam = 1 gives the discounted return minus V, summed forwards; the return of a piece
    that was truncated, or that runs past the batch, bootstraps from V of its last next obs."""
    v = case.values
    a, _ = module_gae(gamma, 1.0, *_args(case))
    expected = np.zeros(case.obs.shape)
    for i, steps, terminated in _segments(case):
        last_next = v[case.next_obs[i, steps[-1]]]
        rewards, values = case.reward[i, steps], v[case.obs[i, steps]]
        expected[i, steps] = hand.return_minus_value(rewards, values, last_next, terminated, gamma)
    agree("lam = 1: advantage = G - V", expected, a, atol=1e-4)
