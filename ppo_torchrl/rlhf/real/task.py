"""What a real-model RL run learns: prompt rows to train on, held-out rows, and the rewards.

From the user's files (``--prompts FILE [--eval-prompts FILE | --eval-fraction F]`` with
``--reward PATH.py:FUNC`` and/or ``--reward-model DIR``), or ``--task arithmetic``: the
example module's generated rows and its ``exact`` and ``bare`` functions, nothing special
about it but that it needs no files. Everything that can be checked without the model is
checked here, before it loads; `check_rewards` runs the rewards on a first small batch of
real completions before the run starts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.data import Rows, check_prompts, read_rows, require, split_held_out
from ppo_torchrl.rlhf.real.rewards import Reward, RewardError, TaskRewards, build_rewards

CHECK_ROWS = 4  # completions the rewards are tried on before training


@dataclass
class Task:
    name: str
    train: list[dict[str, Any]]  # walked in this order, cyclically
    held_out: list[dict[str, Any]]
    rewards: TaskRewards


def load_task(cfg: RLHFConfig, reward_model: Any = None) -> Task:
    """The task ``cfg`` names, its files read and checked, its reward functions imported."""
    if cfg.task == "arithmetic":
        from ppo_torchrl.rlhf.examples import arithmetic

        train, held = arithmetic.make_rows(cfg.seed, cfg.ops, cfg.max_operand, cfg.eval_size)
        rewards = [Reward("exact", arithmetic.exact, 1.0), Reward("bare", arithmetic.bare, cfg.format_coef)]
        return Task("arithmetic", train, held, TaskRewards(rewards))
    rows = _prompt_rows(cfg.prompts, "prompts")
    if cfg.eval_prompts is not None:
        train, held = rows, _prompt_rows(cfg.eval_prompts, "eval_prompts")
        order = list(range(len(train)))
        random.Random(cfg.seed).shuffle(order)  # the training rows in a seeded order, as split below
        train = train.subset(order)
    else:
        train, held = split_held_out(rows, cfg.eval_fraction, cfg.seed, "prompts")
    rewards = build_rewards(cfg.reward, cfg.reward_weights, reward_model)
    return Task("files", train.rows, held.rows, TaskRewards(rewards))


def _prompt_rows(path: str, what: str) -> Rows:
    rows = read_rows(path, what)
    require(rows, ("prompt",), what)
    check_prompts(rows, what)
    return rows


def check_rewards(task: Task, generate: Any) -> None:
    """Every reward on the first `CHECK_ROWS` training rows' greedy completions (``generate``:
    rows -> (texts, ids)); one ConfigError line for the first that fails."""
    rows = task.train[:CHECK_ROWS]
    texts, ids = generate(rows)
    try:
        task.rewards(rows, texts, ids)
    except RewardError as err:
        raise ConfigError(f"{err} (checked on {len(rows)} completions before training)") from None
