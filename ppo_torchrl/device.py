"""The ``device`` setting: its allowed names (checked without torch) and what they resolve to."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ppo_torchrl.fields import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(name: str) -> None:
    if not DEVICE_NAME.fullmatch(name):
        raise ConfigError(f"device: must be 'auto', 'cpu', 'cuda' or 'cuda:N' (got {name!r})")


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when torch sees a GPU, else the CPU; a CUDA device that is not there is
    refused in one line (ConfigError) before anything starts."""
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} asked for, but torch sees no CUDA device (use 'cpu')")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device: {name!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)"
            )
    return device
