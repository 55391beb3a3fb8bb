"""Item 4 — the approximate KL divergence the project logs.

Two sample estimators of KL(pi_old || pi_new), both over actions drawn from pi_old:

    k1 = mean(log pi_old - log pi_new)          = mean(-log r)       can be negative
    k3 = mean((r - 1) - log r)                                       never negative

ClipPPOLoss's ``kl_approx`` is k1. PPOUpdate logs it as ``kl_approx`` (the mean over the
update's minibatch steps, each measured before its own step); ``--explain`` reports both
k1 and k3 of the final policy (``kl_k1_final``, ``kl_k3_final``).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings

from ppo_torchrl import LossParams, PPOUpdate, make_loss, make_optimizer
from ppo_torchrl.run.explain import last_update_stats
from specs import hand
from specs.cases import PolicyCase, policy_cases
from specs.check import agree, differ
from specs.rig import actor_table, loss_outputs, policy_batch, table_actor

LOGITS = [[0.0, math.log(3.0)]]  # pi_new(.|0) = [1/4, 3/4]


def test_kl_worked_example() -> None:
    """Two samples in state 0: a=1 with pi_old = 0.375 (r = 0.75/0.375 = 2) and a=0 with
    pi_old = 0.5 (r = 0.25/0.5 = 1/2).

        k1 = mean(-ln 2, +ln 2) = 0
        k3 = mean(2 - 1 - ln 2, 1/2 - 1 + ln 2) = mean(0.306853, 0.193147) = 0.25

    The policy moved, yet k1 says 0: its samples cancel. One sample with r = 1.25 gives
    k1 = -ln 1.25 = -0.223144 (negative) while k3 = 0.25 - 0.223144 = 0.026856.
    """
    logp_new = hand.log_softmax(LOGITS)[0, [1, 0]]
    logp_old = np.log([0.375, 0.5])
    assert math.isclose(hand.kl_k1(logp_new, logp_old), 0.0, abs_tol=1e-15)
    assert math.isclose(hand.kl_k3(logp_new, logp_old), 0.25)
    params = LossParams(clip_epsilon=0.3, normalize_advantage=False)
    out = loss_outputs(params, table_actor(LOGITS), None, policy_batch([0, 0], [1, 0], logp_old, [1.0, 1.0]))
    agree("kl_approx (k1)", 0.0, out["kl_approx"], atol=1e-7)
    differ("k1 vs k3 on this batch", hand.kl_k1(logp_new, logp_old), hand.kl_k3(logp_new, logp_old), 0.2)

    one = policy_batch([0], [1], np.log([0.6]), [1.0])  # r = 0.75 / 0.6 = 1.25
    agree(
        "kl_approx (k1)", -math.log(1.25), loss_outputs(params, table_actor(LOGITS), None, one)["kl_approx"]
    )


@settings(max_examples=40, deadline=None)
@given(policy_cases(max_log_ratio=1.5))
def test_kl_property(case: PolicyCase) -> None:
    """On random batches kl_approx = k1 = mean(log pi_old - log pi_new)."""
    batch = policy_batch(case.states, case.actions, case.logp_old, case.advantage)
    params = LossParams(clip_epsilon=0.3, normalize_advantage=False)
    out = loss_outputs(params, table_actor(case.logits), None, batch)
    agree("kl_approx", hand.kl_k1(case.logp_new, case.logp_old), out["kl_approx"], atol=2e-6)


def test_what_the_project_logs() -> None:
    """One PPOUpdate step (epochs = 1, one minibatch) on a 4-sample batch: the logged
    ``kl_approx`` is k1 of the policy *before* the step; ``last_update_stats`` then
    reports k1 and k3 of the policy *after* it."""
    logits = np.array([[0.3, -0.2], [1.0, 0.0]])
    states, actions = [0, 0, 1, 1], [0, 1, 0, 1]
    logp_old = np.log([0.45, 0.6, 0.8, 0.2])
    advantage = [1.0, -0.5, 0.3, 2.0]
    params = LossParams(clip_epsilon=0.3)  # advantages normalised
    actor = table_actor(logits)
    loss = make_loss(params, actor, None)
    update = PPOUpdate(
        loss, make_optimizer(loss, lr=0.05), None, epochs=1, minibatch_size=4, max_grad_norm=0.5
    )
    batch = policy_batch(states, actions, logp_old, advantage)
    metrics = update(batch)
    before = hand.log_softmax(logits)[states, actions]
    agree("logged kl_approx = k1 before the step", hand.kl_k1(before, logp_old), metrics["kl_approx"])

    after_logits = actor_table(actor).detach().double().numpy()
    assert np.abs(after_logits - logits).max() > 0.01, "the step should move the policy"
    after = hand.log_softmax(after_logits)[states, actions]
    stats = last_update_stats(actor, batch, params.clip_epsilon, metrics)
    agree("kl_k1_final", hand.kl_k1(after, logp_old), stats["kl_k1_final"])
    agree("kl_k3_final", hand.kl_k3(after, logp_old), stats["kl_k3_final"])
