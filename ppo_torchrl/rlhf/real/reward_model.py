"""A real reward model: a causal LM's body with a scalar head, trained on preference pairs.

    loss = -log sigmoid(r(prompt, chosen) - r(prompt, rejected))        (Bradley-Terry)

A row is ``{"prompt", "chosen", "rejected"}`` (each completion a string or one assistant
message). The model is ``AutoModelForSequenceClassification`` with one label, its body the
causal LM's weights; it writes a plain Hugging Face folder that `load_reward_model` reads
back for the RL stage, where `score_completions` gives each prompt + completion its reward.

The score is read at each row's last real token (its EOS), found from the row lengths: the
tokenizers here have pad == eos, so Hugging Face's own pooling (the first pad id) would
stop at the completion's EOS only by luck, and at the first EOS-looking token otherwise.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.rlhf.data import Rows, check_prompts, completion_text, require
from ppo_torchrl.rlhf.real.finetune import attention_mask, chunks, lengths, pad, precision
from ppo_torchrl.rlhf.real.prompts import completion_ids, prompt_ids


@dataclass
class Pair:
    prompt: str | list[dict[str, str]]
    chosen: str
    rejected: str


@dataclass
class EncodedPairs:
    """Token ids of each pair's two rows (prompt + completion + EOS); how many pairs
    ``max_length`` cut."""

    chosen: list[list[int]]
    rejected: list[list[int]]
    truncated: int = 0
    dropped: int = 0  # never: a cut row keeps its end (see `encode`)

    def __len__(self) -> int:
        return len(self.chosen)


def preference_pairs(rows: Rows, what: str) -> list[Pair]:
    """Each row as a `Pair`; a bad row is one line naming it and the field."""
    require(rows, ("prompt", "chosen", "rejected"), what)
    check_prompts(rows, what)
    return [
        Pair(
            row["prompt"],
            completion_text(row["chosen"], what, f"{rows.path} {where}", "chosen"),
            completion_text(row["rejected"], what, f"{rows.path} {where}", "rejected"),
        )
        for row, where in zip(rows.rows, rows.where, strict=True)
    ]


def row_ids(tokenizer: Any, prompt: str | list[dict[str, str]], completion: str) -> list[int]:
    return prompt_ids(tokenizer, prompt) + completion_ids(tokenizer, completion, eos=True)


def encode(tokenizer: Any, pairs: list[Pair], max_length: int) -> EncodedPairs:
    """Both rows of each pair; a row over ``max_length`` keeps its last tokens: the score is
    read at its end, so the completion and its EOS stay and the prompt's start goes."""
    out = EncodedPairs([], [])
    for pair in pairs:
        chosen, rejected = (
            row_ids(tokenizer, pair.prompt, pair.chosen),
            row_ids(tokenizer, pair.prompt, pair.rejected),
        )
        out.truncated += max(len(chosen), len(rejected)) > max_length
        out.chosen.append(chosen[-max_length:])
        out.rejected.append(rejected[-max_length:])
    return out


def from_causal_lm(lm: nn.Module, tokenizer: Any) -> nn.Module:
    """A one-label ``AutoModelForSequenceClassification`` of ``lm``'s architecture, its body
    ``lm``'s body weights; the score head keeps Hugging Face's small random init (seeded by
    the caller), so the untrained model's held-out accuracy is a coin's, not a tie's."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(lm.config)
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    if getattr(config, "quantization_config", None) is not None:  # a dequantised GGUF's marker
        config.quantization_config = None
    model = AutoModelForSequenceClassification.from_config(config, dtype=next(lm.parameters()).dtype)
    model.base_model.load_state_dict(lm.base_model.state_dict())
    if not hasattr(model, "score"):
        raise ConfigError(f"model: {type(model).__name__} has no 'score' head to read rewards from")
    return model


def rewards(model: nn.Module, input_ids: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """[B] float32: the score head on the body's hidden state at each row's last real token
    (index length - 1 of the right-padded row)."""
    mask = attention_mask(sizes, input_ids.shape[1])
    hidden = model.base_model(input_ids=input_ids, attention_mask=mask)[0]
    last = hidden[torch.arange(len(hidden), device=hidden.device), sizes - 1]
    return model.score(last).squeeze(-1).float()


def pair_rewards(
    model: nn.Module, encoded: EncodedPairs, idx: list[int], pad_id: int
) -> tuple[torch.Tensor, ...]:
    """(r(chosen), r(rejected)) of pairs ``idx``, both sides in one forward pass."""
    rows = [encoded.chosen[i] for i in idx] + [encoded.rejected[i] for i in idx]
    device = next(model.parameters()).device
    scores = rewards(model, pad(rows, pad_id).to(device), lengths(rows).to(device))
    return scores[: len(idx)], scores[len(idx) :]


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected)."""
    return -F.logsigmoid(chosen - rejected).mean()


