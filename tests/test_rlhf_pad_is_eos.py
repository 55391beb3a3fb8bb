"""RLHF on a checkpoint whose tokenizer has no pad token, so that pad = EOS (GPT-2, Llama,
SmolLM2 ship that way).

The tokenizer here is a byte-level BPE trained offline on the task's text with one special
token, ``<|endoftext|>`` (GPT-2's shape: no pad, no separate BOS), saved beside a tiny GPT-2
with ``save_pretrained``. Masks built from ``token != pad_id`` would hide every EOS; the
reward model would then score a completion at its last digit, never seeing the stop that
the task rewards. Each assertion below compares with the model run on the single,
unpadded sequence with nothing masked: what the model says when padding cannot interfere.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from ppo_torchrl.rlhf.toy.lm import load_models, reward_model_from, sequence_scores
from ppo_torchrl.rlhf.toy.sft import IGNORE, sft_batches, sft_loss
from ppo_torchrl.rlhf.toy.task import Example, make_examples
from ppo_torchrl.rlhf.toy.text import completion_ids, lengths, pad, prompt_ids
from tests.test_rlhf import flags, rlhf_cli

EOS = "<|endoftext|>"


@pytest.fixture(scope="module")
def eos_only_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny GPT-2 and a byte-level BPE tokenizer whose only special is EOS."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    rng = random.Random(0)
    texts = [e.prompt + " " + " ".join(map(str, e.answer)) for e in make_examples(500, rng, 1, 6)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=300, min_frequency=1, special_tokens=[EOS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS)
    assert tokenizer.pad_token_id is None
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=32,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("eos_only")
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(eos_only_checkpoint: Path):
    tokenizer, lm = load_models(str(eos_only_checkpoint), 1, 16, 2, seed=0)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the case under test
    return tokenizer, lm.eval(), reward_model_from(lm, tokenizer, seed=0).eval()


@torch.no_grad()
def unpadded_score(reward_model: torch.nn.Module, ids: list[int]) -> float:
    hidden = reward_model.base_model(input_ids=torch.tensor([ids]))[0]
    return float(reward_model.score(hidden)[0, -1, 0])


def test_the_reward_model_sees_the_eos_where_pad_is_eos(models) -> None:
    tokenizer, _, reward_model = models
    example = Example((3, 1, 2))
    prompt = prompt_ids(tokenizer, example)
    stopped = prompt + completion_ids(tokenizer, example.answer, stopped=True)
    running = prompt + completion_ids(tokenizer, example.answer, stopped=False)
    short = prompt + completion_ids(tokenizer, (1,), stopped=True)
    rows = [stopped, running, short]  # different lengths: the shorter rows get pad (= EOS) cells
    assert stopped[-1] == tokenizer.eos_token_id and stopped[:-1] == running
    with torch.no_grad():
        scores = sequence_scores(reward_model, pad(rows, tokenizer.pad_token_id), lengths(rows))
    expected = [unpadded_score(reward_model, r) for r in rows]
    assert scores.tolist() == pytest.approx(expected, abs=1e-5)
    # The stop changes the score: a completion's EOS is part of what the reward model reads.
    assert abs(float(scores[0] - scores[1])) > 1e-4


def test_the_sft_loss_learns_the_eos_where_pad_is_eos(models) -> None:
    tokenizer, lm, _ = models
    examples = make_examples(8, random.Random(3), 1, 4)
    inputs, sizes, labels = sft_batches(tokenizer, examples, 0.0, random.Random(0))
    last = sizes - 1
    rows = torch.arange(len(examples))
    assert (inputs[rows, last] == tokenizer.eos_token_id).all()
    assert (labels[rows, last] == tokenizer.eos_token_id).all(), "the EOS must stay a label"
    with torch.no_grad():
        loss = float(sft_loss(lm, inputs, sizes, labels))
        # The same loss from each row alone, unpadded and unmasked, token by token.
        total, count = 0.0, 0
        for b in range(len(examples)):
            ids, target = inputs[b, : sizes[b]], labels[b, 1 : sizes[b]]
            logits = lm(input_ids=ids[None]).logits[0, :-1]
            keep = target != IGNORE
            total += float(torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum"))
            count += int(keep.sum())
        assert loss == pytest.approx(total / count, rel=1e-5)
        # Without its EOS labels the loss is a different number: the stop is learned.
        no_stop = labels.clone()
        no_stop[rows, last] = IGNORE
        assert abs(float(sft_loss(lm, inputs, sizes, no_stop)) - loss) > 1e-4


def test_model_path_runs_the_pipeline_on_a_pad_is_eos_checkpoint(eos_only_checkpoint: Path, tmp_path) -> None:
    proc = rlhf_cli(
        [
            *flags(output_dir="out"),
            "--model-path",
            str(eos_only_checkpoint),
            "--no-track",
            "--summary-json",
            "s.json",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["model"] == str(eos_only_checkpoint)
    assert 0.0 <= summary["final_score"] <= 100.0
    # Completions end where the policy wrote EOS: lengths are counted, not read off pad cells.
    assert 1.0 <= summary["final_response_length"] <= 4.0
