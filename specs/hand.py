"""The independent side: PPO's formulas written from their definitions in plain Python/NumPy.

Nothing here imports torch, TorchRL, tensordict or ppo_torchrl. Every function is the
textbook formula in float64, short enough to check against the paper by eye.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def arr(x: ArrayLike) -> Array:
    return np.asarray(x, dtype=np.float64)


# --- policy: probabilities, ratio, clipped surrogate -----------------------------------------


def log_softmax(logits: ArrayLike) -> Array:
    """log pi(a|s) = logit_a - log(sum_b exp(logit_b)), row-wise."""
    z = arr(logits)
    top = z.max(axis=-1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(axis=-1, keepdims=True))


def softmax(logits: ArrayLike) -> Array:
    return np.exp(log_softmax(logits))


def entropy(logits: ArrayLike) -> Array:
    """H(pi(.|s)) = -sum_a pi(a|s) log pi(a|s), row-wise."""
    logp = log_softmax(logits)
    return -(np.exp(logp) * logp).sum(axis=-1)


def ratio(logp_new: ArrayLike, logp_old: ArrayLike) -> Array:
    """r = exp(log pi_new(a|s) - log pi_old(a|s)) = pi_new(a|s) / pi_old(a|s)."""
    return np.exp(arr(logp_new) - arr(logp_old))


def surrogate_terms(
    r: ArrayLike, adv: ArrayLike, eps: float, eps_high: float | None = None
) -> tuple[Array, Array]:
    """Per sample: (r*A, clip(r, 1-eps, 1+eps_high)*A); eps_high None: eps (symmetric)."""
    r, adv = arr(r), arr(adv)
    high = eps if eps_high is None else eps_high
    return r * adv, np.clip(r, 1 - eps, 1 + high) * adv


def clipped_surrogate_loss(r: ArrayLike, adv: ArrayLike, eps: float, eps_high: float | None = None) -> float:
    """L = -mean(min(r*A, clip(r, 1-eps, 1+eps_high)*A)), eps_high = eps unless given."""
    unclipped, clipped = surrogate_terms(r, adv, eps, eps_high)
    return float(-np.minimum(unclipped, clipped).mean())


def clipped_surrogate_loss_asym(r: ArrayLike, adv: ArrayLike, low: float, high: float) -> float:
    """DAPO's clip-higher: L = -mean(min(r*A, clip(r, 1 - low, 1 + high)*A))."""
    return clipped_surrogate_loss(r, adv, low, high)


def clipped_branch_wins(
    r: ArrayLike, adv: ArrayLike, eps: float, eps_high: float | None = None
) -> NDArray[np.bool_]:
    """Samples whose min() is strictly the clipped term: they carry no policy gradient."""
    unclipped, clipped = surrogate_terms(r, adv, eps, eps_high)
    return clipped < unclipped


def surrogate_logit_gradient(
    logits: ArrayLike,
    actions: Sequence[int],
    r: ArrayLike,
    adv: ArrayLike,
    eps: float,
    eps_high: float | None = None,
) -> Array:
    """d L / d logits of the sample's own state row, one row per sample.

    Unclipped branch: d(-r*A/n)/d logits = -(A/n) * r * (onehot(a) - pi), because
    d log softmax(z)_a / dz = onehot(a) - softmax(z). Clipped branch: a constant, so 0.
    """
    r, adv, probs = arr(r), arr(adv), softmax(logits)
    onehot = np.eye(probs.shape[-1])[list(actions)]
    grad = -(adv * r / len(r))[:, None] * (onehot - probs)
    grad[clipped_branch_wins(r, adv, eps, eps_high)] = 0.0
    return grad


def entropy_logit_gradient(logits: ArrayLike) -> Array:
    """d H / d logits = -pi * (log pi + H), row-wise: zero at the uniform policy."""
    logp = log_softmax(logits)
    return -np.exp(logp) * (logp + entropy(logits)[..., None])


# --- diagnostics -------------------------------------------------------------------------------


