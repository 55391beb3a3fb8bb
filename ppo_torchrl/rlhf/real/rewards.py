"""The task's rewards: the user's functions (TRL's convention) and a trained reward model.

A reward function is ``--reward PATH.py:FUNC`` (or ``package.module:FUNC``) and is called as
``GRPOTrainer`` calls its ``reward_funcs``, so one written for TRL runs unchanged:

    FUNC(prompts=[...], completions=[...], completion_ids=[[...], ...], **columns) -> list[float | None]

- ``prompts``: each row's ``prompt`` as the file holds it (a string or a list of messages);
- ``completions``: strings where the prompt is a string; where it is a list of chat messages,
  a list of one assistant message, ``[{"role": "assistant", "content": text}]``, as TRL passes
  them for conversational data (``completion[0]["content"]`` is the text);
- ``completion_ids``: the generated token ids, without the EOS;
- every other field of the rows, as a keyword list in row order.

``None`` means "this function does not score this sample": the total is the weighted sum
over the functions that did (TRL's nansum). A sample no function scored gets 0 and is
counted (``unscored``). A reward model (``--reward-model DIR``) is one more function, named
``reward_model``, scoring prompt + completion + EOS at the last token.

Anything else a function returns (a count that differs from the batch, a string, NaN or an
infinity) or raises is a `RewardError`: one line naming the function.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ppo_torchrl.fields import ConfigError

if TYPE_CHECKING:
    import torch

MODEL_NAME = "reward_model"


class RewardError(RuntimeError):
    """A reward function raised or returned something that is not a reward: one line."""


@dataclass
class Reward:
    name: str
    fn: Callable[..., Sequence[Any]]
    weight: float


def load_function(spec: str, modules: dict[str, Any] | None = None) -> Callable[..., Sequence[Any]]:
    """``PATH.py:FUNC`` or ``package.module:FUNC`` -> the callable; ConfigError otherwise.
    ``modules``: files already imported for this run, so that two functions of one file
    share it (and its module-level state) instead of each running it again."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise ConfigError(f"reward: expected PATH.py:FUNC or module:FUNC (got {spec!r})")
    modules = {} if modules is None else modules
    if where in modules:
        module = modules[where]
    elif where.endswith(".py") or "/" in where or Path(where).exists():
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"reward: no such file: {where}")
        module_name = f"ppo_torchrl_reward_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"reward: cannot import {where} (not a Python file)")
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:
            raise ConfigError(f"reward: importing {where} failed: {_last_line(err)}") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as err:
            raise ConfigError(f"reward: cannot import module {where}: {_last_line(err)}") from None
    modules[where] = module
    fn = getattr(module, name, None)
    if fn is None:
        raise ConfigError(f"reward: {where} has no function {name!r}")
    if not callable(fn):
        raise ConfigError(f"reward: {where}:{name} is not a function")
    return fn


def _last_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[-1]}" if text else type(err).__name__


def build_rewards(specs: list[str], weights: list[float], reward_model: Callable | None) -> list[Reward]:
    """The task's rewards in order (functions, then the reward model), each with its weight
    (all 1.0 when ``weights`` is empty). Names are the functions' own, made unique."""
    rewards: list[Reward] = []
    modules: dict[str, Any] = {}
    for spec in specs:
        fn = load_function(spec, modules)
        name = spec.rpartition(":")[2]
        taken = {r.name for r in rewards}
        unique = (
            name
            if name not in taken
            else next(f"{name}_{i}" for i in range(2, 99) if f"{name}_{i}" not in taken)
        )
        rewards.append(Reward(unique, fn, 1.0))
    if reward_model is not None:
        rewards.append(Reward(MODEL_NAME, reward_model, 1.0))
    if weights:
        if len(weights) != len(rewards):
            raise ConfigError(
                f"reward_weights: {len(weights)} weights for {len(rewards)} rewards "
                f"({', '.join(r.name for r in rewards)}); give one each, in that order"
            )
        for reward, weight in zip(rewards, weights, strict=True):
            reward.weight = weight
    return rewards


def call_reward(
    reward: Reward,
    prompts: list[Any],
    completions: list[Any],
    completion_ids: list[list[int]],
    columns: dict[str, list[Any]],
) -> list[float | None]:
    """One function's rewards for a batch, checked; RewardError (one line) otherwise."""
    try:
        out = reward.fn(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
    except Exception as err:
        raise RewardError(f"reward {reward.name} raised {_last_line(err)}") from err
    if isinstance(out, (str, bytes)) or (not isinstance(out, Sequence) and not hasattr(out, "tolist")):
        raise RewardError(f"reward {reward.name} returned {type(out).__name__}, not a list of numbers")
    out = list(out.tolist() if hasattr(out, "tolist") else out)
    if len(out) != len(prompts):
        raise RewardError(f"reward {reward.name} returned {len(out)} values for {len(prompts)} completions")
    checked: list[float | None] = []
    for value in out:
        if value is None:
            checked.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise RewardError(f"reward {reward.name} returned {value!r}, not a number")
        if not math.isfinite(float(value)):
            raise RewardError(f"reward {reward.name} returned {value!r}")
        checked.append(float(value))
    return checked


class TaskRewards:
    """Every reward of a task over a batch of rows and their completions."""

    def __init__(self, rewards: list[Reward]) -> None:
        self.rewards = rewards

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rewards]

    def __call__(
        self, rows: list[dict[str, Any]], texts: list[str], ids: list[list[int]]
    ) -> tuple[torch.Tensor, dict[str, list[float | None]]]:
        """(the weighted total per sample, each function's values)."""
        prompts = [row["prompt"] for row in rows]
        completions = [
            t if isinstance(p, str) else [{"role": "assistant", "content": t}]
            for p, t in zip(prompts, texts, strict=True)
        ]
        keys = list(dict.fromkeys(k for row in rows for k in row if k != "prompt"))
        columns = {k: [row.get(k) for row in rows] for k in keys}
        values = {r.name: call_reward(r, prompts, completions, ids, columns) for r in self.rewards}
        total = []
        for i in range(len(rows)):
            scored = [(r.weight, values[r.name][i]) for r in self.rewards if values[r.name][i] is not None]
            total.append(sum(w * v for w, v in scored))
        import torch  # here: the command line imports this module for RewardError, before torch

        return torch.tensor(total, dtype=torch.float32), values


def reward_model_function(folder: str, device: torch.device) -> Callable[..., list[float]]:
    """``--reward-model DIR`` as a reward function: the model's score of prompt + completion."""
    from ppo_torchrl.rlhf.real.reward_model import load_reward_model, score_completions

    tokenizer, model = load_reward_model(folder, device)

    def reward_model(prompts: list, completions: list, **kwargs: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
        return score_completions(tokenizer, model, prompts, texts).tolist()

    return reward_model


def means(values: dict[str, list[float | None]]) -> dict[str, float]:
    """Each function's mean over the samples it scored (NaN where it scored none)."""
    out = {}
    for name, column in values.items():
        scored = [v for v in column if v is not None]
        out[name] = sum(scored) / len(scored) if scored else float("nan")
    return out
