"""The PPO update for many independent learners in one batch: dimension 0 is the learner.

Same algorithm as update.py's `PPOUpdate`, same core modules: the advantages come from
`make_advantage` and the loss from `make_loss(..., independent=True)` (ClipPPOLoss with
advantages standardised per learner and per-sample loss terms). What must not leak from one
learner to another is kept per learner here, each with the single-learner formula:

- the loss: each learner's mean over its own minibatch; their SUM is differentiated, so
  each learner's gradient is exactly its own loss's;
- minibatch order: each learner's own permutation, from its own random stream;
- gradient-norm clipping: per learner, as ``clip_grad_norm_`` over its actor and critic;
- Adam: per-learner moments and step counts (`MaskedAdam`);
- target_kl: each learner's k3 estimate, and a learner that stops takes no further steps on
  this batch (its weights, moments and step count stay) while the others go on.

``specs/test_independent_seeds.py`` holds learner k of a batched call equal to a single
`PPOUpdate` on learner k's data, and shows the check fails when any of these is pooled.
The networks must keep each learner's weights in rows of [learners, P] parameters (see
models/stacked.py), which is what makes per-learner norms and Adam a few tensor ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from torch import nn

from ppo_torchrl.core.streams import Streams
from ppo_torchrl.core.update import NonFiniteError


class MaskedAdam:
    """Adam (torch's formula, eps inside the bias-corrected denominator) over parameters of
    shape [learners, ...], with per-learner step counts; ``step(active)`` leaves the weights
    and moments of learners whose ``active`` is False untouched."""

    def __init__(
        self,
        params: list[nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-5,
    ):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(params[0].shape[0], device=params[0].device)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.steps += active
        t = self.steps.clamp(min=1)
        step_size = (self.lr / (1 - b1**t)).view(-1, 1)
        bias2_sqrt = (1 - b2**t).sqrt().view(-1, 1)
        keep = active.view(-1, 1).bool()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            g = p.grad.flatten(1)
            m_new = m.flatten(1).lerp(g, 1 - b1)
            v_new = v.flatten(1) * b2 + (1 - b2) * g * g
            update = step_size * m_new / (v_new.sqrt() / bias2_sqrt + self.eps)
            m.copy_(torch.where(keep, m_new, m.flatten(1)).view_as(m))
            v.copy_(torch.where(keep, v_new, v.flatten(1)).view_as(v))
            p.sub_(torch.where(keep, update, 0.0).view_as(p))

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps, "lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        for mine, theirs in ((self.exp_avg, state["exp_avg"]), (self.exp_avg_sq, state["exp_avg_sq"])):
            for m, t in zip(mine, theirs, strict=True):
                m.copy_(t)
        self.steps.copy_(state["steps"])
        self.lr = state["lr"]


def clip_per_learner(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale each learner's gradient (its rows of every parameter) to norm <= ``max_norm``,
    as ``clip_grad_norm_`` does for one network; returns the norms before clipping [L]."""
    norms = torch.stack([p.grad.flatten(1).square().sum(1) for p in params]).sum(0).sqrt()
    if max_norm > 0:
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for p in params:
            p.grad.mul_(scale.view(-1, *([1] * (p.dim() - 1))))
    return norms


@dataclass
class IndependentUpdate:
    """One PPO update of every learner over its own batch [learners, samples]."""

    loss_module: nn.Module  # make_loss(..., independent=True)
    optimizer: MaskedAdam
    advantage_module: nn.Module | None
    epochs: int
    minibatch_size: int
    max_grad_norm: float
    streams: Streams  # minibatch order, one stream per learner
    target_kl: float | None = None

    def __call__(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """``batch`` is [learners, *steps] (e.g. [seeds, envs, time]); returns per-learner
        metrics ([learners] tensors) averaged over the steps each learner took."""
        if self.advantage_module is not None:
            with torch.no_grad():
                self.advantage_module(batch)
        keys = self.loss_module.tensor_keys
        inputs = [k for k in self.loss_module.in_keys if not (isinstance(k, tuple) and k[0] == "next")]
        steps = batch.select(*inputs, keys.advantage, keys.value_target, strict=False)
        steps = steps.reshape(batch.shape[0], -1)
        learners, n = steps.shape
        if n < self.minibatch_size:
            raise ValueError(
                f"batch has {n} steps per learner, fewer than one minibatch ({self.minibatch_size})"
            )
        active = torch.ones(learners, device=steps.device)
        taken = torch.zeros(learners, device=steps.device)
        sums: dict[str, torch.Tensor] = {}
        first = True
        epochs_run = torch.zeros(learners, device=steps.device)
        rows = torch.arange(learners, device=steps.device).unsqueeze(1)
        for _ in range(self.epochs):
            epochs_run += active  # an epoch a learner starts counts, as in PPOUpdate
            order = self.streams.permutations(n).to(steps.device)[
                :, : n // self.minibatch_size * self.minibatch_size
            ]
            for index in order.split(self.minibatch_size, dim=1):
                minibatch = steps[rows, index]
                out = self._step(minibatch, active, may_stop=not first)
                first = False
                for key, value in out.items():
                    sums[key] = sums.get(key, 0) + value * active
                taken += active
                if not bool(active.any()):
                    break
            if not bool(active.any()):
                break
        metrics = {k: v / taken.clamp(min=1) for k, v in sums.items()}
        advantage = steps[keys.advantage].flatten(1)
        metrics.update(
            advantage_mean=advantage.mean(1),
            advantage_std=advantage.std(1),
            gradient_steps=taken,
            epochs_run=epochs_run,
        )
        return metrics

    def _log_prob(self, minibatch: TensorDictBase) -> torch.Tensor:
        """The current policy's log-probability of the minibatch's actions: from the logits
        the loss just computed where the policy network kept them (models/stacked.py,
        ``keep_output``), which saves a second actor forward, a fifth of a step."""
        actor = self.loss_module.actor_network
        # Any policy works (it falls back to a second forward); only a network that keeps
        # its output, and outputs logits, saves it.
        net = getattr(actor.module[0], "module", None)
        logits = getattr(net, "last_output", None)
        if logits is None:
            return actor.get_dist(minibatch).log_prob(minibatch["action"])
        log_p = torch.log_softmax(logits.detach(), -1)
        return log_p.gather(-1, minibatch["action"].unsqueeze(-1)).squeeze(-1)

    def _step(
        self, minibatch: TensorDictBase, active: torch.Tensor, may_stop: bool
    ) -> dict[str, torch.Tensor]:
        """One gradient step for every still-active learner; ``active`` is updated in place
        where a learner's k3 KL estimate passes 1.5 x target_kl (that learner takes no step)."""
        out = self.loss_module(minibatch)
        per_learner = {k: v.flatten(1).mean(1) for k, v in out.items() if k.startswith("loss_")}
        loss = sum(per_learner.values())
        with torch.no_grad():
            # k3 = mean(r - 1 - log r) per learner, as update.py's single-learner rule
            # (ClipPPOLoss's own ratio diagnostics are pooled over the batch).
            log_ratio = self._log_prob(minibatch) - minibatch["action_log_prob"]
            kl_k3 = (log_ratio.exp() - 1 - log_ratio).flatten(1).mean(1)
        if may_stop and self.target_kl is not None:
            active.mul_((kl_k3 <= 1.5 * self.target_kl).to(active.dtype))
        params = self.optimizer.params
        for p in params:
            p.grad = None
        loss.sum().backward()
        grad_norm = clip_per_learner(params, self.max_grad_norm)
        bad = ~torch.isfinite(grad_norm) & active.bool()
        if bool(bad.any()):  # never let a non-finite step reach the weights (as PPOUpdate)
            raise NonFiniteError("grad_norm", float(grad_norm[bad][0]))
        self.optimizer.step(active)
        return {
            **{k: v.detach() for k, v in per_learner.items()},
            "loss_total": loss.detach(),
            "kl_k3": kl_k3,
            "grad_norm": grad_norm,
        }
