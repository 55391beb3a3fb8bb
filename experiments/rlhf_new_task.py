"""Issue 40: a task the project has never seen, run as a new user runs theirs.

A fresh folder gets two files a user would write — a prompts JSONL (chat messages with a
system turn, and an ``answer`` column) and a ``reward.py`` with one TRL-style function —
and then one command, in its own process, with the defaults (PPO) and a 15-minute budget:

    python -m ppo_torchrl.rlhf --model smollm2-135m --prompts prompts.jsonl \\
        --eval-prompts eval.jsonl --reward reward.py:larger --time-budget 15

The task: "Which number is larger, 47 or 52? Answer with the number only." over pairs of
two-digit numbers; the reward is 1 when the reply names the larger number and not the
smaller one ("52", "The answer is 52."), else 0 ("47 is larger than 52." names both).
Nothing in the project knows it. Results (the summary, the command, a prompt row, the
reward file) go to ``--out``.

    .venv/bin/python experiments/rlhf_new_task.py --minutes 15 \\
        --out experiments/results/rlhf_new_task_cpu.json
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEM = "You are a helpful assistant. Keep answers short."
REWARD = '''import re


def larger(prompts, completions, answer, smaller, **kwargs):
    """1.0 when the reply names the larger number and not the smaller one, else 0.0."""
    rewards = []
    for completion, big, small in zip(completions, answer, smaller):
        numbers = re.findall(r"\\d+", completion[0]["content"])
        rewards.append(1.0 if big in numbers and small not in numbers else 0.0)
    return rewards
'''


def rows(rng: random.Random, n: int, seen: set) -> list[dict]:
    out = []
    while len(out) < n:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        question = f"Which number is larger, {a} or {b}? Answer with the number only."
        prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
        out.append({"prompt": prompt, "answer": str(max(a, b)), "smaller": str(min(a, b))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0, help="the run's --seed")
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument(
        "--work", type=Path, default=None, help="the fresh folder (default: a new temporary one)"
    )
    parser.add_argument("--extra", default="", help="more flags for the command, e.g. '--algo grpo'")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/rlhf_new_task_cpu.json"))
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="new_task_"))
    work.mkdir(parents=True, exist_ok=True)
    rng, seen = random.Random(1234), set()
    held, train = rows(rng, args.eval_rows, seen), rows(rng, args.train_rows, seen)
    (work / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (work / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    (work / "reward.py").write_text(REWARD)
    command = [
        sys.executable, "-m", "ppo_torchrl.rlhf", "--model", "smollm2-135m",
        "--prompts", "prompts.jsonl", "--eval-prompts", "eval.jsonl", "--reward", "reward.py:larger",
        "--time-budget", f"{args.minutes:g}", "--seed", str(args.seed), "--no-track",
        "--summary-json", "summary.json", *args.extra.split(),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work, text=True, capture_output=True)
    seconds = time.perf_counter() - started
    print(done.stdout[-3000:], done.stderr[-2000:], sep="\n")
    if done.returncode != 0:
        sys.exit(f"the command exited {done.returncode}")
    summary = json.loads((work / "summary.json").read_text())
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python", *command[1:]]),
        "folder": str(work),
        "prompt_row": train[0],
        "reward_py": REWARD,
        "wall_seconds": seconds,
        "gain": summary["final_eval_reward"] - summary["base_eval_reward"],
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    base, final = summary["base_eval_reward"], summary["final_eval_reward"]
    print(f"held-out reward {base:.3f} -> {final:.3f} -> {args.out}")


if __name__ == "__main__":
    main()
