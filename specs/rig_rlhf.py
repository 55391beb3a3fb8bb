"""The module side for token-level RLHF: batches laid out by the project's own `token_steps`,
and tiny modules with known outputs that read a token step's keys.

The objects under test are the project's (`token_steps`, `shape_rewards`, `kl_estimate`,
`group_advantages`, `make_advantage(cfg.params(GAEParams), ...)`, `make_loss(cfg.params(LossParams), ...)`,
`make_update(cfg.params(UpdateParams), ...)` with ``cfg`` an `RLHFConfig`, `RLStage`). What this
file adds are inputs a reader can follow: a critic and an actor whose outputs are tables
indexed by (``seq_id``, ``position``), the keys of a token step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import ProbabilisticActor

from ppo_torchrl.core.advantage import make_advantage
from ppo_torchrl.core.loss import make_loss
from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams
from ppo_torchrl.core.update import PPOUpdate, make_update
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.tokens import shape_rewards, token_steps

PAD = 0


class StepTable(nn.Module):
    """out = table[seq_id, position]: one entry per (row, position) of the token layout."""

    def __init__(self, table: Any) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(np.asarray(table), dtype=torch.float32))

    def forward(self, seq_id: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        return self.table[seq_id, position]


def step_critic(values: Any) -> TensorDictModule:
    """V(state of step (b, t)) = values[b, position]: a [B, W] table, written to state_value."""
    table = np.asarray(values, dtype=np.float64)[..., None]
    return TensorDictModule(StepTable(table), in_keys=["seq_id", "position"], out_keys=["state_value"])


def step_actor(logits: Any) -> ProbabilisticActor:
    """pi(.| state of step (b, t)) = softmax(logits[b, position]): a [B, W, V] table."""
    module = TensorDictModule(StepTable(logits), in_keys=["seq_id", "position"], out_keys=["logits"])
    return ProbabilisticActor(
        module, in_keys=["logits"], distribution_class=torch.distributions.Categorical, return_log_prob=True
    )


def rlhf_config(**fields: Any) -> RLHFConfig:
    """An RLHFConfig whose batch-size fields fit a tiny hand-built batch."""
    fields.setdefault("track", False)
    fields.setdefault("minibatch_size", 1)
    fields.setdefault("max_new_tokens", 8)
    fields.setdefault("min_digits", 1)
    fields.setdefault("max_digits", min(6, fields["max_new_tokens"] - 1))
    return RLHFConfig(**fields)


def long(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.long)


def f32(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.float32)


def sequences(starts: Sequence[int], lengths: Sequence[int], steps: int, vocab: int = 5, seed: int = 0):
    """[B, max(start) + steps] token ids: prompt tokens, then ``lengths[b]`` generated tokens,
    then PAD (= 0), as `sample_completions` leaves them; real tokens are 1..vocab-1."""
    rng = np.random.default_rng(seed)
    seq = np.full((len(starts), max(starts) + steps), PAD, dtype=np.int64)
    for b, (s, n) in enumerate(zip(starts, lengths, strict=True)):
        seq[b, : s + n] = rng.integers(1, vocab, size=s + n)
    return seq


def layout(
    starts: Sequence[int], lengths: Sequence[int], steps: int | None = None, seed: int = 0
) -> TensorDict:
    """`token_steps` over a made-up finished batch (steps = max(lengths), as in a rollout)."""
    steps = max(lengths) if steps is None else steps
    seq = sequences(starts, lengths, steps, seed=seed)
    return token_steps(long(seq), long(starts), long(lengths), steps)


def shaped(
    starts: Sequence[int],
    lengths: Sequence[int],
    logp: Any,
    ref: Any,
    scores: Sequence[float],
    beta: float,
    kind: str,
) -> tuple[TensorDict, torch.Tensor]:
    """A `token_steps` batch with ``action_log_prob`` = logp and rewards from `shape_rewards`."""
    batch = layout(starts, lengths)
    batch["action_log_prob"] = f32(logp)
    kl = shape_rewards(batch, long(lengths), f32(scores), f32(ref), beta, kind)
    return batch, kl


def token_gae(cfg: RLHFConfig, critic: TensorDictModule):
    """The RLHF stage's GAE: make_advantage(cfg.params(GAEParams), critic), two-call path."""
    advantage = make_advantage(cfg.params(GAEParams), critic)
    advantage.deactivate_vmap = True  # as RLStage does for its token critic
    return advantage


def ppo_update(cfg: RLHFConfig, actor: Any, critic: Any, seed: int = 0, gae: bool = True) -> PPOUpdate:
    """PPOUpdate wired as RLStage wires it: GAE over the critic, or no advantage module
    (critic=None, as GRPO; or ``gae=False``) when the batch already holds ``advantage``."""
    loss = make_loss(cfg.params(LossParams), actor, critic)
    advantage = token_gae(cfg, critic) if critic is not None and gae else None
    return make_update(cfg.params(UpdateParams), loss, advantage, seed=seed)


def tiny_models(seed: int = 0):
    """(tokenizer, policy, reward model): a random-init 1-layer GPT-2 (width 8, no dropout)
    and a GPT-2 sequence classifier with a scalar head, on the project's word-level tokenizer."""
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

    from ppo_torchrl.rlhf.toy.lm import tiny_config, tiny_tokenizer

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    model_cfg = tiny_config(tokenizer, n_layer=1, n_embd=8, n_head=1)
    model_cfg.resid_pdrop = model_cfg.embd_pdrop = model_cfg.attn_pdrop = 0.0
    policy = GPT2LMHeadModel(model_cfg)
    model_cfg.num_labels = 1  # a scalar head, as `reward_model_from` builds it
    return tokenizer, policy, GPT2ForSequenceClassification(model_cfg)


def tiny_stage(**fields: Any):
    """An `RLStage` over `tiny_models`: real rollouts in well under a second."""
    from ppo_torchrl.rlhf.toy.stage import RLStage

    tokenizer, policy, reward_model = tiny_models(fields.pop("torch_seed", 0))
    fields.setdefault("max_new_tokens", 6)
    fields.setdefault("max_digits", 3)
    fields.setdefault("min_digits", 2)
    return RLStage(rlhf_config(**fields), tokenizer, policy, reward_model)
