"""Names a package exports, imported on first use (PEP 562): ``python -m ppo_torchrl.train
--help`` and the one-line errors answer before torch and TorchRL load, and importing a
parameter object never loads the modules that use it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``, whose ``exports`` map each
    public name to the submodule (relative to ``package``) that defines it."""
    names = sorted(exports)

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return getattr_, lambda: names, names
