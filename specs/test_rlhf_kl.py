"""Item 10 — the per-token KL estimators of KL(pi || pi_ref) (`rollout.kl_estimate`).

The token a was sampled from pi (the policy), pi_ref is the frozen SFT model, and
r = pi_ref(a) / pi(a), so log r = log pi_ref(a) - log pi(a) (Schulman, "Approximating KL
divergence", 2020):

    k1 = -log r = log pi(a) - log pi_ref(a)      E_pi[k1] = KL(pi || pi_ref), can be < 0
    k2 = (log r)^2 / 2                           biased, never negative
    k3 = (r - 1) - log r                         E_pi[k3] = KL(pi || pi_ref), never negative

Worked example: pi(a) = 0.5, pi_ref(a) = 0.25, log r = -ln 2:
    k1 = 0.693147, k2 = 0.240227, k3 = 0.5 - 1 + 0.693147 = 0.193147.
The other way round (pi(a) = 0.25, pi_ref(a) = 0.5, r = 2):
    k1 = -0.693147, k2 = 0.240227, k3 = 2 - 1 - 0.693147 = 0.306853.

The sign convention is the same as item 4's k1 = log pi_old - log pi_new: the log of the
distribution the sample came from minus the log of the other one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_torchrl.rlhf.tokens import kl_estimate
from specs import hand, hand_rlhf
from specs.cases import floats
from specs.check import agree, differ
from specs.rig_rlhf import f32

KINDS = ("k1", "k2", "k3")
LN2 = math.log(2)


def module_kl(logp, ref, kind: str) -> np.ndarray:
    return kl_estimate(f32(logp), f32(ref), kind).double().numpy()


@pytest.mark.parametrize(
    ("pi", "pi_ref", "expected"),
    [
        (0.5, 0.25, {"k1": LN2, "k2": LN2**2 / 2, "k3": 0.5 - 1 + LN2}),
        (0.25, 0.5, {"k1": -LN2, "k2": LN2**2 / 2, "k3": 2 - 1 - LN2}),
        (0.3, 0.3, {"k1": 0.0, "k2": 0.0, "k3": 0.0}),
    ],
)
def test_single_token_worked_example(pi: float, pi_ref: float, expected: dict[str, float]) -> None:
    """The two tokens of the docstring, and pi = pi_ref (every estimator 0)."""
    for kind in KINDS:
        agree(f"hand {kind}", expected[kind], hand_rlhf.KL[kind](math.log(pi), math.log(pi_ref)))
        agree(
            f"{kind}(pi={pi}, pi_ref={pi_ref})",
            [expected[kind]],
            module_kl([math.log(pi)], [math.log(pi_ref)], kind),
        )


def test_expectation_worked_example() -> None:
    """pi = [0.5, 0.5], pi_ref = [0.9, 0.1]. Per action, log(pi/pi_ref) = [-0.587787, 1.609438]:

        k1 = [-0.587787, 1.609438]           E_pi = 0.510826
        k3 = [1.8 - 1 - 0.587787, 0.2 - 1 + 1.609438] = [0.212213, 0.809438]   E_pi = 0.510826
        k2 = [0.172747, 1.295145]            E_pi = 0.733946 (biased)

    KL(pi || pi_ref) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.510826 — k1 and k3 estimate this
    direction; KL(pi_ref || pi) = 0.9 ln 1.8 + 0.1 ln 0.2 = 0.368064 is the other one.
    """
    pi, ref = [0.5, 0.5], [0.9, 0.1]
    kl = hand_rlhf.kl_exact(pi, ref)
    agree("KL(pi || pi_ref)", 0.510826, kl)
    agree("KL(pi_ref || pi)", 0.368064, hand_rlhf.kl_exact(ref, pi))
    per_action = {k: module_kl(np.log(pi), np.log(ref), k) for k in KINDS}
    agree("k1 per action", [-0.587787, 1.609438], per_action["k1"])
    agree("k3 per action", [0.212213, 0.809438], per_action["k3"])
    agree("k2 per action", [0.172747, 1.295145], per_action["k2"])
    agree("E_pi[k1]", kl, hand_rlhf.expected_under(pi, per_action["k1"]))
    agree("E_pi[k3]", kl, hand_rlhf.expected_under(pi, per_action["k3"]))
    agree("E_pi[k2]", 0.733946, hand_rlhf.expected_under(pi, per_action["k2"]))
    differ("E_pi[k3] vs KL(pi_ref || pi)", hand_rlhf.expected_under(pi, per_action["k3"]), 0.368064, 0.1)


def test_unknown_estimator_is_refused() -> None:
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(torch.zeros(1), torch.zeros(1), "k4")


def test_float32_edges() -> None:
    """The module computes in the log-probs' dtype (float32 here):

    - tiny log-ratios: k3 ~ (log r)^2 / 2 comes from expm1(-x) + x, a cancellation; at
      |x| = 1e-6 the float32 result is 4.5e-13 instead of 5.0e-13 (absolute error < 1e-13),
      and it is still >= 0.
    - k3 overflows to inf once log pi - log pi_ref < -88.72 (expm1 of more than float32's
      log(max) = 88.72): pi_ref(a) > e^88.7 pi(a), i.e. pi(a) < 3e-39 for the sampled token.
      The hand value there is e^100 - 101 = 2.7e43, finite in float64.
    """
    x = np.array([1e-6, -1e-6, 1e-7])
    k3 = module_kl(x, np.zeros(3), "k3")
    assert (k3 >= 0).all()
    agree(
        "k3 at tiny log-ratios",
        hand_rlhf.kl_per_token(x.astype(np.float32), np.zeros(3), "k3"),
        k3,
        atol=1e-13,
    )
    assert math.isinf(module_kl([-100.0], [0.0], "k3")[0])
    assert math.isfinite(hand_rlhf.kl_k3(-100.0, 0.0))
    agree("k3 at log r = -100 (finite side)", [99.0], module_kl([0.0], [-100.0], "k3"))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 8).flatmap(lambda n: st.tuples(*(st.lists(floats(-8, 0), min_size=n, max_size=n),) * 2))
)
def test_per_token_property(logs: tuple[list[float], list[float]]) -> None:
    """Random log pi, log pi_ref in [-8, 0]: every estimator token by token; k2, k3 >= 0."""
    logp, ref = logs
    for kind in KINDS:
        module = module_kl(logp, ref, kind)
        agree(kind, hand_rlhf.kl_per_token(logp, ref, kind), module, rtol=1e-5, atol=1e-5)
        if kind != "k1":
            assert (module >= 0).all(), f"{kind} negative: {module}"


@settings(max_examples=30, deadline=None)
@given(
    st.integers(2, 5).flatmap(lambda n: st.tuples(*(st.lists(floats(-3, 3), min_size=n, max_size=n),) * 2))
)
def test_unbiased_property(logits: tuple[list[float], list[float]]) -> None:
    """Random categorical pi and pi_ref: the module's k1 and k3 on every action, weighted by
    pi, give exactly KL(pi || pi_ref) (hand: sum_a pi log(pi/pi_ref))."""
    logp, ref = hand.log_softmax(logits[0]), hand.log_softmax(logits[1])
    pi = np.exp(logp)
    kl = hand_rlhf.kl_exact(pi, np.exp(ref))
    for kind in ("k1", "k3"):
        agree(
            f"E_pi[{kind}] = KL(pi || pi_ref)",
            kl,
            hand_rlhf.expected_under(pi, module_kl(logp, ref, kind)),
            atol=2e-5,
        )
