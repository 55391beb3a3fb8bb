"""The names metrics get in MLflow: grouped by prefix, because MLflow's UI draws one section of
charts per prefix (``loss/``, ``train/``, ``eval/``, ``perf/``; ``system/`` is MLflow's own).

Only the tracked names change: the core, the summary JSON and the checkpoints keep the plain
names the PPO update returns (``loss_objective``, ``clip_fraction``, ...). The README has the
full mapping.
"""

from __future__ import annotations

# Measured on held-out prompts or episodes rather than on the data being learned from.
EVAL_NAMES = {"S0", "S0_greedy", "best_constant_score"}


def grouped_name(key: str) -> str:
    """``loss_objective`` -> ``loss/objective``, ``eval_return`` -> ``eval/return``,
    ``frames_per_second`` -> ``perf/frames_per_second``, ``clip_fraction`` ->
    ``train/clip_fraction``; a name that already has a prefix is kept."""
    if "/" in key:
        return key
    if key.startswith("loss_"):
        return "loss/" + key.removeprefix("loss_")
    if key.startswith("eval_"):
        return "eval/" + key.removeprefix("eval_")
    if key in EVAL_NAMES or key.startswith(("final_", "heldout_", "base_")) or "_heldout_" in key:
        return "eval/" + key
    if key.endswith(("_per_second", "_seconds")):
        return "perf/" + key
    return "train/" + key
