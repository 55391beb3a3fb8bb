"""Rollouts of the toy pipeline: sample completions token by token with the policy module,
then lay them out as the [B, T] TensorDict of token steps the core reads (rlhf/tokens.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import ProbabilisticActor

from ppo_torchrl.rlhf.tokens import token_steps
from ppo_torchrl.rlhf.toy.task import Example, rule_score
from ppo_torchrl.rlhf.toy.text import prompt_ids, read_completion


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
