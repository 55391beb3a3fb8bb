"""Item 15 — DAPO's clip-higher: the asymmetric clipped surrogate (`LossParams.clip_epsilon_high`).

    L = -mean( min( r * A,  clip(r, 1 - low, 1 + high) * A ) ),   low = clip_epsilon, high = clip_epsilon_high

`make_loss` passes ``clip_epsilon=(low, high)`` to ClipPPOLoss, which clamps the log-ratio to
[log1p(-low), log1p(high)] in float32: the same band. With high > low, a sample with A > 0 and
1 + low < r <= 1 + high keeps its gradient (the symmetric loss would have cut it): an unlikely
token can still gain probability. Nothing else changes: A < 0 above the band is never clipped
(r*A is the min there), and the lower edge is 1 - low as before.

clip_fraction (TorchRL 0.14.1, `ClipPPOLoss.forward`): mean(clamp(w, log1p(-low), log1p(high)) != w),
w = log r, with the float32 bounds of `_clip_bounds`: the fraction of samples outside the closed
asymmetric band, whatever the sign of A (so, as in item 3, not the fraction that lost its gradient).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_torchrl import LossParams, make_loss
from specs import hand
from specs.cases import PolicyCase, floats, policy_cases
from specs.check import agree
from specs.rig import CERTAIN, actor_table, loss_outputs, policy_batch, table_actor

LOW, HIGH = 0.2, 0.28  # DAPO's recommended pair: band [0.8, 1.28]
#            A     r      r*A    clip_asym*A  min_asym | clip_sym*A  min_sym
CASES = [
    (+2.0, 0.50),  # 1.00   1.60    1.00        | 1.60   1.00   below 1 - low, A > 0: learns
    (+2.0, 1.10),  # 2.20   2.20    2.20        | 2.20   2.20   inside both bands
    (+2.0, 1.25),  # 2.50   2.50    2.50        | 2.40   2.40   between 1.2 and 1.28: only sym clips
    (+2.0, 1.50),  # 3.00   2.56    2.56        | 2.40   2.40   above 1 + high: both clip
    (-1.0, 0.50),  # -0.50  -0.80   -0.80       | -0.80  -0.80  below 1 - low, A < 0: clipped
    (-1.0, 1.10),  # -1.10  -1.10   -1.10       | -1.10  -1.10  inside
    (-1.0, 1.25),  # -1.25  -1.25   -1.25       | -1.20  -1.25  A < 0 above: r*A is the min
    (-1.0, 1.50),  # -1.50  -1.28   -1.50       | -1.20  -1.50  A < 0 above 1 + high: pulled back
]
ADV, R = [c[0] for c in CASES], [c[1] for c in CASES]


def _batch(advantage: list[float], r: list[float]):
    """Sample i in state i, logits [0, 0] (pi_new = 1/2), action 0, pi_old = 1/2 / r_i."""
    n = len(r)
    return np.zeros((n, 2)), policy_batch(range(n), [0] * n, np.log(0.5 / np.asarray(r)), advantage)


def _params(low: float, high: float | None) -> LossParams:
    return LossParams(clip_epsilon=low, clip_epsilon_high=high, normalize_advantage=False)


def test_asymmetric_objective_worked_example() -> None:
    """low 0.2, high 0.28, the eight samples of CASES:
    asymmetric: 1.00 + 2.20 + 2.50 + 2.56 - 0.80 - 1.10 - 1.25 - 1.50 = 3.61, L = -3.61 / 8 = -0.45125;
    symmetric (0.2): 1.00 + 2.20 + 2.40 + 2.40 - 0.80 - 1.10 - 1.25 - 1.50 = 3.35, L = -0.41875.
    The gap 0.26 / 8 = 0.0325 is samples 2 (2.50 vs 2.40) and 3 (2.56 vs 2.40): A > 0 only.
    clip_fraction: asymmetric 4/8 (r = 0.5, 1.5, both signs of A), symmetric 6/8 (+ r = 1.25).
    """
    assert math.isclose(hand.clipped_surrogate_loss_asym(R, ADV, LOW, HIGH), -0.45125)
    assert math.isclose(hand.clipped_surrogate_loss(R, ADV, LOW), -0.41875)
    logits, batch = _batch(ADV, R)
    asym = loss_outputs(_params(LOW, HIGH), table_actor(logits), None, batch)
    sym = loss_outputs(_params(LOW, None), table_actor(logits), None, batch)
    agree("loss_objective (low 0.2, high 0.28)", -0.45125, asym["loss_objective"])
    agree("loss_objective (symmetric 0.2)", -0.41875, sym["loss_objective"])
    agree("clip_fraction (asymmetric)", 0.5, asym["clip_fraction"], rtol=0, atol=0)
    agree("clip_fraction (symmetric)", 0.75, sym["clip_fraction"], rtol=0, atol=0)


def test_gradient_is_zero_exactly_where_the_clipped_branch_wins() -> None:
    """d L / d logits[s] = -(A/n) r [+1/2, -1/2] (n = 8) unless the clipped term is the min.
    Asymmetric: zero only for samples 3 (A > 0, r > 1.28) and 4 (A < 0, r < 0.8); sample 2
    (r = 1.25, A = +2) gets -(2/8)(1.25)[.5, -.5] = [-0.15625, +0.15625]. Symmetric: sample 2
    is clipped too and gets exactly [0, 0]."""
    logits, batch = _batch(ADV, R)
    grads = {}
    for name, high in (("asym", HIGH), ("sym", None)):
        actor = table_actor(logits)
        loss_outputs(_params(LOW, high), actor, None, batch)["loss_objective"].backward()
        grads[name] = actor_table(actor).grad.double().numpy()
    expected = hand.surrogate_logit_gradient(logits, [0] * 8, R, ADV, LOW, HIGH)
    agree("d L / d logits (asymmetric)", expected, grads["asym"], atol=1e-7)
    agree("hand, sample 2", [-0.15625, 0.15625], expected[2])
    frozen = hand.clipped_branch_wins(R, ADV, LOW, HIGH)
    assert np.flatnonzero(frozen).tolist() == [3, 4]
    assert (grads["asym"][frozen] == 0).all() and (np.abs(grads["asym"][~frozen]) > 0.02).all()
    assert (grads["sym"][[2, 3, 4]] == 0).all(), f"symmetric: samples 2-4 are clipped, got {grads['sym']}"


def test_no_high_is_the_symmetric_loss() -> None:
    """clip_epsilon_high=None and clip_epsilon_high=clip_epsilon both give the symmetric loss
    bit for bit (same float32 bounds log1p(-0.2), log1p(0.2)), on every output."""
    logits, batch = _batch(ADV, R)
    sym = loss_outputs(
        LossParams(clip_epsilon=LOW, normalize_advantage=False), table_actor(logits), None, batch
    )
    for high in (None, LOW):
        other = loss_outputs(_params(LOW, high), table_actor(logits), None, batch)
        for key in sym.keys(include_nested=True, leaves_only=True):
            agree(f"{key} (clip_epsilon_high={high})", sym[key], other[key], rtol=0, atol=0)


def test_clip_fraction_at_the_asymmetric_edges() -> None:
    """The module's float32 edges are log1p(-0.2) ~ -0.22314355 and log1p(0.28) ~ 0.24686008
    (within 1e-7 of the float64 logs). A log-ratio exactly on an edge is inside the closed band
    (not counted); one float32 step outside is counted."""
    low, high = (float(b) for b in make_loss(_params(LOW, HIGH), table_actor([CERTAIN]), None)._clip_bounds)
    agree("float32 bounds", [math.log1p(-LOW), math.log1p(HIGH)], [low, high], rtol=0, atol=1e-7)
    agree("log1p(0.28)", 0.24686008, high, rtol=0, atol=1e-8)

    def step(x: float, to: float) -> float:
        return float(np.nextafter(np.float32(x), np.float32(to)))

    points = [low, high, step(low, -1), step(high, 1), step(low, 1), step(high, -1)]
    actor = table_actor([CERTAIN])  # log pi_new = 0.0 exactly: the log-ratio is -log pi_old bit for bit
    module = [
        float(
            loss_outputs(_params(LOW, HIGH), actor, None, policy_batch([0], [0], [-w], [1.0]))[
                "clip_fraction"
            ]
        )
        for w in points
    ]
    agree(
        "clip_fraction per edge point", [hand.clip_fraction_log([w], low, high) for w in points], module, 0, 0
    )
    assert module == [0, 0, 1, 1, 0, 0]


@st.composite
def asym_cases(draw: st.DrawFn) -> tuple[PolicyCase, float, float]:
    case = draw(policy_cases(min_n=2, max_log_ratio=0.8, one_state_each=True))
    low, high = draw(floats(0.05, 0.5)), draw(floats(0.05, 0.6))
    for i in draw(st.lists(st.integers(0, len(case.states) - 1), max_size=2, unique=True)):
        edge = 1 + high if draw(st.booleans()) else 1 - low
        case.logp_old[i] = case.logp_new[i] - math.log(edge)
    return case, low, high


@settings(max_examples=50, deadline=None)
@given(asym_cases())
def test_asymmetric_clip_property(arg: tuple[PolicyCase, float, float]) -> None:
    """Random r (some on the edges), A of both signs, low and high (either larger): loss,
    clip_fraction and gradient agree with the hand formula; a sample whose clipped term is
    strictly the min has an exactly zero gradient. With high >= low, clip-higher never raises
    the loss, and it lowers it only through samples with A > 0 and r > 1 + low."""
    case, low, high = arg
    r, adv = case.ratio, case.advantage
    actor = table_actor(case.logits)
    batch = policy_batch(case.states, case.actions, case.logp_old, adv)
    out = loss_outputs(_params(low, high), actor, None, batch)
    agree("loss_objective", hand.clipped_surrogate_loss_asym(r, adv, low, high), out["loss_objective"])
    w = case.logp_new - case.logp_old
    off_edge = (np.abs(r - (1 + high)) > 1e-4) & (np.abs(r - (1 - low)) > 1e-4)
    if off_edge.all():
        agree(
            "clip_fraction",
            hand.clip_fraction_log(w, math.log1p(-low), math.log1p(high)),
            out["clip_fraction"],
        )

    out["loss_objective"].backward()
    grad = actor_table(actor).grad.double().numpy()
    expected = hand.surrogate_logit_gradient(case.logits, case.actions, r, adv, low, high)
    agree("d L / d logits", expected[off_edge], grad[off_edge], atol=1e-6)
    frozen = hand.clipped_branch_wins(r, adv, low, high) & off_edge
    assert (grad[frozen] == 0).all(), f"clipped samples {np.flatnonzero(frozen)} got gradient {grad[frozen]}"

    if high >= low:
        gain = np.minimum(*hand.surrogate_terms(r, adv, low, high)) - np.minimum(
            *hand.surrogate_terms(r, adv, low)
        )
        assert (gain >= 0).all() and not gain[(adv <= 0) | (r <= 1 + low)].any()
        sym = loss_outputs(_params(low, None), table_actor(case.logits), None, batch)
        assert out["loss_objective"].item() <= sym["loss_objective"].item() + 1e-6
