"""Token-level RL on a language model, as the PPO core sees it: both RLHF pipelines use this.

A [B, T] TensorDict of token steps: step t of row b is one RL transition — state
``sequence[:position]``, action the token at ``position``, ``action_log_prob`` under the
sampling policy, and in ``next`` the state one token longer. The episode (one completion)
ends at its last real token (EOS, or the length limit), which is ``terminated``; later
positions are padding, marked invalid in ``("collector", "mask")`` (TorchRL's validity key,
which `PPOUpdate` drops). Rewards, with KL_t a per-token estimate of KL(pi || pi_ref):

    r_t = -beta * KL_t                       on every real token
        + score(prompt, completion)          added on the last real token

GRPO instead gives every token of completion i the group-normalised score as its advantage,
and may put beta * k3-KL in the loss (`RefKLPenalty`), drop groups that all scored alike
(`informative_groups`); beta may follow a KL target (`AdaptiveKL`). specs/hand_rlhf.py has
each by hand.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

# The observation of a token step, as TensorDict keys.
STEP_KEYS = ["sequence", "position", "seq_id"]
REF_LOG_PROB = "ref_log_prob"


def kl_estimate(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimators of KL(pi || pi_ref) from a token sampled from pi (Schulman, 2020):

    k1 = log pi - log pi_ref                 (unbiased, can be negative)
    k2 = (log pi - log pi_ref)^2 / 2         (biased, low variance)
    k3 = (r - 1) - log r, r = pi_ref / pi    (unbiased, never negative)
    """
    log_ratio = log_prob - ref_log_prob
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return log_ratio.square() / 2
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}")


def token_steps(
    sequence: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor, steps: int
) -> TensorDict:
    """The [B, T] step layout of finished sequences (T = ``steps``)."""
    n, device = len(sequence), sequence.device
    t = torch.arange(steps, device=device).expand(n, steps)
    position = starts[:, None] + t
    valid = t < lengths[:, None]
    last = t == (lengths[:, None] - 1)
    seq = sequence[:, None, :].expand(n, steps, sequence.shape[-1])
    seq_id = torch.arange(n, device=device)[:, None].expand(n, steps)
    action = sequence.gather(1, position.clamp(max=sequence.shape[-1] - 1))
    ended = (last | ~valid)[..., None]
    return TensorDict(
        {
            "sequence": seq,
            "position": position,
            "seq_id": seq_id,
            "action": action,
            ("collector", "mask"): valid,
            "next": {
                "sequence": seq,
                "position": position + 1,
                "seq_id": seq_id,
                "reward": torch.zeros(n, steps, 1, device=device),
                "done": ended,
                "terminated": ended.clone(),
                "truncated": torch.zeros_like(ended),
            },
        },
        batch_size=[n, steps],
        device=device,
    )


def shape_rewards(
    batch: TensorDict,
    lengths: torch.Tensor,
    scores: torch.Tensor,
    ref_log_prob: torch.Tensor,
    beta: float,
    kind: str,
) -> torch.Tensor:
    """Write r_t = -beta * KL_t (+ score on the last real token); return the per-token KL."""
    valid = batch["collector", "mask"]
    kl = torch.where(valid, kl_estimate(batch["action_log_prob"], ref_log_prob, kind), 0.0)
    reward = -beta * kl
    rows = torch.arange(len(lengths), device=lengths.device)
    reward[rows, lengths - 1] += scores
    batch["next", "reward"] = reward[..., None]
    return kl


def group_advantages(scores: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO: A_i = (s_i - mean(group)) / (std(group) + eps), groups of consecutive rows;
    std is the unbiased sample std (as in TRL's GRPOTrainer)."""
    if len(scores) % group_size:
        raise ValueError(f"{len(scores)} scores do not split into groups of {group_size}")
    groups = scores.reshape(-1, group_size)
    normalized = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + eps)
    return normalized.reshape(-1)


def distinct_sequences(
    sequence: torch.Tensor, position: torch.Tensor, seq_id: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distinct sequences among a flat batch of steps, each step's row in them, and how
    far into each row any of its steps reads (its furthest ``position``)."""
    ids, inverse = torch.unique(seq_id, return_inverse=True)
    steps = torch.arange(len(seq_id), device=seq_id.device)
    first = torch.full((len(ids),), len(seq_id), dtype=torch.long, device=seq_id.device)
    first = first.scatter_reduce(0, inverse, steps, reduce="amin")
    reach = torch.zeros(len(ids), dtype=torch.long, device=seq_id.device)
    reach = reach.scatter_reduce(0, inverse, position, reduce="amax")
    return sequence[first], inverse, reach


class RefKLPenalty(nn.Module):
    """GRPO's loss: the clipped surrogate plus beta * mean k3-KL(pi || pi_ref) over tokens,
    reported as ``loss_kl_ref`` so that `PPOUpdate` adds it to the total like any loss term."""

    def __init__(self, clip_loss: nn.Module, actor: nn.Module, beta: float) -> None:
        super().__init__()
        self.clip_loss, self.actor, self.beta = clip_loss, actor, beta
        self.tensor_keys = clip_loss.tensor_keys
        self.in_keys = [*clip_loss.in_keys, REF_LOG_PROB]

    def forward(self, steps: TensorDictBase) -> TensorDictBase:
        out = self.clip_loss(steps)
        log_prob = self.actor.get_dist(steps).log_prob(steps["action"])
        kl = kl_estimate(log_prob, steps[REF_LOG_PROB], "k3")
        out["loss_kl_ref"] = self.beta * kl.mean()
        out["kl_ref"] = kl.detach().mean()
        return out


def informative_groups(scores: torch.Tensor, group_size: int) -> list[int]:
    """DAPO's dynamic sampling: the rows of the GRPO groups (consecutive ``group_size`` rows)
    whose scores are not all equal. A group that all scored alike has zero advantage for
    every completion: it moves nothing but still costs an update's compute, and it shrinks
    the effective batch."""
    groups = scores.reshape(-1, group_size)
    varied = (groups != groups[:, :1]).any(1)
    return [g * group_size + i for g in varied.nonzero()[:, 0].tolist() for i in range(group_size)]


class AdaptiveKL:
    """The KL coefficient beta, fixed or adaptive (Ziegler et al. 2019, section 2.2; TRL's and
    OpenAI's lm-human-preferences' controller). After an update whose batch of ``n``
    responses had mean KL(pi || pi_ref) ``kl`` (nats per response):

        e = clip(kl / target - 1, -0.2, 0.2)
        beta <- beta * (1 + e * n / horizon)

    TorchRL's ``AdaptiveKLController`` computes the same, but from the KL penalty rewards
    (-beta * KL) rather than the KL; this one takes the KL the run already reports."""

    def __init__(self, beta: float, target: float | None, horizon: int) -> None:
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, kl: float, n: int) -> float:
        if self.target is not None:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.beta *= 1.0 + error * n / self.horizon
        return self.beta
