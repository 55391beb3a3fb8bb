"""hypothesis strategies: random policy batches and random rollouts, as plain NumPy data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from specs import hand


def floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats in [lo, hi], rounded to float32 so both sides see the very same inputs."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(lambda x: float(np.float32(x)))


@dataclass
class PolicyCase:
    logits: np.ndarray  # [K, A]: the actor's table
    states: np.ndarray  # [n]
    actions: np.ndarray  # [n]
    logp_old: np.ndarray  # [n]: log pi_old(a|s) as stored by the collector
    advantage: np.ndarray  # [n]

    @property
    def logp_new(self) -> np.ndarray:
        return hand.log_softmax(self.logits)[self.states, self.actions]

    @property
    def ratio(self) -> np.ndarray:
        return hand.ratio(self.logp_new, self.logp_old)


@st.composite
def policy_cases(
    draw: st.DrawFn, min_n: int = 1, max_n: int = 8, max_log_ratio: float = 1.0, one_state_each: bool = False
) -> PolicyCase:
    """Random logits, samples, log-ratios in [-max_log_ratio, max_log_ratio] and advantages."""
    n = draw(st.integers(min_n, max_n))
    n_actions = draw(st.integers(2, 4))
    n_states = n if one_state_each else draw(st.integers(1, 4))
    logits = np.array(
        draw(st.lists(floats(-3, 3), min_size=n_states * n_actions, max_size=n_states * n_actions))
    )
    logits = logits.reshape(n_states, n_actions)
    states = (
        np.arange(n)
        if one_state_each
        else np.array(draw(st.lists(st.integers(0, n_states - 1), min_size=n, max_size=n)))
    )
    actions = np.array(draw(st.lists(st.integers(0, n_actions - 1), min_size=n, max_size=n)))
    log_r = np.array(draw(st.lists(floats(-max_log_ratio, max_log_ratio), min_size=n, max_size=n)))
    advantage = np.array(draw(st.lists(floats(-3, 3), min_size=n, max_size=n)))
    logp_old = hand.log_softmax(logits)[states, actions] - log_r
    return PolicyCase(logits, states, actions, logp_old.astype(np.float32).astype(np.float64), advantage)


@dataclass
class Rollout:
    """[N, T] steps through a value table: obs and next_obs are state ids."""

    values: np.ndarray  # [K]
    obs: np.ndarray
    next_obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


@st.composite
def rollouts(draw: st.DrawFn, max_envs: int = 3, max_steps: int = 8, p_end: float = 0.25) -> Rollout:
    """Random episodes laid out as a collector does: an ended step's next obs is the final
    state; the following step starts from a fresh state. A step ends by termination or by
    truncation with probability ``p_end`` each."""
    n_envs, steps = draw(st.integers(1, max_envs)), draw(st.integers(1, max_steps))
    size = n_envs * steps
    n_states = 3 * size + 1
    values = np.array(draw(st.lists(floats(-5, 5), min_size=n_states, max_size=n_states)))
    reward = np.array(draw(st.lists(floats(-2, 2), min_size=size, max_size=size))).reshape(n_envs, steps)
    u = np.array(draw(st.lists(st.floats(0, 1), min_size=size, max_size=size))).reshape(n_envs, steps)
    terminated, truncated = u < p_end, (u >= p_end) & (u < 2 * p_end)
    perm = draw(st.permutations(range(n_states)))
    obs, next_obs = np.zeros((n_envs, steps), int), np.zeros((n_envs, steps), int)
    fresh = iter(perm)
    for i in range(n_envs):
        state = next(fresh)
        for t in range(steps):
            obs[i, t] = state
            next_obs[i, t] = next(fresh)
            state = next(fresh) if terminated[i, t] or truncated[i, t] else next_obs[i, t]
    return Rollout(values, obs, next_obs, reward, terminated, truncated)
