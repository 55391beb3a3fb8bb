"""Issue 40, item 4: a reward model for the arithmetic task, trained on SmolLM2-135M-Instruct.

Preference pairs from the task's problems (`rlhf.examples.arithmetic`): the prompt is the
problem's question; ``chosen`` a correct answer, ``rejected`` the same form with a wrong
number near the truth (off by 1 to 3), each pair in one of two forms drawn at random:

    {"prompt": "What is 13 + 14? Answer with the number only.", "chosen": "27", "rejected": "26"}
    {"prompt": "What is 9 - 4? ...", "chosen": "9 - 4 = 5", "rejected": "9 - 4 = 7"}

Held-out pairs come from problems no training pair uses (`split_problems`); by default 200
of them, and 400 training pairs from the 410 other problems: 2 epochs of 8 pairs a step,
100 steps. The stage runs through its own command line (``python -m ppo_torchrl.rlhf
reward-model``), as a user runs it; this script writes the files, times the run and keeps
the numbers. About 15-25 minutes on a free 2-core CPU (a step of 8 pairs, ~50 tokens a row,
is ~330 GFLOP with LoRA):

    .venv/bin/python experiments/rlhf_reward_model.py \\
        --out experiments/results/rlhf_reward_model_cpu.json
    # a check on any local causal-LM folder, any further flags to the stage:
    .venv/bin/python experiments/rlhf_reward_model.py --model-path M --train-pairs 40 \\
        --eval-pairs 20 --out /tmp/rm.json -- --epochs 1 --no-track
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

from ppo_torchrl.rlhf.examples.arithmetic import Problem, split_problems

ROOT = Path(__file__).resolve().parents[1]


def pair(problem: Problem, rng: random.Random) -> dict[str, str]:
    """A correct answer against a near miss, both bare or both as the whole equation."""
    truth = int(problem.answer)
    wrong = truth + rng.choice([d for d in (-3, -2, -1, 1, 2, 3) if truth + d >= 0])
    a, b = problem.operands
    if rng.random() < 0.5:
        return {"prompt": problem.question, "chosen": str(truth), "rejected": str(wrong)}
    equation = f"{a} {problem.op} {b} = "
    return {"prompt": problem.question, "chosen": equation + str(truth), "rejected": equation + str(wrong)}


def write_pairs(folder: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    rng = random.Random(args.seed)
    held, training = split_problems(rng, args.ops, args.max_operand, args.eval_pairs)
    # More pairs than problems: a problem comes round again with another near miss.
    training = [training[i % len(training)] for i in range(args.train_pairs)]
    folder.mkdir(parents=True, exist_ok=True)
    files = folder / "train.jsonl", folder / "eval.jsonl"
    for path, problems in zip(files, (training, held), strict=True):
        path.write_text("".join(json.dumps(pair(p, rng)) + "\n" for p in problems))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model-path", help="a local causal-LM folder instead of --model smollm2-135m")
    parser.add_argument("--train-pairs", type=int, default=400, help="training pairs (default: 400)")
    parser.add_argument("--eval-pairs", type=int, default=200, help="held-out pairs (default: 200)")
    parser.add_argument("--ops", default="+,-", help="problem kinds (default: +,-)")
    parser.add_argument("--max-operand", type=int, default=20, help="largest operand (default: 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/rlhf_reward_model"), help="pair files, run folders, the model"
    )
    parser.add_argument("--out", required=True, help="results JSON")
    parser.add_argument(
        "--rl-minutes",
        type=float,
        default=0.0,
        help="then RL against the trained reward model for this many minutes (PPO, defaults) on the "
        "arithmetic prompts, its held-out split the pairs' held-out problems, the exact-answer rule "
        "logged with weight 0 (a monitor, not a reward)",
    )
    args, stage_flags = parser.parse_known_args()
    stage_flags = [f for f in stage_flags if f != "--"]
    started = time.strftime("%Y%m%d-%H%M%S")
    train, held = write_pairs(args.work / f"data-{started}", args)
    model = ["--model-path", args.model_path] if args.model_path else ["--model", "smollm2-135m"]
    runs = args.work / f"runs-{started}"
    command = [
        *("-m", "ppo_torchrl.rlhf", "reward-model", "--data", str(train), "--eval-data", str(held)),
        *model,
        *("--output-dir", str(runs), "--seed", str(args.seed), *stage_flags),
    ]
    print("python " + " ".join(command), flush=True)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *command], cwd=ROOT)  # progress lines pass through
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"the stage exited with status {done.returncode}")
    (found,) = runs.glob("*/summary.json")
    summary = json.loads(found.read_text())
    keep = (
        "held_out_accuracy_before",
        "held_out_accuracy_after",
        "held_out_loss_before",
        "held_out_loss_after",
        "held_out_margin_after",
        "training_rows",
        "held_out_rows",
        "truncated_rows",
        "steps",
        "train_seconds",
        "model_dir",
    )
    result = {
        **{k: summary[k] for k in keep},
        "wall_seconds": seconds,
        "pairs": {"ops": args.ops, "max_operand": args.max_operand, "seed": args.seed},
        "example_pair": json.loads(train.read_text().splitlines()[0]),
        "command": "python " + " ".join(command),
        "script_command": "python " + " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {summary['device']}",
        "measured": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.rl_minutes:
        result["rl"] = rl_against(Path(summary["model_dir"]), args, model)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"held-out pairwise accuracy {result['held_out_accuracy_before']:.1%} -> "
        f"{result['held_out_accuracy_after']:.1%} in {seconds:.0f} s -> {args.out}"
    )


def rl_against(reward_model: Path, args: argparse.Namespace, model: list[str]) -> dict:
    """RL with the reward model as the only reward on the arithmetic task written as files
    (the same seed: its held-out problems are the pairs' held-out ones, never trained on by
    either stage); held-out exact answers before and after from the weight-0 `exact` rule."""
    from ppo_torchrl.rlhf.examples import arithmetic

    task = args.work / "arithmetic"
    arithmetic.write_files(task, args.seed, args.ops, args.max_operand, args.eval_pairs)
    command = [
        *("-m", "ppo_torchrl.rlhf", *model, "--prompts", str(task / "train.jsonl")),
        *("--eval-prompts", str(task / "eval.jsonl"), "--reward", f"{arithmetic.__file__}:exact"),
        *("--reward-model", str(reward_model), "--reward-weights", "0", "1"),
        *("--time-budget", f"{args.rl_minutes:g}", "--seed", str(args.seed), "--no-track"),
        *("--output-dir", str(args.work / "rl"), "--summary-json", str(args.work / "rl_summary.json")),
    ]
    print("python " + " ".join(command), flush=True)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *command], cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"the RL run exited with status {done.returncode}")
    s = json.loads((args.work / "rl_summary.json").read_text())
    base, final = s["base_eval_rewards"], s["final_eval_rewards"]
    print(
        f"held-out exact {100 * base['exact']:.1f}% -> {100 * final['exact']:.1f}% (RL on the reward model)"
    )
    return {
        "command": "python " + " ".join(command),
        "wall_seconds": time.perf_counter() - t0,
        "base_exact": 100 * base["exact"],
        "final_exact": 100 * final["exact"],
        "gain_pp": 100 * (final["exact"] - base["exact"]),
        "base_reward_model": base["reward_model"],
        "final_reward_model": final["reward_model"],
        "updates": s["updates"],
        "rl_seconds": s["rl_seconds"],
        "final_kl_to_ref": s["final_kl_to_ref"],
    }


if __name__ == "__main__":
    main()
