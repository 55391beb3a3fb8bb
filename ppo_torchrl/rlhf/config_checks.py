"""The rules between `RLHFConfig`'s fields, checked after each field's own type and bounds:
one `ConfigError` line naming the field, before anything loads."""

from __future__ import annotations

from typing import Any

from ppo_torchrl.device import check_device_name
from ppo_torchrl.fields import ConfigError

# An RLHFConfig; not imported, not even for type checking: config.py imports this module.
RLHFConfig = Any

# Tasks on a real model (LoRA, the real-model defaults): the example task, or the user's files.
REAL_TASKS = ("arithmetic", "files")


def check(cfg: RLHFConfig) -> None:
    """Every rule between fields; the first broken one as a ConfigError."""
    if cfg.model is not None and cfg.model_path is not None:
        raise ConfigError("model: give --model or --model-path, not both")
    if cfg.gguf_file is not None and cfg.model_path is None:
        raise ConfigError("gguf_file: needs --model-path, the folder that holds it")
    if cfg.task in REAL_TASKS and cfg.model is None and cfg.model_path is None:
        raise ConfigError(f"task: {cfg.task} needs a real model: --model smollm2-135m or --model-path DIR")
    _check_task_files(cfg)
    if cfg.task == "sort" and cfg.model is not None:
        raise ConfigError(
            "task: the sort pipeline trains its own small models; --model needs --task arithmetic"
        )
    if cfg.task == "sort" and (cfg.kl_target is not None or cfg.clip_epsilon_high is not None):
        raise ConfigError("kl_target: --kl-target and --clip-epsilon-high are for a real model's RL")
    if cfg.kl_target is not None and cfg.kl_horizon < cfg.prompts_per_update:
        raise ConfigError(  # else one update could take beta to 0 or below (factor 1 - 0.2 n / horizon)
            f"kl_horizon: must be at least prompts_per_update = {cfg.prompts_per_update} "
            f"(got {cfg.kl_horizon})"
        )
    if cfg.dynamic_sampling and cfg.algo != "grpo":
        raise ConfigError(
            "dynamic_sampling: drops GRPO groups whose rewards are all equal; needs --algo grpo"
        )
    if cfg.task == "sort" and cfg.kl_in != ("reward" if cfg.algo == "ppo" else "loss"):
        raise ConfigError(
            "kl_in: the sort pipeline puts KL in the reward for PPO and in the loss for GRPO "
            "(--kl-in is for a real model)"
        )
    if cfg.task == "arithmetic":
        bad = [op for op in cfg.ops.split(",") if op not in ("+", "-", "sort")]
        if bad or not cfg.ops:
            raise ConfigError(f"ops: comma-separated '+', '-', 'sort' (got {cfg.ops!r})")
    check_device_name(cfg.device)
    if cfg.min_digits > cfg.max_digits:
        raise ConfigError(f"min_digits: must be at most max_digits = {cfg.max_digits} (got {cfg.min_digits})")
    if cfg.algo == "grpo" and cfg.prompts_per_update % cfg.group_size:
        raise ConfigError(
            f"prompts_per_update: must be a multiple of group_size = {cfg.group_size} "
            f"for GRPO (got {cfg.prompts_per_update})"
        )
    if cfg.n_embd % cfg.n_head:
        raise ConfigError(f"n_embd: must be a multiple of n_head = {cfg.n_head} (got {cfg.n_embd})")
    if cfg.minibatch_size > cfg.prompts_per_update * cfg.max_new_tokens:
        raise ConfigError(
            f"minibatch_size: must be at most prompts_per_update * max_new_tokens = "
            f"{cfg.prompts_per_update * cfg.max_new_tokens} token steps (got {cfg.minibatch_size})"
        )
    if cfg.task == "sort" and cfg.max_new_tokens < cfg.max_digits + 1:
        raise ConfigError(
            f"max_new_tokens: must leave room for {cfg.max_digits} digits and EOS "
            f"(at least {cfg.max_digits + 1}, got {cfg.max_new_tokens})"
        )


def _check_task_files(cfg: RLHFConfig) -> None:
    """--prompts and the rewards go together, and only with task=files."""
    files = {
        "prompts": cfg.prompts,
        "eval_prompts": cfg.eval_prompts,
        "reward_model": cfg.reward_model,
    }
    given = [name for name, value in files.items() if value is not None]
    given += [name for name in ("reward", "reward_weights") if getattr(cfg, name)]
    if cfg.task != "files" and given:
        raise ConfigError(
            f"{given[0]}: --{given[0].replace('_', '-')} is for a task from files (--prompts); "
            f"the {cfg.task} task brings its own (write arithmetic to files with "
            "python -m ppo_torchrl.rlhf.examples.arithmetic OUT to change it)"
        )
    if cfg.task == "files" and cfg.prompts is None:
        raise ConfigError("prompts: --task files needs --prompts FILE")
    if cfg.task == "files" and not cfg.reward and cfg.reward_model is None:
        raise ConfigError("reward: a task from files needs --reward PATH.py:FUNC or --reward-model DIR")
