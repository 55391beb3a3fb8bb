"""PPO's update as pure tensor functions over stacked learners: what torch.compile turns into
one graph per minibatch step, for one seed or a thousand.

The same algorithm as `PPOUpdate` over TorchRL's `GAE` and `ClipPPOLoss` (update.py,
advantage.py, loss.py), written as functions of tensors so that nothing in the hot loop is a
Python object walk: dimension 0 of every tensor is the learner (a seed), and everything that
makes learners independent runs stays per learner — advantage standardisation, loss means,
gradient-norm clipping, Adam's moments and step counts, and target_kl's early stop (a
learner past it takes no more steps on this batch; its weights and moments stay). With one
learner it is exactly the single-seed update. ``specs/test_independent_seeds.py`` holds learner
k's loss terms, gradient and weights after three Adam steps equal to `make_loss` and
`make_update` on learner k's data, and fails when normalisation or clipping is pooled.

Each formula is ClipPPOLoss's (TorchRL 0.14.1), as specs/README.md states them: the ratio
clipped on the log scale, ``(A - mean) / max(std, 1e-6)`` with the unbiased std, the "l2"
value loss without the 1/2, the critic clipped around the old values when asked, the
Categorical's entropy; Adam as torch's, eps 1e-5.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ppo_torchrl.core.params import LossParams, UpdateParams

# (learner-stacked parameters, observations [L, B, ...]) -> logits [L, B, A] / values [L, B]
Network = Callable[[Tensor, Tensor], Tensor]
Metrics = dict[str, Tensor]  # per learner [L]


class Learners(NamedTuple):
    """What an update step changes: every learner's parameters and Adam state."""

    params: tuple[Tensor, ...]  # (actor [L, Pa], critic [L, Pc])
    exp_avg: tuple[Tensor, ...]
    exp_avg_sq: tuple[Tensor, ...]
    steps: Tensor  # [L] Adam steps taken

    @classmethod
    def start(cls, params: tuple[Tensor, ...]) -> Learners:
        zeros = tuple(torch.zeros_like(p) for p in params)
        return cls(
            params, zeros, tuple(torch.zeros_like(p) for p in params), params[0].new_zeros(len(params[0]))
        )


class Minibatch(NamedTuple):
    observation: Tensor  # [L, B, ...]
    action: Tensor  # [L, B] int64
    old_log_prob: Tensor  # [L, B]
    advantage: Tensor  # [L, B]
    value_target: Tensor  # [L, B]
    old_value: Tensor  # [L, B] (read only with clip_value)


def gae(
    value: Tensor,
    next_value: Tensor,
    reward: Tensor,
    terminated: Tensor,
    done: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Advantages and value targets over the last dimension (time), as TorchRL's GAE with
    ``vectorized=False``: delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t),
    A_t = delta_t + gamma lam (1 - done_t) A_{t+1}, A after the last step 0."""
    delta = reward + gamma * (~terminated) * next_value - value
    carry = gamma * lam * (~done)
    steps = []
    last = torch.zeros_like(delta[..., -1])
    for t in range(delta.shape[-1] - 1, -1, -1):
        last = delta[..., t] + carry[..., t] * last
        steps.append(last)
    advantage = torch.stack(steps[::-1], -1)
    return advantage, advantage + value


def _distance(target: Tensor, value: Tensor, kind: str) -> Tensor:
    if kind == "l2":
        return (target - value).square()
    if kind == "l1":
        return (target - value).abs()
    return torch.nn.functional.smooth_l1_loss(value, target, reduction="none")


def loss_terms(
    params: tuple[Tensor, ...], batch: Minibatch, policy: Network, critic: Network | None, p: LossParams
) -> tuple[Tensor, dict[str, Tensor]]:
    """The summed loss over learners (each learner's own means: its gradient is its own loss's)
    and, per learner [L], the ``loss_*`` terms and ClipPPOLoss's diagnostics."""
    log_all = torch.log_softmax(policy(params[0], batch.observation), -1)
    log_prob = log_all.gather(-1, batch.action.unsqueeze(-1)).squeeze(-1)
    advantage = batch.advantage
    if p.normalize_advantage and advantage.shape[1] > 1:
        mean, std = advantage.mean(1, keepdim=True), advantage.std(1, keepdim=True)
        advantage = (advantage - mean) / std.clamp_min(1e-6)
    log_weight = log_prob - batch.old_log_prob
    upper = p.clip_epsilon if p.clip_epsilon_high is None else p.clip_epsilon_high  # as ClipPPOLoss's tuple
    low, high = math.log1p(-p.clip_epsilon), math.log1p(upper)
    clipped = log_weight.clamp(low, high)
    gain = torch.minimum(log_weight.exp() * advantage, clipped.exp() * advantage)
    entropy = -(log_all.exp() * log_all).sum(-1)
    terms = {"loss_objective": -gain.mean(1), "loss_entropy": -p.entropy_coef * entropy.mean(1)}
    if critic is not None:
        value = critic(params[1], batch.observation)
        loss_value = _distance(batch.value_target, value, p.critic_loss)
        if p.clip_value:
            near = batch.old_value + (value - batch.old_value).clamp(-p.clip_epsilon, p.clip_epsilon)
            loss_value = torch.maximum(loss_value, _distance(batch.value_target, near, p.critic_loss))
        terms["loss_critic"] = p.critic_coef * loss_value.mean(1)
    with torch.no_grad():
        ratio = log_weight.exp()
        diagnostics = {
            "entropy": entropy.mean(1),
            "clip_fraction": (clipped != log_weight).float().mean(1),
            "kl_approx": -log_weight.mean(1),  # k1 = mean(log pi_old - log pi)
            "kl_k3": (ratio - 1 - log_weight).mean(1),  # what target_kl watches (update.py)
            "mean_ratio": ratio.mean(1),
            "max_ratio": ratio.amax(1),
            # the effective sample size of the importance weights, per sample (ClipPPOLoss's)
            "ESS": (2 * log_weight.logsumexp(1) - (2 * log_weight).logsumexp(1)).exp() / log_weight.shape[1],
        }
        if critic is not None:  # 1 - Var(target - V) / Var(target), population variances
            residual = (batch.value_target - value).var(1, correction=0)
            total_var = batch.value_target.var(1, correction=0)
            diagnostics["explained_variance"] = 1 - residual / (total_var + torch.finfo(value.dtype).eps)
    total = sum(terms.values())
    return total.sum(), {**terms, "loss_total": total.detach(), **diagnostics}


