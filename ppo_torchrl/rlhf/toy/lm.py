"""Language models as TorchRL modules: a token-level policy, a per-token critic, a reward model.

A step of token-level RL reads the whole sampled sequence and a position: the state is
``sequence[:position]``, the action is ``sequence[position]``. Because the models are causal,
the logits and values read at ``position - 1`` see only the state, never the future. Steps
of one sequence share a single model pass (``seq_id`` de-duplicates), so scoring a batch of
steps costs one forward per sequence, not per step.

Attention masks come from how long each row really is — its length, or the furthest
position a step reads — never from ``token != pad_id``: many tokenizers have no pad token
and reuse EOS as pad, and a mask built from the pad id would hide every EOS, the stop the
task rewards. For the same reason the reward model's score is read at each sequence's
last real token here, not by Hugging Face's pooling (which looks for the pad id too).

Models come from a tiny random-init GPT-2 config (with a word-level tokenizer over the
task's few dozen tokens) or from any local Hugging Face checkpoint (``--model-path``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import ProbabilisticActor

from ppo_torchrl.rlhf.tokens import STEP_KEYS, distinct_sequences

SPECIALS = {"pad": "<pad>", "eos": "<eos>", "bos": "<bos>"}


def tiny_tokenizer():
    """A word-level Hugging Face tokenizer for the sort task: specials, 'sort', '>', 0-9."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [*SPECIALS.values(), "sort", ">", *map(str, range(10))]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<pad>"
    )


def tiny_config(tokenizer, n_layer: int, n_embd: int, n_head: int, n_positions: int = 32):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def load_models(model_path: str | None, n_layer: int, n_embd: int, n_head: int, seed: int):
    """(tokenizer, causal LM): a random-init tiny GPT-2 and its word-level tokenizer, or both
    read from a local checkpoint folder without touching the network."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

    torch.manual_seed(seed)
    if model_path is None:
        tokenizer = tiny_tokenizer()
        return tokenizer, GPT2LMHeadModel(tiny_config(tokenizer, n_layer, n_embd, n_head))
    path = Path(model_path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # many causal LMs ship without a pad token
    return tokenizer, AutoModelForCausalLM.from_pretrained(path, local_files_only=True)


def reward_model_from(lm: nn.Module, tokenizer, seed: int) -> nn.Module:
    """A sequence classifier with a fresh scalar head on ``lm``'s body (InstructGPT starts its
    reward model from the SFT model): saved and re-read through Hugging Face's Auto classes,
    so any causal-LM architecture that has a sequence-classification variant works."""
    import tempfile

    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        lm.save_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=1, local_files_only=True
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def attention_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """[N, width] mask of the first ``lengths[i]`` tokens of each right-padded row."""
    return (torch.arange(width, device=lengths.device) < lengths[:, None]).long()


class _PerStep(nn.Module):
    """Runs ``per_sequence`` once per distinct sequence of a batch of steps (any batch shape)
    and reads its output at ``position - 1``: what the model says after ``sequence[:position]``.
    Each row attends to the tokens its steps read (a causal model's output at ``p - 1``
    depends on no later token)."""

    def per_sequence(self, rows: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, sequence: torch.Tensor, position: torch.Tensor, seq_id: torch.Tensor) -> torch.Tensor:
        flat_position = position.reshape(-1)
        rows, inverse, reach = distinct_sequences(
            sequence.reshape(-1, sequence.shape[-1]), flat_position, seq_id.reshape(-1)
        )
        out = self.per_sequence(rows, attention_mask(reach, rows.shape[-1]))
        return out[inverse, flat_position - 1].reshape(*position.shape, -1)


class NextTokenLogits(_PerStep):
    """logits of the next token after ``sequence[:position]``, for a batch of steps."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def per_sequence(self, rows: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=rows, attention_mask=attention_mask).logits


def _token_scores(classifier: nn.Module, rows: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A sequence classifier's scalar head read at every token: [N, L, 1]."""
    hidden = classifier.base_model(input_ids=rows, attention_mask=attention_mask)[0]
    return classifier.score(hidden)


class TokenValues(_PerStep):
    """V(sequence[:position]) from a sequence classifier's body and scalar head, per token."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        if not hasattr(classifier, "score"):
            raise ValueError(f"{type(classifier).__name__} has no 'score' head to read values from")
        self.classifier = classifier

    def per_sequence(self, rows: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return _token_scores(self.classifier, rows, attention_mask)


def token_policy(lm: nn.Module) -> ProbabilisticActor:
    """The LM as a TorchRL policy over next tokens: writes ``action`` and ``action_log_prob``."""
    module = TensorDictModule(NextTokenLogits(lm), in_keys=STEP_KEYS, out_keys=["logits"])
    return ProbabilisticActor(
        module,
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        distribution_kwargs={"validate_args": False},
        return_log_prob=True,
    )


def token_critic(classifier: nn.Module) -> TensorDictModule:
    """A per-token value function (PPO's critic), e.g. initialised from the reward model."""
    return TensorDictModule(TokenValues(classifier), in_keys=STEP_KEYS, out_keys=["state_value"])


def sequence_scores(classifier: nn.Module, sequences: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The reward model's score of each right-padded sequence, read at its last real token
    (``lengths - 1``): the EOS where a completion stopped, whatever the pad id is."""
    scores = _token_scores(classifier, sequences, attention_mask(lengths, sequences.shape[-1]))
    return scores[torch.arange(len(sequences), device=sequences.device), lengths - 1, 0]


def frozen_copy(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module)
    clone.requires_grad_(False)
    return clone.eval()
