"""Item 5 — advantage normalisation (``normalize_advantage=True``, the default).

ClipPPOLoss standardises the advantages of the batch it is given — in PPOUpdate, each
minibatch — before the surrogate:

    A_hat = (A - mean(A)) / max(std(A), 1e-6)

with the *unbiased* std (divide by n - 1, ``Tensor.std``'s default) and the epsilon as a
floor under the std (``clamp_min``), not added to it. 1e-6 is float32's ``resolution``.
A one-sample batch is left as it is (its std is undefined).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ppo_torchrl import LossParams
from specs import hand
from specs.cases import PolicyCase, floats, policy_cases
from specs.check import agree, differ
from specs.rig import loss_outputs, policy_batch, table_actor


def _objective(advantage: list[float], r: list[float], normalize: bool = True) -> float:
    """loss_objective for samples with ratios r (pi_new = 1/2, pi_old = 1/2 / r)."""
    n = len(r)
    batch = policy_batch(range(n), [0] * n, np.log(0.5 / np.asarray(r)), advantage)
    params = LossParams(clip_epsilon=0.2, normalize_advantage=normalize)  # the hand side's epsilon
    out = loss_outputs(params, table_actor(np.zeros((n, 2))), None, batch)
    return float(out["loss_objective"].detach())


def test_normalisation_worked_example() -> None:
    """A = [1, 2, 3, 6]: mean 3, deviations [-2, -1, 0, 3], sum of squares 14.

        unbiased std = sqrt(14/3) = 2.160247  ->  A_hat = [-0.9258, -0.4629, 0, 1.3887]
        biased std   = sqrt(14/4) = 1.870829  ->  A_hat = [-1.0690, -0.5345, 0, 1.6036]

    With r = [1, 1, 1, 1.1] (all inside the band) L = -mean(r * A_hat) = -0.1 * A_hat[3] / 4:
    -0.034718 with the unbiased std, -0.040089 with the biased one, and without
    normalisation -mean(r * A) = -(1 + 2 + 3 + 6.6) / 4 = -3.15.
    """
    a, r = [1.0, 2.0, 3.0, 6.0], [1.0, 1.0, 1.0, 1.1]
    unbiased = hand.clipped_surrogate_loss(r, hand.standardize(a, ddof=1), 0.2)
    biased = hand.clipped_surrogate_loss(r, hand.standardize(a, ddof=0), 0.2)
    assert math.isclose(unbiased, -0.1 * 3 / math.sqrt(14 / 3) / 4)
    differ("unbiased vs biased std", unbiased, biased, 0.005)
    agree("loss_objective (normalised)", unbiased, _objective(a, r))
    agree("loss_objective (raw)", -3.15, _objective(a, r, normalize=False))


def test_normalisation_epsilon_is_a_floor_under_the_std() -> None:
    """A = [0, 2e-7]: mean 1e-7, std = sqrt(2 * (1e-7)^2 / 1) = 1.414e-7 < 1e-6, so the
    divisor is 1e-6 and A_hat = [-0.1, +0.1]; with r = [1, 1.1]:
    L = -(-0.1 + 0.11) / 2 = -0.005. (Adding 1e-6 to the std instead would give A_hat =
    [-0.0876, 0.0876]; dividing by the std alone, [-0.7071, 0.7071].)

    Constant advantages have std 0: A_hat = 0 / 1e-6 = 0, and L = 0 (no NaN).
    """
    a, r = [0.0, 2e-7], [1.0, 1.1]
    a32 = np.float32(a).astype(np.float64)
    floor = hand.clipped_surrogate_loss(r, hand.standardize(a32), 0.2)
    assert math.isclose(floor, -0.005, rel_tol=1e-5)
    added = hand.clipped_surrogate_loss(r, (a32 - a32.mean()) / (a32.std(ddof=1) + 1e-6), 0.2)
    differ("floor vs added epsilon", floor, added, 5e-4)
    agree("loss_objective", floor, _objective(a, r), rtol=1e-4)
    agree("loss_objective (constant A)", 0.0, _objective([3.0, 3.0, 3.0], [1.0, 1.1, 0.9]), atol=1e-6)


def test_single_sample_is_not_normalised() -> None:
    """n = 1: A = 5, r = 1.1 gives L = -5.5 with or without the switch."""
    agree("loss_objective", -5.5, _objective([5.0], [1.1]))


@settings(max_examples=40, deadline=None)
@given(policy_cases(min_n=2, max_log_ratio=0.5), floats(0.05, 0.5), st.booleans())
def test_normalisation_property(case: PolicyCase, eps: float, normalize: bool) -> None:
    """Random batches: loss_objective = clipped surrogate of A_hat (switch on) or of A (off)."""
    spread = np.ptp(case.advantage)
    assume(spread == 0 or spread > 1e-3)  # float32 cancellation makes a tiny std imprecise
    adv = hand.standardize(case.advantage) if normalize else case.advantage
    batch = policy_batch(case.states, case.actions, case.logp_old, case.advantage)
    params = LossParams(clip_epsilon=eps, normalize_advantage=normalize)
    out = loss_outputs(params, table_actor(case.logits), None, batch)
    agree(
        "loss_objective", hand.clipped_surrogate_loss(case.ratio, adv, eps), out["loss_objective"], atol=1e-5
    )