def clip_per_learner(grads: tuple[Tensor, ...], max_norm: float) -> tuple[tuple[Tensor, ...], Tensor]:
    """Each learner's gradient (its rows of every parameter) scaled to norm <= ``max_norm``, as
    ``clip_grad_norm_`` does for one network (0: measure only); the norms before clipping [L]."""
    norms = torch.stack([g.flatten(1).square().sum(1) for g in grads]).sum(0).sqrt()
    if max_norm <= 0:
        return grads, norms
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    return tuple(g * scale.view(-1, *([1] * (g.dim() - 1))) for g in grads), norms


def adam(
    state: Learners,
    grads: tuple[Tensor, ...],
    lr: Tensor,
    active: Tensor,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-5,
) -> Learners:
    """torch's Adam step (eps outside the bias-corrected root) for the ``active`` learners;
    the others keep their weights, moments and step count."""
    b1, b2 = betas
    steps = state.steps + active
    t = steps.clamp(min=1)
    keep = active.bool()
    out: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    for p, m, v, g in zip(state.params, state.exp_avg, state.exp_avg_sq, grads, strict=True):
        shape = (-1, *([1] * (p.dim() - 1)))
        m_new = m.lerp(g, 1 - b1)
        v_new = v * b2 + (1 - b2) * g * g
        step_size = (lr / (1 - b1**t)).view(shape)
        denom = v_new.sqrt() / (1 - b2**t).sqrt().view(shape) + eps
        k = keep.view(shape)
        out[0].append(torch.where(k, p - step_size * m_new / denom, p))
        out[1].append(torch.where(k, m_new, m))
        out[2].append(torch.where(k, v_new, v))
    return Learners(tuple(out[0]), tuple(out[1]), tuple(out[2]), steps)


def make_step(
    policy: Network, critic: Network | None, loss: LossParams, update: UpdateParams, compiled: bool = True
) -> Callable[[Learners, Minibatch, Tensor, Tensor, Tensor], tuple[Learners, Tensor, dict[str, Tensor]]]:
    """``step(learners, minibatch, lr, active, may_stop) -> (learners, active, metrics)``: one
    gradient step of every active learner. ``may_stop`` (a 0-d bool tensor, False for an
    update's first step) lets target_kl stop a learner whose k3 estimate passes 1.5 x
    target_kl: it takes no step now nor later in this update. Tensors in, tensors out, no
    Python branch on their values: torch.compile makes it one graph.

    ``compiled``: the gradient by ``torch.func.grad``, which torch.compile traces into the
    graph; else by ``torch.autograd.grad``, the same numbers (bit for bit, measured) in 1.8 ms
    instead of 2.9 ms a CartPole step when run eagerly (functorch's wrappers cost per op)."""
    if compiled:
        grad = torch.func.grad(
            lambda params, batch: loss_terms(params, batch, policy, critic, loss), has_aux=True
        )
    else:

        def grad(params: tuple[Tensor, ...], batch: Minibatch) -> tuple[tuple[Tensor, ...], Metrics]:
            params = tuple(p.detach().requires_grad_() for p in params)
            with torch.enable_grad():
                total, metrics = loss_terms(params, batch, policy, critic, loss)
                grads = torch.autograd.grad(total, params)
            return grads, {k: v.detach() for k, v in metrics.items()}

    def step(
        learners: Learners, batch: Minibatch, lr: Tensor, active: Tensor, may_stop: Tensor
    ) -> tuple[Learners, Tensor, dict[str, Tensor]]:
        grads, metrics = grad(learners.params, batch)
        if update.target_kl is not None:
            over = metrics["kl_k3"] > 1.5 * update.target_kl
            active = active * ~(over & may_stop)
        grads, norms = clip_per_learner(grads, update.max_grad_norm)
        # A non-finite gradient never reaches the weights: that learner does not step, and the
        # caller, seeing ``nonfinite``, stops training (PPOUpdate raises at once instead).
        finite = torch.isfinite(norms)
        metrics["grad_norm"] = norms
        metrics["nonfinite"] = (~finite & active.bool()).float()
        return adam(learners, grads, lr, active * finite), active, metrics

    return step
