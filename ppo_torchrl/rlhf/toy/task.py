"""The task: write the prompt's digits in sorted order, then stop.

    prompt      "sort 3 1 2 >"          completion  "1 2 3" + EOS        score 1.0

The true rule scores a completion position by position against the sorted digits plus the
end-of-sequence, so a partly right answer earns partial credit:

    score = (#{i : digit_i == sorted_i} + [stopped right after the last digit]) / (k + 1)

for a prompt of k digits. The right answer depends on the prompt; the best completion that
ignores the prompt scores about a fifth of the maximum (`best_constant_score`), so a policy
that collapses onto one favourite output cannot solve the task. Everything here is text and
plain Python: any tokenizer can serve the task.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass

PROMPT_WORD, PROMPT_END = "sort", ">"


@dataclass(frozen=True)
class Example:
    digits: tuple[int, ...]

    @property
    def prompt(self) -> str:
        return " ".join([PROMPT_WORD, *map(str, self.digits), PROMPT_END])

    @property
    def answer(self) -> tuple[int, ...]:
        return tuple(sorted(self.digits))


def make_examples(n: int, rng: random.Random, min_digits: int = 3, max_digits: int = 6) -> list[Example]:
    return [
        Example(tuple(rng.randrange(10) for _ in range(rng.randint(min_digits, max_digits))))
        for _ in range(n)
    ]


def digits_of(text: str) -> tuple[int, ...]:
    """The digits a completion wrote, in order (any tokenizer's spacing)."""
    return tuple(int(d) for d in re.findall(r"\d", text))


def rule_score(example: Example, written: tuple[int, ...], stopped: bool) -> float:
    """The true rule, in [0, 1]: matched positions plus a correct stop, over k + 1."""
    target = example.answer
    matched = sum(a == b for a, b in zip(written, target, strict=False))
    stop_right = stopped and len(written) == len(target)
    return (matched + stop_right) / (len(target) + 1)


# --- demonstrations and preference pairs ---------------------------------------------------
def copy_order(example: Example) -> tuple[int, ...]:
    """The lazy labeller's mistake: the digits as given, not sorted."""
    return example.digits


def corrupt(answer: tuple[int, ...], rng: random.Random) -> tuple[int, ...]:
    """A plausible near-miss: one digit replaced, two swapped, one dropped or one added."""
    out = list(answer)
    kind = rng.choice(("replace", "swap", "drop", "add"))
    i = rng.randrange(len(out))
    if kind == "replace":
        out[i] = (out[i] + rng.randint(1, 9)) % 10
    elif kind == "swap" and len(out) > 1:
        j = rng.randrange(len(out) - 1)
        out[j], out[j + 1] = out[j + 1], out[j]
    elif kind == "drop" and len(out) > 1:
        del out[i]
    else:
        out.insert(i, rng.randrange(10))
    return tuple(out)


def demonstration(example: Example, wrong_share: float, rng: random.Random) -> tuple[int, ...]:
    """An SFT target: the sorted digits, or (with probability ``wrong_share``) the prompt's order."""
    return copy_order(example) if rng.random() < wrong_share else example.answer


def candidate(example: Example, rng: random.Random) -> tuple[tuple[int, ...], bool]:
    """A completion to be judged: mostly right answers and near misses (what a trained policy
    writes, and what the reward model must tell apart), some copies, unstopped or random."""
    kind = rng.random()
    if kind < 0.3:
        return example.answer, True
    if kind < 0.45:
        return copy_order(example), True
    if kind < 0.85:
        return corrupt(example.answer, rng), True
    if kind < 0.92:
        return example.answer, False  # never stopped
    return tuple(rng.randrange(10) for _ in range(len(example.digits))), True


@dataclass(frozen=True)
class Pair:
    example: Example
    chosen: tuple[tuple[int, ...], bool]
    rejected: tuple[tuple[int, ...], bool]


def preference_pairs(examples: list[Example], rng: random.Random, label_noise: float) -> list[Pair]:
    """Two candidates per prompt, ordered by the rule (ties skipped), each label flipped with
    probability ``label_noise`` — annotators who are usually but not always right."""
    pairs = []
    for example in examples:
        a, b = candidate(example, rng), candidate(example, rng)
        sa, sb = rule_score(example, *a), rule_score(example, *b)
        if sa == sb:
            continue
        chosen, rejected = (a, b) if sa > sb else (b, a)
        if rng.random() < label_noise:
            chosen, rejected = rejected, chosen
        pairs.append(Pair(example, chosen, rejected))
    return pairs


def best_constant_score(examples: list[Example]) -> float:
    """Mean score of the best prompt-independent completion on ``examples``.

    The score is a sum over positions, so for a fixed completion length the best constant
    picks, at each position, the digit that most often sits there in the sorted answers
    (weighted by 1 / (k + 1)); the best length is then searched over.
    """
    best = 0.0
    max_len = max(len(e.digits) for e in examples)
    for length in range(1, max_len + 1):
        total = 0.0
        for i in range(length):
            weight: Counter[int] = Counter()
            for e in examples:
                if i < len(e.digits):
                    weight[e.answer[i]] += 1 / (len(e.digits) + 1)
            total += max(weight.values(), default=0.0)
        stop = sum(1 / (len(e.digits) + 1) for e in examples if len(e.digits) == length)
        best = max(best, (total + stop) / len(examples))
    return best
