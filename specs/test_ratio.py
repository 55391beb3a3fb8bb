"""Item 1 — the probability ratio.

    r = exp(log pi_new(a|s) - log pi_old(a|s)) = pi_new(a|s) / pi_old(a|s)

pi_old is the policy that collected the batch (its log-prob is stored as
``action_log_prob``), pi_new the policy being trained. ClipPPOLoss never outputs r per
sample; it logs ``mean_ratio`` and ``max_ratio``, which a one-sample batch turns into r.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from torchrl.envs import EnvBase

from ppo_torchrl import LossParams, PPOConfig, make_actor_critic
from specs import hand, hand_update
from specs.cases import PolicyCase, policy_cases
from specs.check import agree
from specs.rig import linear_layers, loss_outputs, policy_batch, table_actor


def test_ratio_worked_example() -> None:
    """State 0 has logits [0, ln 3], so pi_new(.|0) = [1/4, 3/4]; state 1 has [0, 0].

    | sample | s | a | pi_new | pi_old | r = pi_new / pi_old |
    |--------|---|---|--------|--------|---------------------|
    | 0      | 0 | 1 | 0.75   | 0.6    | 1.25                |
    | 1      | 0 | 0 | 0.25   | 0.5    | 0.5                 |
    | 2      | 1 | 0 | 0.5    | 0.625  | 0.8                 |

    mean_ratio = (1.25 + 0.5 + 0.8) / 3 = 0.85 and max_ratio = 1.25.
    """
    logits = [[0.0, math.log(3.0)], [0.0, 0.0]]
    states, actions = [0, 0, 1], [1, 0, 0]
    logp_old = np.log([0.6, 0.5, 0.625])
    r = hand.ratio(hand.log_softmax(logits)[states, actions], logp_old)
    agree("r = exp(log pi_new - log pi_old)", [1.25, 0.5, 0.8], r, rtol=1e-12)
    agree("r = pi_new / pi_old", hand.softmax(logits)[states, actions] / np.exp(logp_old), r, rtol=1e-12)

    params = LossParams(clip_epsilon=0.3, normalize_advantage=False)
    actor = table_actor(logits)
    out = loss_outputs(params, actor, None, policy_batch(states, actions, logp_old, [1.0, 1.0, 1.0]))
    agree("mean_ratio", 0.85, out["mean_ratio"])
    agree("max_ratio", 1.25, out["max_ratio"])
    for i in range(3):
        one = policy_batch(states[i : i + 1], actions[i : i + 1], logp_old[i : i + 1], [1.0])
        agree(f"r of sample {i}", r[i], loss_outputs(params, actor, None, one)["mean_ratio"])


@settings(max_examples=40, deadline=None)
@given(policy_cases(max_log_ratio=1.5))
def test_ratio_property(case: PolicyCase) -> None:
    """On random tables and samples, mean_ratio = mean(r) and max_ratio = max(r)."""
    out = loss_outputs(
        LossParams(clip_epsilon=0.3, normalize_advantage=False),
        table_actor(case.logits),
        None,
        policy_batch(case.states, case.actions, case.logp_old, case.advantage),
    )
    agree("mean_ratio", case.ratio.mean(), out["mean_ratio"])
    agree("max_ratio", case.ratio.max(), out["max_ratio"])


def test_ratio_with_the_projects_cartpole_actor(cartpole: tuple[PPOConfig, EnvBase]) -> None:
    """The real actor: pi(.|s) = softmax(MLP(s)), the MLP being Linear-act-Linear-act-Linear
    (act = cfg.activation, tanh by default).

    1. Collect 6 CartPole steps with make_actor_critic's actor: the stored
       ``action_log_prob`` is log softmax(MLP_old(s))[a], recomputed here in NumPy.
    2. Nudge every weight (a stand-in for a gradient step): the loss's ratios are
       softmax(MLP_new(s))[a] / softmax(MLP_old(s))[a], again recomputed in NumPy.
    """
    cfg, env = cartpole
    torch.manual_seed(cfg.seed)  # make_actor_critic draws its weights from torch's generator
    actor, critic = make_actor_critic(env, hidden_sizes=cfg.hidden_sizes, activation=cfg.activation)
    with torch.no_grad():  # as a collector does
        batch = env.rollout(6, policy=actor, break_when_any_done=False)
    obs, actions = batch["observation"].numpy()[0], batch["action"].numpy()[0]
    logp_old = hand.log_softmax(hand_update.mlp(*linear_layers(actor), obs, cfg.activation))[
        np.arange(6), actions
    ]
    agree("action_log_prob = log pi_old(a|s)", logp_old, batch["action_log_prob"][0])

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=generator))
    logp_new = hand.log_softmax(hand_update.mlp(*linear_layers(actor), obs, cfg.activation))[
        np.arange(6), actions
    ]
    r = hand.ratio(logp_new, batch["action_log_prob"][0].double().numpy())
    assert np.abs(r - 1).max() > 0.05, "the nudge should move the policy"
    batch["advantage"] = torch.zeros(1, 6, 1)
    batch["value_target"] = torch.zeros(1, 6, 1)
    out = loss_outputs(cfg.params(LossParams), actor, critic, batch)
    agree("mean_ratio", r.mean(), out["mean_ratio"])
    agree("max_ratio", r.max(), out["max_ratio"])
