"""A real LM's policy, critic and reference as TorchRL modules over token steps.

Same step layout as the toy models (rlhf/tokens.py: state ``sequence[:position]``, action
``sequence[position]``), but built for a 100M+ parameter model on a small machine:

- the vocabulary head runs only where a step reads it, not at every prompt token
  (49k logits per token are a fifth of SmolLM2's forward);
- with ``--value-model trunk`` the critic is a linear value head on the policy's own last
  hidden state, and `SharedTrunk` runs the body once for both: ClipPPOLoss asks the actor
  and then the critic about the very same minibatch tensors, and the second ask is served
  from the first pass (same autograd graph, so both losses' gradients reach the trunk);
- the reference runs the same body with the LoRA adapter switched off (`hub.Reference`).

The cache holds one entry, is keyed on the identity of the input tensors (held, so their
ids cannot be reused) and on grad mode, and is cleared after every optimizer step.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import ProbabilisticActor

from ppo_torchrl.rlhf.tokens import STEP_KEYS, distinct_sequences


class Trunk(nn.Module):
    """The LM body's last hidden state at ``position - 1`` for a batch of token steps; one
    body pass per distinct sequence (``seq_id``). Rows attend to every cell: a causal model's
    state at ``p - 1`` never reads a later cell, so right padding cannot leak in."""

    def __init__(self, body: nn.Module, cached: bool, context=nullcontext) -> None:
        super().__init__()
        self.body, self.cached, self.context = body, cached, context
        self._entry: tuple | None = None
        self.passes = 0  # body passes run (tests count them)

    def clear(self, *_: object) -> None:
        self._entry = None

    def rows_hidden(self, sequence: torch.Tensor, seq_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        entry = self._entry
        grad = torch.is_grad_enabled()
        if (
            self.cached
            and entry is not None
            and entry[0] is sequence
            and entry[1] is seq_id
            and entry[2] == grad
        ):
            return entry[3], entry[4]
        flat_seq = sequence.reshape(-1, sequence.shape[-1])
        flat_id = seq_id.reshape(-1)
        rows, inverse, _ = distinct_sequences(flat_seq, torch.zeros_like(flat_id), flat_id)
        with self.context():
            hidden = self.body(input_ids=rows, attention_mask=torch.ones_like(rows))[0]
        self.passes += 1
        if self.cached:
            self._entry = (sequence, seq_id, grad, hidden, inverse)
        return hidden, inverse

    def forward(self, sequence: torch.Tensor, position: torch.Tensor, seq_id: torch.Tensor) -> torch.Tensor:
        hidden, inverse = self.rows_hidden(sequence, seq_id)
        return hidden[inverse, position.reshape(-1) - 1].reshape(*position.shape, hidden.shape[-1])


class _Head(nn.Module):
    def __init__(self, trunk: Trunk, head: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.trunk, self.head, self.temperature = trunk, head, temperature

    def forward(self, sequence: torch.Tensor, position: torch.Tensor, seq_id: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(sequence, position, seq_id)).float() / self.temperature


def body_and_head(lm: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(decoder body, vocabulary head) of a Hugging Face causal LM, peft-wrapped or not."""
    causal = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    return causal.base_model, causal.get_output_embeddings()


def policy(trunk: Trunk, vocab_head: nn.Module, temperature: float = 1.0) -> ProbabilisticActor:
    """pi_T(token | state) = softmax(logits / T): the distribution ``generate`` samples from at
    temperature T, so the log-probs PPO's ratio needs are those of the sampling policy."""
    module = TensorDictModule(_Head(trunk, vocab_head, temperature), in_keys=STEP_KEYS, out_keys=["logits"])
    return ProbabilisticActor(
        module,
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        distribution_kwargs={"validate_args": False},
        return_log_prob=True,
    )


def value_head(width: int, like: torch.Tensor) -> nn.Linear:
    """V = w . h + b, starting at exactly 0 (no prior about the reward's scale)."""
    head = nn.Linear(width, 1).to(device=like.device, dtype=like.dtype)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def critic(trunk: Trunk, head: nn.Linear) -> TensorDictModule:
    return TensorDictModule(_Head(trunk, head), in_keys=STEP_KEYS, out_keys=["state_value"])


def reference_policy(
    lm: nn.Module, context: type[AbstractContextManager] | object, temperature: float = 1.0
) -> ProbabilisticActor:
    """pi_ref over the same step layout (and temperature): ``lm`` run inside ``context``
    (adapter off)."""
    body, head = body_and_head(lm)
    return policy(Trunk(body, cached=False, context=context), head, temperature)
