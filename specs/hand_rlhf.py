"""The independent side for token-level RLHF: the formulas in plain Python/NumPy, float64.

Nothing here imports torch, TorchRL, tensordict or ppo_torchrl. A completion is a list of
real tokens; padding is what the hand side never looks at. Arrays are [B, T] (row = one
completion, column = one generated token), lengths[b] = real tokens of row b, EOS included.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from specs.hand import Array, arr

# --- per-token KL estimators of KL(pi || pi_ref), token sampled from pi ----------------------------


def kl_k1(logp: float, ref_logp: float) -> float:
    """k1 = log pi(a) - log pi_ref(a) = -log r, r = pi_ref(a) / pi(a)."""
    return logp - ref_logp


def kl_k2(logp: float, ref_logp: float) -> float:
    """k2 = (log r)^2 / 2."""
    return (logp - ref_logp) ** 2 / 2


def kl_k3(logp: float, ref_logp: float) -> float:
    """k3 = (r - 1) - log r, r = pi_ref(a) / pi(a)."""
    log_r = ref_logp - logp
    return math.exp(log_r) - 1 - log_r


KL = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_per_token(logp: ArrayLike, ref_logp: ArrayLike, kind: str) -> Array:
    """The estimator ``kind`` applied token by token."""
    lp, rp = arr(logp), arr(ref_logp)
    return arr([KL[kind](float(a), float(b)) for a, b in zip(lp.ravel(), rp.ravel(), strict=True)]).reshape(
        lp.shape
    )


def kl_exact(p: Sequence[float], q: Sequence[float]) -> float:
    """KL(p || q) = sum_a p(a) log(p(a) / q(a))."""
    return sum(pa * math.log(pa / qa) for pa, qa in zip(p, q, strict=True) if pa > 0)


def expected_under(p: Sequence[float], per_action: Sequence[float]) -> float:
    """E_{a ~ p}[f(a)] = sum_a p(a) f(a)."""
    return sum(pa * fa for pa, fa in zip(p, per_action, strict=True))


# --- the step layout of a finished completion ----------------------------------------------------


def token_layout(starts: Sequence[int], lengths: Sequence[int], steps: int) -> dict[str, np.ndarray]:
    """Step t of row b: position start_b + t (the token it writes), valid iff t < length_b,
    terminated = done iff t >= length_b - 1 (the last real token ends the episode; every pad
    is an ended one-step episode of its own), never truncated."""
    B = len(starts)
    layout = {
        "position": np.zeros((B, steps), int),
        "next_position": np.zeros((B, steps), int),
        "valid": np.zeros((B, steps), bool),
        "terminated": np.zeros((B, steps), bool),
    }
    for b in range(B):
        for t in range(steps):
            layout["position"][b, t] = starts[b] + t
            layout["next_position"][b, t] = starts[b] + t + 1
            layout["valid"][b, t] = t < lengths[b]
            layout["terminated"][b, t] = t >= lengths[b] - 1
    return layout


# --- reward shaping -------------------------------------------------------------------------------------


def shaped_rewards(
    logp: ArrayLike,
    ref_logp: ArrayLike,
    lengths: Sequence[int],
    scores: Sequence[float],
    beta: float,
    kind: str,
) -> tuple[Array, Array]:
    """(rewards, kl), both [B, T]:

    r_t = -beta * KL_t                   t < length - 1
    r_t = -beta * KL_t + score           t = length - 1 (the last real token)
    r_t = 0, KL_t = 0                    t >= length (padding)
    """
    lp, rp = arr(logp), arr(ref_logp)
    reward, kl = np.zeros(lp.shape), np.zeros(lp.shape)
    for b, n in enumerate(lengths):
        for t in range(n):
            kl[b, t] = KL[kind](float(lp[b, t]), float(rp[b, t]))
            reward[b, t] = -beta * kl[b, t]
        reward[b, n - 1] += scores[b]
    return reward, kl


# --- token-level GAE, gamma = 1, over the real tokens of one completion ----------------------------


def completion_gae(rewards: Sequence[float], values: Sequence[float], lam: float) -> tuple[Array, Array]:
    """GAE over one completion of n real tokens, gamma = 1, the last token terminal:

    delta_t = r_t + V_{t+1} - V_t        (t < n - 1)
    delta_t = r_t - V_t                  (t = n - 1: EOS / length limit, no bootstrap)
    A_t     = sum_{k=0}^{n-1-t} lam^k delta_{t+k}
    value_target = A + V

    Written as the explicit sum (not the backward recursion the module runs).
    """
    n = len(rewards)
    delta = [rewards[t] + (values[t + 1] if t + 1 < n else 0.0) - values[t] for t in range(n)]
    adv = [sum(lam**k * delta[t + k] for k in range(n - t)) for t in range(n)]
    return arr(adv), arr(adv) + arr(values)


def rewards_to_go_minus_value(rewards: Sequence[float], values: Sequence[float]) -> Array:
    """lam = 1: A_t = sum_{k >= t} r_k - V_t (the whole completion's remaining reward)."""
    return arr([sum(rewards[t:]) - values[t] for t in range(len(rewards))])


def token_gae(
    rewards: ArrayLike, values: ArrayLike, lengths: Sequence[int], lam: float
) -> tuple[list[Array], list[Array]]:
    """completion_gae row by row over the first lengths[b] tokens; padding never read."""
    r, v = arr(rewards), arr(values)
    advs, targets = [], []
    for b, n in enumerate(lengths):
        adv, target = completion_gae(list(r[b, :n]), list(v[b, :n]), lam)
        advs.append(adv)
        targets.append(target)
    return advs, targets


# --- GRPO -------------------------------------------------------------------------------------------------


def group_advantages(scores: Sequence[float], group_size: int, eps: float = 1e-4) -> Array:
    """A_i = (s_i - mean(group)) / (std(group) + eps), std the unbiased sample std
    (n - 1), groups = consecutive runs of ``group_size`` rows."""
    out = []
    for g in range(0, len(scores), group_size):
        group = [float(s) for s in scores[g : g + group_size]]
        m, sd = statistics.mean(group), statistics.stdev(group)
        out.extend((s - m) / (sd + eps) for s in group)
    return arr(out)


def informative_groups(scores: Sequence[float], group_size: int) -> list[int]:
    """DAPO's dynamic sampling: the row indices, in order, of the groups (consecutive runs of
    ``group_size`` rows) whose scores are not all equal (max > min). A group of equal scores
    has s_i = mean, so A_i = 0 / (0 + eps) = 0 for every row: it carries no signal."""
    rows: list[int] = []
    for g in range(0, len(scores), group_size):
        group = [float(s) for s in scores[g : g + group_size]]
        if max(group) > min(group):
            rows.extend(range(g, g + group_size))
    return rows


def broadcast_over_tokens(per_row: Sequence[float], lengths: Sequence[int], steps: int) -> Array:
    """Every real token of row b carries per_row[b]; padding carries 0."""
    out = np.zeros((len(lengths), steps))
    for b, n in enumerate(lengths):
        out[b, :n] = per_row[b]
    return out


# --- Bradley-Terry -------------------------------------------------------------------------------------


def softplus(x: float) -> float:
    """log(1 + e^x), without overflow."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def bradley_terry_loss(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """P(chosen > rejected) = sigmoid(r_c - r_r); loss = mean(-log sigmoid(d)) = mean(softplus(-d))."""
    d = [float(c) - float(r) for c, r in zip(chosen, rejected, strict=True)]
    return sum(softplus(-x) for x in d) / len(d)


def bradley_terry_grad(chosen: Sequence[float], rejected: Sequence[float]) -> tuple[Array, Array]:
    """dL/dr_c_i = -sigmoid(-d_i) / n = -(1 - P_i) / n, and dL/dr_r_i = +sigmoid(-d_i) / n."""
    d = [float(c) - float(r) for c, r in zip(chosen, rejected, strict=True)]
    g = arr([sigmoid(-x) / len(d) for x in d])
    return -g, g


# --- the adaptive KL coefficient (Ziegler et al. 2019, section 2.2) ---------------------------------


def adaptive_kl_step(beta: float, target: float | None, horizon: int, kl: float, n: int) -> float:
    """e = clip(kl / target - 1, -0.2, 0.2) and beta' = beta * (1 + e * n / horizon), kl the
    batch's mean KL per response, n its responses; target None: beta' = beta."""
    if target is None:
        return beta
    e = float(np.clip(kl / target - 1, -0.2, 0.2))
    return beta * (1 + e * n / horizon)


def adaptive_kl_path(
    beta: float, target: float | None, horizon: int, steps: Sequence[tuple[float, int]]
) -> list[float]:
    """beta after each (kl, n) of ``steps`` in turn: the product beta_0 * prod_t (1 + e_t n_t / H)."""
    out = []
    for kl, n in steps:
        beta = adaptive_kl_step(beta, target, horizon, kl, n)
        out.append(beta)
    return out
