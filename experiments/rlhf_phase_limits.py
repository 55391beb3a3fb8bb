"""How far each RLHF phase is from this CPU's limit: fp32 matmul GFLOP/s against the model's.

Groundwork for issue 29 (faster rollouts): before making generation faster, know the ceiling.
Measures, in one process on this machine:

- fp32 matmul GFLOP/s (``torch.mm``, best of 5 after warm-up) at the shapes a SmolLM2-135M
  decode step multiplies at a batch of 32 (hidden 576, MLP 1536, vocabulary 49152) and at a
  large square (the machine's practical peak);
- generation as the real RL stage runs it (``lm.generate`` with the KV cache, 32 chat prompts
  of the arithmetic task, sampling at temperature 1, 16 new tokens, fp32), tokens/s;
- scoring: one forward pass over the 32 prompt + completion sequences (what the log-probs and
  values of a rollout cost), tokens/s.

Each phase's achieved GFLOP/s is tokens/s x 2 x parameters (the forward's matmul work per
token; attention over a short context adds little), and its share is that over the peak.

    .venv/bin/python experiments/rlhf_phase_limits.py --out experiments/results/rlhf_phase_limits_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import torch

from ppo_torchrl.rlhf.examples.arithmetic import make_problem
from ppo_torchrl.rlhf.real.hub import load_lm, locate
from ppo_torchrl.rlhf.real.prompts import prompt_ids


def best_seconds(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def matmul_gflops(m: int, k: int, n: int) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    return 2 * m * k * n / best_seconds(lambda: torch.mm(a, b)) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shapes = {
        "decode_attention_proj_32x576x576": (args.batch, 576, 576),
        "decode_mlp_32x576x1536": (args.batch, 576, 1536),
        "decode_lm_head_32x576x49152": (args.batch, 576, 49152),
        "prefill_mlp_1024x576x1536": (1024, 576, 1536),
        "square_2048": (2048, 2048, 2048),
    }
    gflops = {name: matmul_gflops(*shape) for name, shape in shapes.items()}
    peak = max(gflops.values())
    print({k: round(v, 1) for k, v in gflops.items()})

    folder, gguf = locate("smollm2-135m", None, None)
    tokenizer, lm = load_lm(folder, gguf, torch.float32)
    params = sum(p.numel() for p in lm.parameters())
    rng = random.Random(0)
    prompts = [prompt_ids(tokenizer, make_problem(rng, "+", 99).question) for _ in range(args.batch)]
    width = max(map(len, prompts))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width) >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()

    def generate() -> torch.Tensor:
        with torch.no_grad():
            return lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                               min_new_tokens=args.new_tokens, do_sample=True, temperature=1.0, top_k=0,
                               top_p=1.0, pad_token_id=pad, use_cache=True)  # fmt: skip

    gen_seconds = best_seconds(generate, repeats=3)
    sequences = generate()
    full_mask = torch.cat([mask, torch.ones(args.batch, args.new_tokens, dtype=torch.long)], 1)

    def score() -> None:
        with torch.no_grad():
            lm(input_ids=sequences, attention_mask=full_mask)

    score_seconds = best_seconds(score, repeats=3)
    new_tokens = args.batch * args.new_tokens
    scored_tokens = sequences.numel()
    phases = {
        "generation": {"tokens_per_second": new_tokens / gen_seconds, "seconds": gen_seconds},
        "scoring": {"tokens_per_second": scored_tokens / score_seconds, "seconds": score_seconds},
    }
    for phase in phases.values():
        achieved = phase["tokens_per_second"] * 2 * params / 1e9
        phase.update(achieved_gflops=achieved, share_of_peak=achieved / peak)
    out = {
        "what": f"fp32 matmul limit vs SmolLM2-135M, batch {args.batch}, {args.new_tokens} new tokens, "
        f"{time.strftime('%Y-%m-%d')}",
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform()},
        "parameters": params,
        "prompt_width": width,
        "matmul_gflops": gflops,
        "peak_gflops": peak,
        "phases": phases,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(phases, indent=2))


if __name__ == "__main__":
    main()