def rm_loss(model: nn.Module, encoded: EncodedPairs, idx: list[int], pad_id: int) -> torch.Tensor:
    return bradley_terry_loss(*pair_rewards(model, encoded, idx, pad_id))


@torch.no_grad()
def held_out_accuracy(
    model: nn.Module, encoded: EncodedPairs, batch_size: int, pad_id: int
) -> dict[str, float]:
    """The share of held-out pairs with r(chosen) > r(rejected) (a tie counts as wrong), and
    their mean Bradley-Terry loss."""
    device = next(model.parameters()).device
    chosen, rejected = [], []
    model.eval()
    for idx in chunks(len(encoded), batch_size):
        with precision(device):
            c, r = pair_rewards(model, encoded, idx, pad_id)
        chosen.append(c)
        rejected.append(r)
    c, r = torch.cat(chosen), torch.cat(rejected)
    return {
        "held_out_accuracy": int((c > r).sum()) / len(c),  # exact: 0.7, not float32's 0.69999...
        "held_out_loss": float(bradley_terry_loss(c, r)),
        "held_out_margin": float((c - r).mean()),
    }


def load_reward_model(folder: str | Path, device: torch.device) -> tuple[Any, nn.Module]:
    """(tokenizer, frozen reward model in eval mode on ``device``) from a folder the
    reward-model stage wrote (or any one-label sequence-classification folder); a folder
    that is missing or holds something else is one line (ConfigError)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        what = "no such folder" if not folder.is_dir() else "no config.json in it"
        raise ConfigError(
            f"reward_model: {folder}: {what} (a folder `python -m ppo_torchrl.rlhf reward-model` wrote)"
        )
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"reward_model: cannot read {folder / 'config.json'}: {_first_line(err)}") from None
    kinds = list(getattr(config, "architectures", None) or [])
    if not any(kind.endswith("ForSequenceClassification") for kind in kinds):
        held = kinds[0] if kinds else "a model of no stated architecture"
        raise ConfigError(
            f"reward_model: {folder} holds {held}, not a sequence-classification model "
            "(train one with `python -m ppo_torchrl.rlhf reward-model`)"
        )
    if config.num_labels != 1:
        raise ConfigError(f"reward_model: {folder} has {config.num_labels} labels; a reward model has 1")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, dtype=torch.float32, local_files_only=True
        )
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"reward_model: cannot read {folder}: {_first_line(err)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # pad == eos: masks come from lengths anyway
    return tokenizer, model.to(device).eval().requires_grad_(False)


@torch.no_grad()
def score_completions(
    tokenizer: Any, model: nn.Module, prompts: list, completions: list[str], batch_size: int = 16
) -> torch.Tensor:
    """[B] float32 on the CPU: the reward of each prompt + completion (+ EOS, as the stage
    trained it), read at the row's last real token."""
    rows = [row_ids(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = [torch.zeros(0)]
    for idx in chunks(len(rows), batch_size):
        part = [rows[i] for i in idx]
        out.append(rewards(model, pad(part, pad_id).to(device), lengths(part).to(device)).cpu())
    return torch.cat(out)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__
