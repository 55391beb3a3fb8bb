"""Rollouts: sample completions, then lay them out as a [B, T] TensorDict of token steps.

Step t of row b is one RL transition: state ``sequence[:position]``, action = the token at
``position``, ``action_log_prob`` under the sampling policy, and in ``next`` the state one
token longer. The episode (one completion) ends at its last real token — EOS, or the
length limit — which is ``terminated``; later positions are padding, marked invalid in
``("collector", "mask")`` (TorchRL's validity key, which `PPOUpdate` drops). Rewards:

    r_t = -beta * KL_t                       on every real token
        + score(prompt, completion)          added on the last real token

with KL_t a per-token estimate of KL(pi || pi_ref) from the sampled token (`kl_estimate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import ProbabilisticActor

from ppo_torchrl.rlhf.task import Example, rule_score
from ppo_torchrl.rlhf.text import prompt_ids, read_completion


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


@dataclass
class Rollout:
    examples: list[Example]
    batch: TensorDict  # [B, T] token steps
    lengths: torch.Tensor  # [B] generated tokens per completion, EOS included
    completions: list[tuple[tuple[int, ...], bool]]  # (digits written, stopped) per row

    @property
    def sequence_lengths(self) -> torch.Tensor:
        """[B] prompt plus completion tokens of each row: where its real tokens end."""
        return self.batch["position"][:, 0] + self.lengths

    def true_scores(self) -> torch.Tensor:
        return torch.tensor([rule_score(e, *c) for e, c in zip(self.examples, self.completions, strict=True)])

    def texts(self, tokenizer) -> list[str]:
        rows = []
        for b, example in enumerate(self.examples):
            start = int(self.batch["position"][b, 0])
            ids = self.batch["sequence"][b, 0, start : start + int(self.lengths[b])].tolist()
            score = rule_score(example, *self.completions[b])
            rows.append(f"{example.prompt} {tokenizer.decode(ids)}    (score {score:.2f})")
        return rows


@torch.no_grad()
def sample_completions(
    actor: ProbabilisticActor, tokenizer, examples: list[Example], max_new_tokens: int, greedy: bool = False
) -> Rollout:
    """Sample (or, ``greedy``, decode) up to ``max_new_tokens`` per prompt with ``actor``, on
    the device of its weights. The pad id only fills unused cells: what is real is tracked by
    lengths, so a tokenizer whose pad is its EOS works alike."""
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    device = next(actor.parameters()).device
    prompts = [prompt_ids(tokenizer, e) for e in examples]
    starts = torch.tensor([len(p) for p in prompts], device=device)
    n = len(prompts)
    cells = torch.full((n, int(starts.max()) + max_new_tokens), pad_id, dtype=torch.long)
    for b, p in enumerate(prompts):
        cells[b, : len(p)] = torch.tensor(p)
    sequence = cells.to(device)
    rows = torch.arange(n, device=device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    mode = ExplorationType.DETERMINISTIC if greedy else ExplorationType.RANDOM
    with set_exploration_type(mode):
        for t in range(max_new_tokens):
            step = TensorDict({"sequence": sequence, "position": starts + t, "seq_id": rows}, [n])
            token = torch.where(alive, actor(step)["action"], pad_id)
            sequence[rows, starts + t] = token
            lengths += alive.long()
            alive &= token != eos_id
            if not alive.any():
                break
    steps = int(lengths.max())
    batch = token_steps(sequence, starts, lengths, steps)
    # Log-probs of the finished sequences in one pass: exactly what the loss will recompute.
    with set_exploration_type(ExplorationType.RANDOM):
        batch["action_log_prob"] = actor.get_dist(batch).log_prob(batch["action"])
    on_cpu, first, count = sequence.cpu(), starts.tolist(), lengths.tolist()
    completions = [
        read_completion(tokenizer, on_cpu[b, first[b] : first[b] + count[b]].tolist()) for b in range(n)
    ]
    return Rollout(examples, batch, lengths, completions)


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
