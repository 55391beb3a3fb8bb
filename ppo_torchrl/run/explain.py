"""`--explain`: the tutorial's "what just happened" walkthrough, told with this run's numbers.

Every figure comes from the last PPO update of the run: the batch it learned from, the
advantages GAE computed for it, the metrics ClipPPOLoss reported during its minibatch
steps, and the ratio pi_new/pi_old of the final policy against the policy that collected it.
The ratio statistics cost a pass of the policy over the batch, so they are measured only
when ``--explain`` asks for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential

if TYPE_CHECKING:
    from ppo_torchrl.run.config import PPOConfig
    from ppo_torchrl.run.results import TrainResult


@torch.no_grad()
def last_update_stats(
    actor: ProbabilisticTensorDictSequential,
    batch: TensorDictBase,
    clip_epsilon: float,
    metrics: dict[str, float],
) -> dict[str, float]:
    """Measure how far the last update (``metrics``) moved the policy on ``batch``, the batch
    it learned from (with GAE's ``advantage`` written)."""
    log_ratio = actor.get_dist(batch).log_prob(batch["action"]) - batch["action_log_prob"]
    ratio = log_ratio.exp()
    advantage = batch["advantage"]
    stats = dict(metrics)
    stats.update(
        batch_frames=float(batch.numel()),
        ratio_min=float(ratio.min()),
        ratio_max=float(ratio.max()),
        ratio_mean=float(ratio.mean()),
        ratio_outside_band=float(((ratio - 1).abs() > clip_epsilon).float().mean()),
        kl_k1_final=float((-log_ratio).mean()),
        kl_k3_final=float(((ratio - 1) - log_ratio).mean()),
        advantage_min=float(advantage.min()),
        advantage_max=float(advantage.max()),
        advantage_positive=float((advantage > 0).float().mean()),
    )
    return stats


def explain(cfg: PPOConfig, result: TrainResult, stats: dict[str, float]) -> str:
    """The walkthrough; ``stats`` from `last_update_stats` (empty when no update ran)."""
    s = stats
    if not s:
        return "No PPO update ran, so there is nothing to explain."
    eps = cfg.clip_epsilon
    minibatches = int(s["gradient_steps"])
    return f"""
{"=" * 60}
 PPO EXPLAINED — with this run's last update
{"=" * 60}
What just happened in the last of {result.updates} updates (at {result.frames:,} frames):

1. COLLECTION
   {cfg.num_envs} envs x {cfg.rollout_steps} steps = {int(s["batch_frames"])} frames with the
   current policy pi_old. Stored per step: observation, action, log pi_old(a|s), reward,
   terminated / truncated.

2. ADVANTAGE (GAE, gamma={cfg.gamma}, lambda={cfg.lam})
   delta_t = r_t + gamma * V(s_t+1) * (1 - terminated_t) - V(s_t)
   A_t     = delta_t + gamma * lambda * (1 - done_t) * A_t+1
   A time-limit truncation still bootstraps from V(s_t+1); only a real termination
   stops it. This batch: mean {s["advantage_mean"]:+.3f}, std {s["advantage_std"]:.3f},
   range [{s["advantage_min"]:+.2f}, {s["advantage_max"]:+.2f}],
   {s["advantage_positive"]:.0%} of actions better than expected (A > 0).
   {
        "Advantages were standardised per minibatch before the loss."
        if cfg.normalize_advantage
        else "Advantages were used as-is (no normalisation)."
    }

3. PPO UPDATE (clip epsilon={eps})
   {cfg.epochs} epochs x {minibatches // cfg.epochs} minibatches of {cfg.minibatch_size}
   = {minibatches} gradient steps on
   L = -min(r * A, clip(r, {1 - eps:.2f}, {1 + eps:.2f}) * A)
       + {cfg.critic_coef} * value loss ({cfg.critic_loss}) - {cfg.entropy_coef} * entropy
   Averaged over those steps: clip fraction {s["clip_fraction"]:.3f},
   approximate KL(pi_old || pi_new) {s["kl_approx"]:+.5f}, entropy {s["entropy"]:.3f},
   explained variance of the critic {s.get("explained_variance", float("nan")):.3f}.

   After the update, on the whole batch, r = pi_new(a|s) / pi_old(a|s) ranged over
   [{s["ratio_min"]:.3f}, {s["ratio_max"]:.3f}] (mean {s["ratio_mean"]:.3f}); {s["ratio_outside_band"]:.1%}
   of the steps ended outside [1-eps, 1+eps] = [{1 - eps:.2f}, {1 + eps:.2f}].
   KL(pi_old || pi_new): k1 = {s["kl_k1_final"]:+.5f}, k3 = {s["kl_k3_final"]:.5f}.

   - If A > 0 the objective stops rewarding r beyond 1+eps (no overconfidence).
   - If A < 0 it stops rewarding r below 1-eps (no overcorrection).
   Where the clipped branch is the minimum, that step's gradient is zero.

Result: greedy evaluation {result.final_eval_mean:.1f} ± {result.final_eval_std:.1f} over
{result.eval_episodes} episodes{" — solved" if result.solved else ""}.
"""
