"""The independent side, continued: value loss, networks, gradient clipping, Adam, and a
whole PPO update, in plain NumPy (no torch, TorchRL, tensordict or ppo_torchrl)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from specs import hand
from specs.hand import Array, arr


def distance(target: ArrayLike, prediction: ArrayLike, kind: str) -> Array:
    """'l2': e^2 (no 1/2); 'l1': |e|; 'smooth_l1' (Huber, beta=1): e^2/2 if |e| < 1 else |e| - 1/2."""
    e = arr(target) - arr(prediction)
    if kind == "l2":
        return e**2
    if kind == "l1":
        return np.abs(e)
    if kind == "smooth_l1":
        return np.where(np.abs(e) < 1.0, 0.5 * e**2, np.abs(e) - 0.5)
    raise ValueError(kind)


def value_loss(
    target: ArrayLike,
    value: ArrayLike,
    kind: str,
    coef: float,
    old_value: ArrayLike | None = None,
    clip: float | None = None,
) -> tuple[float, float | None]:
    """coef * mean(d(target, V)); clipped: coef * mean(max(d(target, V), d(target, V_clip))).

    V_clip = V_old + clip(V - V_old, -clip, clip). Also returns the fraction of clipped V.
    """
    loss = distance(target, value, kind)
    fraction = None
    if clip is not None:
        step = arr(value) - arr(old_value)
        clipped = np.clip(step, -clip, clip)
        loss = np.maximum(loss, distance(target, arr(old_value) + clipped, kind))
        fraction = float(np.mean(clipped != step))
    return coef * float(loss.mean()), fraction


def value_loss_gradient(
    target: ArrayLike,
    value: ArrayLike,
    kind: str,
    coef: float,
    old_value: ArrayLike | None = None,
    clip: float | None = None,
) -> Array:
    """d value_loss / d V(s_i), per sample (the loss being a mean over n samples).

    e = target - V:  d(e^2)/dV = -2e,  d|e|/dV = -sign(e),  d huber/dV = -clip(e, -1, 1).
    Clipped loss: a sample whose clipped prediction is constant (|V - V_old| > clip) and
    whose clipped distance is the larger one has no gradient.
    """
    t, v = arr(target), arr(value)
    e = t - v
    slope = {"l2": -2 * e, "l1": -np.sign(e), "smooth_l1": -np.clip(e, -1.0, 1.0)}[kind]
    if clip is not None:
        step = v - arr(old_value)
        frozen = (np.abs(step) > clip) & (
            distance(t, arr(old_value) + np.clip(step, -clip, clip), kind) > distance(t, v, kind)
        )
        slope = np.where(frozen, 0.0, slope)
    return coef * slope / len(e)


def mlp(
    weights: Sequence[ArrayLike], biases: Sequence[ArrayLike], x: ArrayLike, activation: str = "tanh"
) -> Array:
    """Linear -> activation -> ... -> Linear, with PyTorch's layout (y = x W^T + b)."""
    act = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}[activation]
    h = arr(x)
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ arr(w).T + arr(b)
        if i < len(weights) - 1:
            h = act(h)
    return h


def clip_by_global_norm(grads: Sequence[ArrayLike], max_norm: float) -> tuple[list[Array], float]:
    """g <- g * min(1, max_norm / (||g||_2 + 1e-6)), the norm taken over all parameters together."""
    gs = [arr(g) for g in grads]
    norm = math.sqrt(sum(float((g**2).sum()) for g in gs))
    if max_norm <= 0:
        return gs, norm
    scale = min(1.0, max_norm / (norm + 1e-6))
    return [g * scale for g in gs], norm


@dataclass
class Adam:
    """Adam (Kingma & Ba), one parameter array: the bias-corrected moment update.

    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    On the first step this is p - lr * g / (|g| + eps): about lr * sign(g), whatever g's scale.
    """

    lr: float
    eps: float = 1e-5
    b1: float = 0.9
    b2: float = 0.999
    t: int = 0
    m: Array | None = None
    v: Array | None = None

    def step(self, p: ArrayLike, g: ArrayLike) -> Array:
        g = arr(g)
        self.t += 1
        self.m = (1 - self.b1) * g if self.m is None else self.b1 * self.m + (1 - self.b1) * g
        self.v = (1 - self.b2) * g**2 if self.v is None else self.b2 * self.v + (1 - self.b2) * g**2
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        return arr(p) - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


@dataclass
class Samples:
    """A flat batch through tables: sample i is in state ``states[i]``, took ``actions[i]``."""

    states: np.ndarray
    actions: np.ndarray
    logp_old: np.ndarray
    advantage: np.ndarray
    value_target: np.ndarray
    old_value: np.ndarray


@dataclass
class Step:
    loss_total: float
    grad_norm: float


def ppo_update(
    logits: ArrayLike,
    values: ArrayLike,
    data: Samples,
    minibatches: Sequence[np.ndarray],
    *,
    eps: float,
    entropy_coef: float,
    critic_coef: float,
    critic_loss: str,
    clip_value: float | None,
    normalize: bool,
    max_grad_norm: float,
    lr: float,
) -> tuple[Array, Array, list[Step]]:
    """PPO on a logits table and a value table, one minibatch after the other.

    Per minibatch: A_hat = standardize(A) (n > 1), total = clipped surrogate + value loss
    - entropy_coef * mean H; its gradient in closed form (summed into each sample's state
    row); clip by the global norm; one Adam step per table.
    """
    theta, v = arr(logits).copy(), arr(values).copy()
    adam_theta, adam_v = Adam(lr), Adam(lr)
    steps: list[Step] = []
    for idx in minibatches:
        s, a = data.states[idx], data.actions[idx]
        adv = data.advantage[idx]
        if normalize and len(idx) > 1:
            adv = hand.standardize(adv)
        r = hand.ratio(hand.log_softmax(theta[s])[np.arange(len(idx)), a], data.logp_old[idx])
        old = data.old_value[idx] if clip_value is not None else None
        critic, _ = value_loss(data.value_target[idx], v[s], critic_loss, critic_coef, old, clip_value)
        total = (
            hand.clipped_surrogate_loss(r, adv, eps) + critic - entropy_coef * hand.entropy(theta[s]).mean()
        )

        g_theta, g_v = np.zeros_like(theta), np.zeros_like(v)
        np.add.at(g_theta, s, hand.surrogate_logit_gradient(theta[s], a, r, adv, eps))
        np.add.at(g_theta, s, -entropy_coef / len(idx) * hand.entropy_logit_gradient(theta[s]))
        g = value_loss_gradient(data.value_target[idx], v[s], critic_loss, critic_coef, old, clip_value)
        np.add.at(g_v, s, g)
        (g_theta, g_v), norm = clip_by_global_norm([g_theta, g_v], max_grad_norm)
        theta, v = adam_theta.step(theta, g_theta), adam_v.step(v, g_v)
        steps.append(Step(total, norm))
    return theta, v, steps
