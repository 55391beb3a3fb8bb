"""Sampling completions with the KV cache, without recomputing what the prompts share.

Hugging Face ``generate`` runs every prompt token of every row through the model: 32 chat
prompts of ~45 tokens cost a 1,440-token prefill, more than the 16 decode steps after it
(issue 29, experiments/results/rlhf_phase_limits_cpu.json). Here:

1. the longest prefix all prompts share (the chat template's system turn, 27 tokens for
   SmolLM2) runs once, at batch 1;
2. each *distinct* prompt's remainder runs once (GRPO repeats a prompt ``group_size`` times),
   left-padded after the shared prefix, with position ids that skip the padding;
3. the cache is copied out to every row and the decode loop samples one token per step from
   softmax(logits / T) by its inverse CDF (one uniform per row from torch's global generator:
   ``torch.multinomial`` over a 49k vocabulary took 38 ms of a 120 ms step) or takes the
   argmax, feeding pad to rows that have finished, until every row wrote EOS or the limit.

The result is the distribution ``generate(do_sample=True, temperature=T, top_k=0, top_p=1)``
samples from (greedy: the same tokens, tests/test_rlhf_sampler.py).

Decoding at a batch of 32 is bound by reading the weights, not by arithmetic: a bf16 copy
of the policy (`Sampler`, LoRA merged in, refreshed after every update) decodes ~2x faster on
a CPU with AVX512-BF16 than the fp32 policy. Its samples then come from a policy a rounding
away from the one trained; the loss still takes its old log-probs from the fp32 policy, and
the gap is reported every update (``sampler_kl``, KL(sampler || policy) per token).
"""

from __future__ import annotations

import torch
from torch import nn

from ppo_torchrl.rlhf.real.heads import body_and_head

_PEFT_PREFIX = "base_model.model."  # peft's name for the wrapped model's modules


def sampler_dtype(name: str, policy: nn.Module) -> torch.dtype:
    """'auto': bf16 on a GPU or on a CPU whose oneDNN has bf16 kernels (AVX512-BF16, AMX),
    else the policy's own dtype (no copy)."""
    own = next(policy.parameters()).dtype
    if name == "auto":
        device = next(policy.parameters()).device
        fast = device.type == "cuda" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return torch.bfloat16 if fast else own
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


class Sampler:
    """What the rollout samples from: the policy itself, or (``dtype`` other than the
    policy's) a merged copy in ``dtype`` that `sync` refreshes from the policy's weights."""

    def __init__(self, policy: nn.Module, dtype: torch.dtype) -> None:
        self.policy = policy
        self.lm = policy
        if dtype != next(policy.parameters()).dtype:
            import copy

            merged = copy.deepcopy(policy)
            if hasattr(merged, "merge_and_unload"):
                merged = merged.merge_and_unload()
            self.lm = merged.to(dtype).eval().requires_grad_(False)
            self.sync()

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the policy's current weights (base + LoRA delta) into the sampling copy."""
        if self.lm is self.policy:
            return
        target = dict(self.lm.named_modules())
        if not hasattr(self.policy, "merge_and_unload"):  # full fine-tuning: every weight
            for (_, mine), (_, theirs) in zip(
                self.lm.state_dict().items(), self.policy.state_dict().items(), strict=True
            ):
                mine.copy_(theirs)
            return
        for name, module in self.policy.named_modules():
            if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
                delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
                target[name.removeprefix(_PEFT_PREFIX)].weight.copy_(module.base_layer.weight + delta)

    def sample(self, prompts: list[list[int]], max_new_tokens: int, pad_id: int, eos_id: int, temperature):
        return sample(self.lm, prompts, max_new_tokens, pad_id, eos_id, temperature)


@torch.no_grad()
def sample(
    lm: nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    pad_id: int,
    eos_id: int,
    temperature: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, N] completion tokens (N <= max_new_tokens), pad after a row's EOS, and [B, N] the
    log-probability ``lm`` gave each (0 after EOS). ``temperature`` None: greedy."""
    from transformers import DynamicCache

    device = next(lm.parameters()).device
    body, head = body_and_head(lm)
    distinct = list(dict.fromkeys(map(tuple, prompts)))
    row_of = torch.tensor([distinct.index(tuple(p)) for p in prompts], device=device)
    # Leave each prompt at least one token past the prefix: its last position's logits
    # are where the first completion token comes from.
    shared = min(len(p) for p in distinct) - 1
    while shared and any(p[:shared] != distinct[0][:shared] for p in distinct):
        shared -= 1

    cache = DynamicCache()
    if shared:
        body(
            input_ids=torch.tensor([distinct[0][:shared]], device=device),
            past_key_values=cache,
            use_cache=True,
        )
        cache.batch_repeat_interleave(len(distinct))
    rest = [p[shared:] for p in distinct]
    width = max(len(r) for r in rest)
    ids = torch.full((len(rest), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rest), shared + width, dtype=torch.long)
    mask[:, :shared] = 1
    for u, r in enumerate(rest):
        ids[u, width - len(r) :] = torch.tensor(r)
        mask[u, shared + width - len(r) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    # The head on the last position only, as a [U, hidden] matrix: through the LM's own
    # ``logits_to_keep=1`` torch multiplied a strided [U, 1, hidden] slice by the vocabulary
    # matrix expanded U times (a 3.6 GB copy at U = 32, a third of the whole rollout).
    hidden = body(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions[:, shared:],
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state
    logits = head(hidden[:, -1].contiguous()).index_select(0, row_of)
    cache.reorder_cache(row_of)
    mask, position = mask.index_select(0, row_of), positions[:, -1].index_select(0, row_of)

    tokens: list[torch.Tensor] = []
    log_probs: list[torch.Tensor] = []
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        probs = torch.softmax(logits.float() / (temperature or 1.0), -1)
        if temperature is None:
            token = probs.argmax(-1)
        else:  # inverse CDF: the first token whose cumulative probability passes u
            cdf = probs.cumsum(-1)
            u = torch.rand(len(prompts), 1, device=device) * cdf[:, -1:]
            token = torch.searchsorted(cdf, u, right=True)[:, 0].clamp(max=probs.shape[-1] - 1)
        log_probs.append(torch.where(finished, 0.0, probs.gather(1, token[:, None])[:, 0].log()))
        token = torch.where(finished, pad_id, token)
        tokens.append(token)
        finished |= token == eos_id
        if step + 1 == max_new_tokens or bool(finished.all()):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        position = position + 1
        hidden = body(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=position[:, None],
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state
        logits = head(hidden[:, -1].contiguous())
    return torch.stack(tokens, 1), torch.stack(log_probs, 1)
