"""An example task, written as a user writes theirs: prompts plus reward functions.

    row      {"prompt": "What is 13 + 14? Answer with the number only.", "answer": "27", "op": "+"}
    rewards  exact(prompts, completions, answer, op, **kwargs) -> [1.0 or 0.0, ...]
             bare(prompts, completions, answer, op, **kwargs)  -> [1.0 or 0.0, ...]

The reward functions have TRL's signature (``GRPOTrainer(reward_funcs=...)``): the prompts, the
completions (strings, as the prompts are strings), and every other field of the rows as a
keyword list. ``python -m ppo_torchrl.rlhf --task arithmetic`` is this module's rows with
``exact`` (weight 1) and ``bare`` (weight ``--format-coef``); written out as files, the same
task runs as any user's does:

    python -m ppo_torchrl.rlhf.examples.arithmetic tasks/arithmetic      # train.jsonl, eval.jsonl
    python -m ppo_torchrl.rlhf --model smollm2-135m --prompts tasks/arithmetic/train.jsonl \
        --eval-prompts tasks/arithmetic/eval.jsonl \
        --reward ppo_torchrl/rlhf/examples/arithmetic.py:exact

A response's answer is the last number it writes, read the way GSM8K-style verifiers read a
final answer: "13 + 14 = 27" and "27" both answer 27; "13 + 14 = 25" answers 25. ``bare`` is
1 when the response is the answer alone; the two are logged apart, so a rising format term
can never pass for learning the task. Problems are generated from a seed, nothing is
downloaded; ``max_operand`` and ``ops`` set the difficulty. SmolLM2-135M-Instruct answers
about a third of the default problems exactly (experiments/results/rlhf_real_model_*.json).
"""

from __future__ import annotations

import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPS = ("+", "-", "sort")
_NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Problem:
    op: str  # '+', '-' or 'sort'
    operands: tuple[int, ...]

    @property
    def question(self) -> str:
        if self.op == "sort":
            digits = " ".join(map(str, self.operands))
            return f"Sort these digits in ascending order: {digits}. Answer with the digits only."
        a, b = self.operands
        return f"What is {a} {self.op} {b}? Answer with the number only."

    @property
    def answer(self) -> str:
        if self.op == "sort":
            return "".join(map(str, sorted(self.operands)))
        a, b = self.operands
        return str(a + b if self.op == "+" else a - b)


def make_problem(rng: random.Random, ops: str, max_operand: int) -> Problem:
    op = rng.choice([o for o in OPS if o in ops.split(",")])
    if op == "sort":
        return Problem(op, tuple(rng.randrange(10) for _ in range(3)))
    a, b = rng.randint(1, max_operand), rng.randint(1, max_operand)
    if op == "-":  # no negative answers: the model's weakest case is not the point
        a, b = max(a, b), min(a, b)
    return Problem(op, (a, b))


def problem_space(ops: str, max_operand: int) -> int:
    """How many distinct problems the generator can draw (to size a held-out split)."""
    n = 0
    for op in ops.split(","):
        n += {"+": max_operand**2, "-": max_operand * (max_operand + 1) // 2, "sort": 1000}[op]
    return n


def final_answer(response: str, op: str = "+") -> str | None:
    """The last number a response writes (for 'sort': the digits of its last line, joined)."""
    if op == "sort":
        lines = [line for line in response.strip().splitlines() if re.search(r"\d", line)]
        return "".join(re.findall(r"\d", lines[-1])) if lines else None
    numbers = _NUMBER.findall(response)
    return numbers[-1] if numbers else None


def is_bare(response: str, problem: Problem) -> bool:
    """The format term: the response is the answer and nothing else (a final period allowed)."""
    return _is_bare(response, problem.answer, problem.op)


def _is_bare(response: str, answer: str, op: str) -> bool:
    text = response.strip().rstrip(".").strip()
    if op == "sort":
        text = text.replace(" ", "").replace(",", "")
    return text == answer


def score(problem: Problem, response: str, format_coef: float) -> tuple[float, float, float]:
    """(reward, exact, format) of one response, each exact/format in {0, 1}."""
    exact = float(final_answer(response, problem.op) == problem.answer)
    bare = float(is_bare(response, problem))
    return exact + format_coef * bare, exact, bare


def split_problems(
    rng: random.Random, ops: str, max_operand: int, held_out: int
) -> tuple[list[Problem], list[Problem]]:
    """``held_out`` distinct problems, and every other problem of the space for training
    (shuffled): the held-out rate is measured on problems RL never saw."""
    space = problem_space(ops, max_operand)
    if held_out >= space:
        raise ValueError(f"{held_out} held-out problems leave none to train on ({space} in all)")
    seen: set[Problem] = set()
    held: list[Problem] = []
    while len(held) < held_out:
        p = make_problem(rng, ops, max_operand)
        if p not in seen:
            seen.add(p)
            held.append(p)
    every = _every_problem(ops, max_operand)
    training = [p for p in every if p not in seen]
    rng.shuffle(training)
    return held, training


def _every_problem(ops: str, max_operand: int) -> list[Problem]:
    out: list[Problem] = []
    for op in ops.split(","):
        if op == "sort":
            out += [Problem(op, (a, b, c)) for a in range(10) for b in range(10) for c in range(10)]
            continue
        for a in range(1, max_operand + 1):
            for b in range(1, max_operand + 1):
                if op == "+" or a >= b:
                    out.append(Problem(op, (a, b)))
    return out


# --- the task as rows and reward functions: what a user's files hold ------------------------------
def to_rows(problems: list[Problem]) -> list[dict[str, Any]]:
    """One row a problem: the prompt, and the columns the reward functions read."""
    return [{"prompt": p.question, "answer": p.answer, "op": p.op} for p in problems]


def make_rows(seed: int, ops: str, max_operand: int, held_out: int) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows), the split `split_problems` draws from ``seed``."""
    held, training = split_problems(random.Random(seed), ops, max_operand, held_out)
    return to_rows(training), to_rows(held)


def _text(completion: str | list[dict[str, str]]) -> str:
    """A completion as text: TRL passes chat completions as a list of one assistant message."""
    return completion if isinstance(completion, str) else completion[0]["content"]


def exact(prompts: list, completions: list, answer: list[str], op: list[str], **kwargs: Any) -> list[float]:
    """1.0 where the completion's final answer is the true one, else 0.0."""
    return [float(final_answer(_text(c), o) == a) for c, a, o in zip(completions, answer, op, strict=True)]


def bare(prompts: list, completions: list, answer: list[str], op: list[str], **kwargs: Any) -> list[float]:
    """1.0 where the completion is the answer and nothing else (a final period allowed)."""
    return [float(_is_bare(_text(c), a, o)) for c, a, o in zip(completions, answer, op, strict=True)]


def write_files(
    folder: Path, seed: int = 0, ops: str = "+,-", max_operand: int = 20, held_out: int = 200
) -> None:
    """``train.jsonl`` and ``eval.jsonl`` in ``folder``: the task as a user's files."""
    train, held = make_rows(seed, ops, max_operand, held_out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", held)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m ppo_torchrl.rlhf.examples.arithmetic OUT_FOLDER")
    write_files(Path(sys.argv[1]))
    print(f"wrote {sys.argv[1]}/train.jsonl and eval.jsonl; reward: {__file__}:exact")
