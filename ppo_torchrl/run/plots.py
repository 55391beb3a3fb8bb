"""The learning-curve plot of a training run."""

from __future__ import annotations

from pathlib import Path


def plot_learning_curve(
    episode_frames: list[int],
    episode_returns: list[float],
    eval_points: list[tuple[int, float]],
    threshold: float | None,
    path: str | Path,
    title: str,
) -> Path:
    """Training-episode returns (and their running mean) and greedy evaluations vs frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    if episode_returns:
        ax.plot(episode_frames, episode_returns, ".", ms=2, alpha=0.3, label="training episode")
        window = min(20, len(episode_returns))
        smooth = np.convolve(episode_returns, np.ones(window) / window, mode="valid")
        ax.plot(episode_frames[window - 1 :], smooth, label=f"running mean ({window})")
    if eval_points:
        xs, ys = zip(*eval_points, strict=True)
        ax.plot(xs, ys, "o-", label="greedy evaluation")
    if threshold is not None:
        ax.axhline(threshold, ls="--", c="gray", label=f"solved ({threshold:g})")
    ax.set(xlabel="environment frames", ylabel="episode return", title=title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