def clip_fraction_ratio(r: ArrayLike, eps: float) -> float:
    """The tutorial's definition: mean(|r - 1| > eps), in Python floats."""
    return float(np.mean([abs(x - 1.0) > eps for x in arr(r)]))


def clip_fraction_log(log_r: ArrayLike, low: float, high: float) -> float:
    """TorchRL's definition: the log-ratio lies outside the closed band [low, high]."""
    w = arr(log_r)
    return float(np.mean((w < low) | (w > high)))


def kl_k1(logp_new: ArrayLike, logp_old: ArrayLike) -> float:
    """k1 = mean(log pi_old - log pi_new): unbiased for KL(old||new), can be negative."""
    return float(np.mean(arr(logp_old) - arr(logp_new)))


def kl_k3(logp_new: ArrayLike, logp_old: ArrayLike) -> float:
    """k3 = mean((r - 1) - log r): unbiased for KL(old||new) and never negative."""
    log_r = arr(logp_new) - arr(logp_old)
    return float(np.mean(np.expm1(log_r) - log_r))


def standardize(adv: ArrayLike, ddof: int = 1, min_std: float = 1e-6) -> Array:
    """(A - mean(A)) / max(std(A), min_std), std with ``ddof`` (1: unbiased, n-1)."""
    a = arr(adv)
    return (a - a.mean()) / max(float(a.std(ddof=ddof)), min_std)


# --- advantages ----------------------------------------------------------------------------------


def gae(
    reward: ArrayLike,
    value: ArrayLike,
    next_value: ArrayLike,
    terminated: ArrayLike,
    done: ArrayLike,
    gamma: float,
    lam: float,
) -> tuple[Array, Array]:
    """GAE over [N, T] arrays (time last), backwards in time.

    delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}      (A_T = 0)
    value_target = A + V
    """
    r, v, nv = arr(reward), arr(value), arr(next_value)
    term, dn = arr(terminated), arr(done)
    delta = r + gamma * (1.0 - term) * nv - v
    adv = np.zeros_like(delta)
    following = np.zeros(delta.shape[:-1])
    for t in reversed(range(delta.shape[-1])):
        following = delta[..., t] + gamma * lam * (1.0 - dn[..., t]) * following
        adv[..., t] = following
    return adv, adv + v


def td_error(reward: ArrayLike, value: ArrayLike, next_value: ArrayLike, terminated: ArrayLike, gamma: float):
    """delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t): GAE with lambda = 0."""
    return arr(reward) + gamma * (1.0 - arr(terminated)) * arr(next_value) - arr(value)


def return_minus_value(
    reward: Sequence[float],
    value: Sequence[float],
    last_next_value: float,
    terminated_at_end: bool,
    gamma: float,
) -> Array:
    """GAE with lambda = 1 on one episode segment: G_t - V(s_t), summed forwards.

    G_t = sum_k gamma^k r_{t+k} + gamma^(T-t) V(s_T), the bootstrap dropped if it terminated.
    """
    T = len(reward)
    tail = 0.0 if terminated_at_end else last_next_value
    g = [sum(gamma**k * reward[t + k] for k in range(T - t)) + gamma ** (T - t) * tail for t in range(T)]
    return arr(g) - arr(value)


@dataclass
class Experience:
    """The tutorial's per-step record (only the fields compute_gae reads)."""

    reward: float
    done: bool
    value: float


def tutorial_compute_gae(
    experiences: list[Experience], gamma: float = 0.99, lam: float = 0.95
) -> list[float]:
    """The reference tutorial's compute_gae, line for line (done = terminated or truncated)."""
    advantages: list[float] = []
    gae_ = 0.0
    for i in reversed(range(len(experiences))):
        exp = experiences[i]
        if exp.done:  # noqa: SIM108 (kept as the tutorial wrote it)
            next_value = 0.0
        else:
            next_value = experiences[i + 1].value if i + 1 < len(experiences) else 0.0
        delta = exp.reward + gamma * next_value - exp.value
        gae_ = delta + gamma * lam * (0 if exp.done else gae_)
        advantages.insert(0, gae_)
    return advantages
