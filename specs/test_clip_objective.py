"""Item 2 — the clipped surrogate objective and where its gradient vanishes.

    L = -mean( min( r * A,  clip(r, 1 - eps, 1 + eps) * A ) )

The min picks the pessimistic term. When it picks the clipped one the term is a constant,
so that sample pushes the policy no further: its gradient is exactly zero. That happens
for A > 0 with r > 1 + eps and for A < 0 with r < 1 - eps, and only then.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_torchrl import LossParams
from specs import hand
from specs.cases import PolicyCase, floats, policy_cases
from specs.check import agree
from specs.rig import actor_table, loss_outputs, policy_batch, table_actor

EPS = 0.2
#            A     r     r*A    clip(r)*A   min    which term
CASES = [
    (+2.0, 1.10),  # 2.20   2.20       2.20   inside the band
    (+2.0, 1.50),  # 3.00   2.40       2.40   clipped: A > 0, r above 1 + eps -> no gradient
    (+2.0, 0.50),  # 1.00   1.60       1.00   unclipped: A > 0, r below the band still learns
    (-1.0, 0.50),  # -0.50  -0.80      -0.80  clipped: A < 0, r below 1 - eps -> no gradient
    (-1.0, 1.50),  # -1.50  -1.20      -1.50  unclipped: A < 0, r above the band is pulled back
    (+1.0, 1.20),  # 1.20   1.20       1.20   exactly at the edge 1 + eps
    (-1.0, 0.80),  # -0.80  -0.80      -0.80  exactly at the edge 1 - eps
]


def _uniform_batch(advantage: list[float], r: list[float]) -> tuple[np.ndarray, object]:
    """Sample i sits in state i whose logits are [0, 0] (pi_new(0|i) = 1/2), takes action 0,
    and was collected with pi_old = 1/2 / r_i, so its ratio is r_i."""
    n = len(r)
    logits = np.zeros((n, 2))
    batch = policy_batch(range(n), [0] * n, np.log(0.5 / np.asarray(r)), advantage)
    return logits, batch


def test_clipped_objective_worked_example() -> None:
    """eps = 0.2, seven samples (see CASES): the mins sum to
    2.2 + 2.4 + 1.0 - 0.8 - 1.5 + 1.2 - 0.8 = 3.7, so L = -3.7 / 7 = -0.528571.
    """
    advantage, r = [c[0] for c in CASES], [c[1] for c in CASES]
    assert math.isclose(hand.clipped_surrogate_loss(r, advantage, EPS), -3.7 / 7)
    logits, batch = _uniform_batch(advantage, r)
    params = LossParams(clip_epsilon=EPS, normalize_advantage=False)
    out = loss_outputs(params, table_actor(logits), None, batch)
    agree("loss_objective", -3.7 / 7, out["loss_objective"])


def test_clipped_samples_have_zero_gradient() -> None:
    """d L / d logits[s] for the sample in state s (n = 7, pi = [1/2, 1/2], a = 0):

    unclipped: -(A/n) * r * (onehot(a) - pi) = -(A/n) * r * [+1/2, -1/2]
      sample 0: -(2/7)(1.1)[.5, -.5] = [-0.157143, +0.157143]
      sample 2: -(2/7)(0.5)[.5, -.5] = [-0.071429, +0.071429]
      sample 4: +(1/7)(1.5)[.5, -.5] = [+0.107143, -0.107143]
    clipped (samples 1 and 3): exactly [0, 0].
    The two edge samples are ties between the two terms; their gradient is not specified.
    """
    advantage, r = [c[0] for c in CASES], [c[1] for c in CASES]
    logits, batch = _uniform_batch(advantage, r)
    actor = table_actor(logits)
    out = loss_outputs(LossParams(clip_epsilon=EPS, normalize_advantage=False), actor, None, batch)
    out["loss_objective"].backward()
    grad = actor_table(actor).grad.double().numpy()
    expected = hand.surrogate_logit_gradient(logits, [0] * 7, r, advantage, EPS)
    agree("d L / d logits (samples 0-4)", expected[:5], grad[:5], atol=1e-7)
    agree("hand example", [[-0.157143, 0.157143], [0, 0], [-0.071429, 0.071429]], expected[:3], atol=1e-6)
    assert (grad[[1, 3]] == 0).all(), f"clipped samples must get exactly zero gradient, got {grad[[1, 3]]}"
    assert (np.abs(grad[[0, 2, 4]]) > 0.05).all()


@st.composite
def clip_cases(draw: st.DrawFn) -> tuple[PolicyCase, float]:
    case = draw(policy_cases(min_n=2, max_log_ratio=0.8, one_state_each=True))
    eps = draw(floats(0.05, 0.5))
    # Put some samples exactly on the band's edges: r = 1 - eps or r = 1 + eps.
    for i in draw(st.lists(st.integers(0, len(case.states) - 1), max_size=2, unique=True)):
        edge = 1 + eps if draw(st.booleans()) else 1 - eps
        case.logp_old[i] = case.logp_new[i] - math.log(edge)
    return case, eps


@settings(max_examples=50, deadline=None)
@given(clip_cases())
def test_clipped_objective_property(arg: tuple[PolicyCase, float]) -> None:
    """Random A of both signs, r inside, outside and on the band: value and gradient agree;
    every sample whose clipped term is strictly the min has an exactly zero gradient."""
    case, eps = arg
    actor = table_actor(case.logits)
    batch = policy_batch(case.states, case.actions, case.logp_old, case.advantage)
    out = loss_outputs(LossParams(clip_epsilon=eps, normalize_advantage=False), actor, None, batch)
    agree(
        "loss_objective", hand.clipped_surrogate_loss(case.ratio, case.advantage, eps), out["loss_objective"]
    )

    out["loss_objective"].backward()
    grad = actor_table(actor).grad.double().numpy()
    r = case.ratio
    off_edge = (np.abs(r - (1 + eps)) > 1e-4) & (np.abs(r - (1 - eps)) > 1e-4)
    expected = hand.surrogate_logit_gradient(case.logits, case.actions, r, case.advantage, eps)
    agree("d L / d logits", expected[off_edge], grad[off_edge], atol=1e-6)
    frozen = hand.clipped_branch_wins(r, case.advantage, eps) & off_edge
    assert (grad[frozen] == 0).all(), f"clipped samples {np.flatnonzero(frozen)} got gradient {grad[frozen]}"
