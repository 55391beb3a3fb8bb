"""The rollout sampler (rlhf/real/sampler.py) against Hugging Face ``generate`` on a small
random Llama: the same greedy tokens, the same sampling distribution, and a bf16 copy that
holds the policy's merged LoRA weights after every sync."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from ppo_torchrl.rlhf.real.hub import LoRASettings, with_adapter  # noqa: E402
from ppo_torchrl.rlhf.real.sampler import Sampler, sample  # noqa: E402

PAD = EOS = 0


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config).eval()


# A shared prefix, prompts of different lengths, and one prompt repeated (GRPO's groups).
PROMPTS = [[5, 6, 7, 8, 9], [5, 6, 7, 10], [5, 6, 7, 8, 9], [5, 6, 11, 12, 13, 14], [5, 6, 7, 10]]


def hf_generate(lm, prompts, steps: int, **sampling) -> torch.Tensor:
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), PAD)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(prompts):
        ids[b, width - len(p) :], mask[b, width - len(p) :] = torch.tensor(p), 1
    out = lm.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps,
        pad_token_id=PAD, eos_token_id=EOS, **sampling,
    )  # fmt: skip
    return out[:, width:]


def test_greedy_tokens_are_generates(lm) -> None:
    # min_new_tokens keeps generate from stopping at EOS; ours stops there: compare up to it
    ours, log_prob = sample(lm, PROMPTS, 12, PAD, 99, None)  # eos 99: never written
    theirs = hf_generate(lm, PROMPTS, 12, do_sample=False)
    assert torch.equal(ours, theirs)
    assert (log_prob <= 0).all()


def test_first_token_follows_softmax_of_logits_over_temperature(lm) -> None:
    prompt, temperature, n = [5, 6, 7, 8, 9], 0.7, 6000
    torch.manual_seed(1)
    first, log_prob = sample(lm, [prompt] * n, 1, PAD, 99, temperature)
    with torch.no_grad():
        want = torch.softmax(lm(torch.tensor([prompt])).logits[0, -1] / temperature, -1)
    seen = torch.bincount(first[:, 0], minlength=want.numel()).float() / n
    assert (seen - want).abs().max() < 4 * (want.max() / n) ** 0.5 + 1e-3  # about 4 sigma
    assert torch.allclose(log_prob[:, 0], want[first[:, 0]].log(), atol=1e-5)


def test_rows_stop_at_eos_and_pad_after(lm) -> None:
    torch.manual_seed(2)
    eos = 3
    out, log_prob = sample(lm, PROMPTS * 20, 10, PAD, eos, 1.0)
    for row, lp in zip(out, log_prob, strict=True):
        hits = (row == eos).nonzero()
        if len(hits):
            end = int(hits[0]) + 1
            assert (row[end:] == PAD).all() and (lp[end:] == 0).all()


def test_bf16_copy_holds_the_merged_lora_weights_after_sync(lm) -> None:
    policy = with_adapter(copy.deepcopy(lm), LoRASettings(4, 8.0, ("q_proj", "v_proj", "down_proj")), False)
    sampler = Sampler(policy, torch.bfloat16)
    assert sampler.lm is not policy and next(sampler.lm.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # as if an update moved the adapter
    sampler.sync()
    merged = copy.deepcopy(policy).merge_and_unload()
    mine = dict(sampler.lm.named_parameters())
    for name, p in merged.named_parameters():
        assert torch.allclose(mine[name].float(), p, atol=1e-2, rtol=1e-2), name
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(mine[q].float(), dict(lm.named_parameters())[q], atol=1e-2)


def test_same_dtype_samples_from_the_policy_itself(lm) -> None:
    assert Sampler(lm, torch.float32).lm is lm
