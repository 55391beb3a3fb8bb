"""Plots: a training run's learning curve, and many seeds' evaluation curves with their mean and
95% bootstrap band (the many-seeds run, sweeps)."""

from __future__ import annotations

from pathlib import Path

from ppo_torchrl.run.stats import curve_band


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


def plot_curves(
    groups: dict[str, list[list[tuple[int, float]]]], threshold: float | None, path: Path, title: str
) -> Path:
    """Every seed (thin), and per group its mean with the 95% band, against frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (label, curves) in enumerate(groups.items()):
        color = f"C{k % 10}"
        for c in curves:
            if c:
                ax.plot(*zip(*sorted(c), strict=True), color=color, alpha=0.35, linewidth=0.8)
        band = curve_band(curves)
        if band["frames"]:
            ax.plot(
                band["frames"],
                band["mean"],
                color=color,
                linewidth=2,
                label=f"{label} (mean of {sum(1 for c in curves if c)})",
            )
            ax.fill_between(band["frames"], band["low"], band["high"], color=color, alpha=0.2)
    if threshold is not None:
        ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"solved ({threshold:g})")
    ax.set_xlabel("frames")
    ax.set_ylabel("greedy evaluation return")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
