"""Item 8 — value loss, entropy bonus, and the total loss the update backpropagates.

    loss_critic  = critic_coef * mean(d(value_target, V(s)))
                   d = 'l2': e^2 (no 1/2 factor), 'l1': |e|, 'smooth_l1': Huber with beta 1
                   clip_value: V_clip = V_old + clip(V - V_old, -eps, eps) and
                   d = max(d(target, V), d(target, V_clip))     (the pessimistic one)
    loss_entropy = -entropy_coef * mean(H(pi(.|s)))            (a bonus: minimising it raises H)
    total        = loss_objective + loss_critic + loss_entropy (every loss_* entry)

V_old is the batch's ``state_value`` (what GAE wrote when the batch was collected).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

from ppo_torchrl import LossParams, PPOUpdate, make_loss, make_optimizer
from specs import hand, hand_update
from specs.cases import floats
from specs.check import agree
from specs.rig import actor_table, critic_table, loss_outputs, policy_batch, table_actor, table_critic

V_NEW = [1.0, 2.0, 3.0, 0.5]  # the critic's table: state i -> V(i)
TARGET = [1.5, 2.0, 1.0, 3.0]  # value_target; errors e = target - V = [0.5, 0, -2, 2.5]
V_OLD = [1.1, 2.5, 2.5, 0.6]  # state_value stored in the batch
LOGITS = np.array([[0.0, 0.0], [0.0, math.log(3)], [0.0, 0.0], [0.0, math.log(3)]])
ACTIONS, ADVANTAGE = [0, 1, 0, 1], [1.0, -0.5, 0.3, 2.0]


def _batch() -> TensorDict:
    """Four samples, sample i in state i, r = 1 (pi_old = pi_new)."""
    logp = hand.log_softmax(LOGITS)[range(4), ACTIONS]
    return policy_batch(range(4), ACTIONS, logp, ADVANTAGE, TARGET, V_OLD)


def _outputs(**fields: Any) -> TensorDict:
    fields.setdefault("clip_epsilon", 0.3)
    params = LossParams(normalize_advantage=False, **fields)
    return loss_outputs(params, table_actor(LOGITS), table_critic(V_NEW), _batch())


def test_value_loss_worked_example() -> None:
    """critic_coef = 0.5, e = [0.5, 0, -2, 2.5]:
        l2:        0.5 * mean([0.25, 0, 4, 6.25])  = 0.5 * 2.625   = 1.3125
        smooth_l1: 0.5 * mean([0.125, 0, 1.5, 2])  = 0.5 * 0.90625 = 0.453125
        l1:        0.5 * mean([0.5, 0, 2, 2.5])    = 0.5 * 1.25    = 0.625
    clip_value (eps = 0.2): V - V_old = [-0.1, -0.5, 0.5, -0.1] -> clipped [-0.1, -0.2, 0.2,
    -0.1], V_clip = [1.0, 2.3, 2.7, 0.5], squared errors [0.25, 0.09, 2.89, 6.25]; the max
    with the unclipped ones is [0.25, 0.09, 4, 6.25]: 0.5 * 2.6475 = 1.32375, and
    value_clip_fraction = 2/4.
    """
    for kind, expected in (("l2", 1.3125), ("smooth_l1", 0.453125), ("l1", 0.625)):
        assert math.isclose(hand_update.value_loss(TARGET, V_NEW, kind, 0.5)[0], expected)
        agree(f"loss_critic ({kind})", expected, _outputs(critic_coef=0.5, critic_loss=kind)["loss_critic"])
    assert np.allclose(hand_update.value_loss(TARGET, V_NEW, "l2", 0.5, V_OLD, 0.2), (1.32375, 0.5))
    out = _outputs(critic_coef=0.5, clip_value=True, clip_epsilon=0.2)
    agree("loss_critic (l2, clipped)", 1.32375, out["loss_critic"])
    agree("value_clip_fraction", 0.5, out["value_clip_fraction"])


def test_entropy_bonus_worked_example() -> None:
    """H([1/2, 1/2]) = ln 2 = 0.693147, H([1/4, 3/4]) = 0.562335; mean over the four
    states 0.627741. entropy_coef = 0.01: loss_entropy = -0.01 * 0.627741 = -0.00627741.
    """
    assert math.isclose(hand.entropy(LOGITS).mean(), 0.627741, rel_tol=1e-6)
    out = _outputs(entropy_coef=0.01)
    agree("entropy", 0.627741, out["entropy"])
    agree("loss_entropy", -0.00627741, out["loss_entropy"])


def test_total_loss_and_its_gradient() -> None:
    """critic_coef = 0.5 ('l2'), entropy_coef = 0.01, r = 1, no normalisation:
        loss_objective = -mean(A) = -(1 - 0.5 + 0.3 + 2) / 4 = -0.7
        total = -0.7 + 1.3125 - 0.00627741 = 0.60622259
    PPOUpdate sums exactly these and backpropagates the sum (max_grad_norm = 0: no clipping):
        d total / d V(i)      = 0.5 * (2/4) * (V(i) - target_i) = [-0.125, 0, 0.5, -0.625]
        d total / d logits(i) = -(A_i/4) (onehot(a_i) - pi_i) - (0.01/4) dH/dlogits(i),
    dH/dlogits = -pi (log pi + H): 0 for the uniform rows, [0.20599, -0.20599] for [1/4, 3/4].
    The entropy part pushes logit 0 up and logit 1 down there: towards uniform, H rises.
    """
    params = LossParams(clip_epsilon=0.3, critic_coef=0.5, entropy_coef=0.01, normalize_advantage=False)
    actor, critic = table_actor(LOGITS), table_critic(V_NEW)
    loss = make_loss(params, actor, critic)
    update = PPOUpdate(
        loss, make_optimizer(loss, lr=2e-3), None, epochs=1, minibatch_size=4, max_grad_norm=0.0
    )
    metrics = update(_batch())
    total = -0.7 + 1.3125 - 0.01 * hand.entropy(LOGITS).mean()
    agree("loss_total", total, metrics["loss_total"])
    agree("loss_total (hand)", 0.60622259, total, rtol=1e-7)

    agree("d total / d V", [-0.125, 0, 0.5, -0.625], critic_table(critic).grad[:, 0])
    grad_h = hand.entropy_logit_gradient(LOGITS)
    agree("dH/dlogits of [1/4, 3/4]", [0.20599, -0.20599], grad_h[1], atol=1e-5)
    expected = hand.surrogate_logit_gradient(LOGITS, ACTIONS, [1.0] * 4, ADVANTAGE, 0.2) - 0.01 / 4 * grad_h
    agree("d total / d logits", expected, actor_table(actor).grad, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 6).flatmap(lambda n: st.tuples(*[st.lists(floats(-3, 3), min_size=n, max_size=n)] * 4)),
    st.sampled_from(["l2", "smooth_l1", "l1"]),
    floats(0.1, 2.0),
    floats(0.0, 0.1),
    st.one_of(st.none(), floats(0.05, 0.5)),
)
def test_losses_property(
    columns: tuple[list[float], ...], kind: str, critic_coef: float, entropy_coef: float, clip: float | None
) -> None:
    """Random values, targets, old values, logits and coefficients: loss_critic,
    value_clip_fraction, entropy, loss_entropy, and PPOUpdate's loss_total."""
    v_new, target, v_old, logit1 = (np.asarray(c) for c in columns)
    n = len(v_new)
    logits = np.stack([np.zeros(n), logit1], axis=-1)
    params = LossParams(
        clip_epsilon=clip or 0.2,
        entropy_coef=entropy_coef,
        critic_coef=critic_coef,
        critic_loss=kind,
        clip_value=clip is not None,
        normalize_advantage=False,
    )
    actions = [i % 2 for i in range(n)]
    logp = hand.log_softmax(logits)[range(n), actions]
    batch = policy_batch(range(n), actions, logp, [0.5] * n, target, v_old)
    out = loss_outputs(params, table_actor(logits), table_critic(v_new), batch)

    critic, fraction = hand_update.value_loss(target, v_new, kind, critic_coef, v_old, clip)
    agree("loss_critic", critic, out["loss_critic"], atol=1e-5)
    if clip is not None:
        agree("value_clip_fraction", fraction, out["value_clip_fraction"], atol=1e-6)
    agree("entropy", hand.entropy(logits).mean(), out["entropy"])
    agree("loss_entropy", -entropy_coef * hand.entropy(logits).mean(), out["loss_entropy"], atol=1e-7)

    loss = make_loss(params, table_actor(logits), table_critic(v_new))
    update = PPOUpdate(
        loss, make_optimizer(loss, lr=2e-3), None, epochs=1, minibatch_size=n, max_grad_norm=0.5
    )
    metrics = update(batch)
    total = -0.5 + critic - entropy_coef * hand.entropy(logits).mean()
    agree("loss_total", total, metrics["loss_total"], atol=1e-5)
