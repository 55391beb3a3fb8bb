"""``agree``: assert a hand value equals a module value, and print both side by side if not."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_array(x: Any) -> np.ndarray:
    """A NumPy float64 copy of a number, a list, an array or a torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def agree(name: str, hand: Any, module: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """|module - hand| <= atol + rtol * |hand| everywhere; the message shows both values."""
    h, m = as_array(hand), as_array(module)
    if h.shape != m.shape and h.size == m.size:
        m = m.reshape(h.shape)
    ok = h.shape == m.shape and bool(np.all(np.abs(m - h) <= atol + rtol * np.abs(h)))
    if not ok:
        with np.printoptions(precision=8, suppress=True, linewidth=120):
            worst = float(np.max(np.abs(m - h))) if h.shape == m.shape else float("nan")
            raise AssertionError(
                f"{name}: hand and module disagree (max |diff| = {worst:.3g}, "
                f"rtol={rtol}, atol={atol})\n  hand   = {h}\n  module = {m}"
            )


def differ(name: str, a: Any, b: Any, at_least: float) -> None:
    """max |a - b| >= at_least: two hand formulas really give different numbers here."""
    x, y = as_array(a), as_array(b)
    gap = float(np.max(np.abs(x - y)))
    if gap < at_least:
        with np.printoptions(precision=8, suppress=True, linewidth=120):
            raise AssertionError(f"{name}: expected a gap >= {at_least}, got {gap:.3g}\n  a = {x}\n  b = {y}")
