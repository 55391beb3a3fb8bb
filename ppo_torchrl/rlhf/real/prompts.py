"""Prompts and completions as token ids, the same way in every stage (SFT, reward model, RL).

A prompt goes through the tokenizer's chat template where it has one: a string as one user
message, a list of messages as it is, with the generation prompt (the assistant's turn
opening) after it. A tokenizer without a template takes a string prompt as plain text; a
list of messages then has no defined text and is refused (one line).

A completion is its text's tokens, with no special tokens added, and then EOS: what the
policy writes when it stops, and what SFT teaches it to write.
"""

from __future__ import annotations

from typing import Any

from ppo_torchrl.fields import ConfigError


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_ids(tokenizer: Any, prompt: str | list[dict[str, str]]) -> list[int]:
    """The prompt as the model was tuned to see it: its chat template, where it has one."""
    if has_chat_template(tokenizer):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    if not isinstance(prompt, str):
        raise ConfigError(
            "prompt: chat messages need a tokenizer with a chat template, and this model's has none; "
            "give the prompts as strings"
        )
    return list(tokenizer(prompt)["input_ids"])


def completion_ids(tokenizer: Any, text: str, eos: bool = True) -> list[int]:
    """The completion's tokens (no special tokens added), then EOS unless ``eos`` is False."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return [*ids, tokenizer.eos_token_id] if eos else ids


def prompt_text(prompt: str | list[dict[str, str]]) -> str:
    """A prompt for a table or a log line: the string, or the last message's content."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]
