"""The real-model task: small-number arithmetic (and digit sorting), scored by a rule.

    prompt  "What is 13 + 14? Answer with the number only."      answer "27"

A response's answer is the last number it writes, read the way GSM8K-style verifiers read a
final answer: "13 + 14 = 27" and "27" both answer 27; "13 + 14 = 25" answers 25. The
reward is

    reward = [answer == truth]  +  format_coef * [the response is the answer alone]

and the two parts are reported separately (``exact`` and ``format``), so a rising format
term can never pass for learning the task. Problems are generated from a seed, nothing is
downloaded; ``max_operand`` and ``ops`` set the difficulty. SmolLM2-135M-Instruct answers
about a third of the default problems exactly (experiments/results/rlhf_real_model_*.json).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

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
    text = response.strip().rstrip(".").strip()
    if problem.op == "sort":
        text = text.replace(" ", "").replace(",", "")
    return text == problem.answer


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
