"""Statistics over seeds, as rliable recommends (Agarwal et al., 2021, "Deep RL at the Edge
of the Statistical Precipice"): the mean and the interquartile mean (IQM: the mean of the
middle 50% of runs, robust to one lucky or one broken seed), each with a 95% percentile
bootstrap confidence interval over runs. With one task per grid point rliable's stratified
bootstrap is a plain bootstrap over seeds, so this is NumPy and nothing else: rliable 1.2
would bring arch, statsmodels, pandas and seaborn for it, and fails on import with pandas 3.
experiments/check_rliable.py compares the two on the same scores: equal point estimates,
intervals equal up to bootstrap noise (results/rliable_check.txt).

Learning curves: the mean of every seed's greedy evaluations against frames with a bootstrap
band; a run that stopped early (``stop_when_solved``) holds its last evaluation, as the
policy it ended with would. The many-seeds run (seeds_run.py) and sweeps (sweep/) report both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

REPS = 10_000  # bootstrap resamples of the final scores (rliable's examples use 2,000 to 50,000)
CURVE_REPS = 1_000  # per point of a learning curve


def iqm(scores: Sequence[float]) -> float:
    """Interquartile mean: drop the lowest and highest int(n/4) scores (scipy's trim_mean at
    0.25, which rliable uses), average the rest."""
    x = np.sort(np.asarray(scores, dtype=float))
    cut = int(0.25 * len(x))
    return float(x[cut : len(x) - cut].mean())


def bootstrap_ci(
    scores: Sequence[float],
    statistic: Callable[[np.ndarray], float],
    reps: int = REPS,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over resamples of ``scores`` (with
    replacement, same size). One score gives a zero-width interval: there is nothing to resample."""
    x = np.asarray(scores, dtype=float)
    if len(x) == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, len(x), size=(reps, len(x)))]
    stats = np.array([statistic(s) for s in samples])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def summarize(scores: Sequence[float]) -> dict[str, Any]:
    """Mean and IQM of final scores with their 95% bootstrap intervals."""
    if not scores:
        return {"runs": 0}
    return {
        "runs": len(scores),
        "mean": float(np.mean(scores)),
        "mean_ci95": bootstrap_ci(scores, np.mean),
        "iqm": iqm(scores),
        "iqm_ci95": bootstrap_ci(scores, iqm),
        "min": float(np.min(scores)),
        "max": float(np.max(scores)),
    }


def curve_band(curves: Sequence[Sequence[tuple[int, float]]]) -> dict[str, list[float]]:
    """Mean of several ``[(frames, return), ...]`` curves on the union of their frames, with
    a 95% bootstrap band; each curve holds its value from its first point to the end."""
    curves = [sorted(c) for c in curves if c]
    frames = sorted({f for c in curves for f, _ in c})
    mean, low, high = [], [], []
    for i, f in enumerate(frames):
        values = [v for v in (_value_at(c, f) for c in curves) if v is not None]
        mean.append(float(np.mean(values)))
        lo, hi = bootstrap_ci(values, np.mean, reps=CURVE_REPS, seed=i)
        low.append(lo)
        high.append(hi)
    return {"frames": frames, "mean": mean, "low": low, "high": high}


def _value_at(curve: list[tuple[int, float]], frames: int) -> float | None:
    held = None
    for f, v in curve:
        if f > frames:
            break
        held = v
    return held
