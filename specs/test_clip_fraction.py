"""Item 3 — clip_fraction, and exactly which definition TorchRL uses.

The tutorial:  clip_fraction = mean(|r - 1| > eps)                        (on the ratio)
TorchRL:       clip_fraction = mean(clamp(log r, log(1-eps), log(1+eps)) != log r)
             = mean(log r < log1p(-eps)  or  log r > log1p(eps))      (on the log-ratio)

In exact arithmetic these are the same set (log is increasing), and the band is closed:
a ratio exactly on an edge is not counted. In float32 they can disagree right at an edge,
because TorchRL compares against log1p(eps) rounded to float32. Both count a sample as
clipped whatever the sign of A, so clip_fraction is not the fraction of samples whose
gradient was cut off (see the worked example).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_torchrl import LossParams, make_loss
from specs import hand
from specs.check import agree
from specs.rig import CERTAIN, loss_outputs, policy_batch, table_actor


def test_clip_fraction_worked_example() -> None:
    """eps = 0.2; pi_new = 1/2 everywhere, pi_old = 1/2 / r.

    | A  | r    | abs(r-1) > 0.2 | clipped term is the min (zero gradient) |
    |----|------|-----------|------------------------------|
    | +1 | 1.25 | yes       | yes                          |
    | +1 | 1.10 | no        | no                           |
    | -1 | 0.70 | yes       | yes                          |
    | +1 | 0.95 | no        | no                           |
    | -1 | 1.50 | yes       | no  (r*A = -1.5 is the min)  |

    clip_fraction = 3/5 = 0.6, while only 2/5 of the samples lost their gradient.
    """
    advantage, r = [1.0, 1.0, -1.0, 1.0, -1.0], [1.25, 1.1, 0.7, 0.95, 1.5]
    assert hand.clip_fraction_ratio(r, 0.2) == 0.6
    assert hand.clipped_branch_wins(r, advantage, 0.2).mean() == 0.4
    batch = policy_batch(range(5), [0] * 5, np.log(0.5 / np.asarray(r)), advantage)
    out = loss_outputs(
        LossParams(clip_epsilon=0.2, normalize_advantage=False), table_actor(np.zeros((5, 2))), None, batch
    )
    agree("clip_fraction", 0.6, out["clip_fraction"], rtol=0, atol=1e-7)


def _on_log_ratios(eps: float, log_r: list[float]) -> list[float]:
    """clip_fraction of one-sample batches whose log-ratio is exactly ``log_r[i]`` in float32.

    The actor is certain (log pi_new(0|s) = 0.0 exactly), so the module's log-ratio is
    0 - log pi_old = -log pi_old bit for bit.
    """
    params = LossParams(clip_epsilon=eps, normalize_advantage=False)
    actor = table_actor([CERTAIN])
    return [
        float(loss_outputs(params, actor, None, policy_batch([0], [0], [-w], [1.0]))["clip_fraction"])
        for w in log_r
    ]


def _float32_edges(eps: float) -> tuple[float, float]:
    """The float32 numbers the loss actually compares the log-ratio with."""
    low, high = make_loss(LossParams(clip_epsilon=eps), table_actor([CERTAIN]), None)._clip_bounds
    return float(low), float(high)


def _step(x: float, direction: float) -> float:
    """The next float32 after ``x`` towards ``direction``."""
    return float(np.nextafter(np.float32(x), np.float32(direction)))


def test_clip_fraction_at_the_band_edges() -> None:
    """eps = 0.2. The module's edges are float32(log1p(-0.2)) ~ -0.22314356 and
    float32(log1p(0.2)) ~ 0.18232156. A log-ratio exactly on an edge is inside the closed
    band (not counted); one float32 step beyond it is counted.

    The tutorial's test disagrees at the upper edge: there r = exp(0.18232156336...)
    = 1.2000000079 in Python floats, and |r - 1| = 0.2000000079 > 0.2 counts it as clipped.
    """
    low, high = _float32_edges(0.2)
    points = [low, high, _step(low, -1), _step(high, 1), _step(low, 1), _step(high, -1)]
    module = _on_log_ratios(0.2, points)
    by_log_ratio = [hand.clip_fraction_log([w], low, high) for w in points]
    agree("clip_fraction per edge point", by_log_ratio, module, rtol=0, atol=0)
    assert by_log_ratio == [0, 0, 1, 1, 0, 0]
    by_ratio = [hand.clip_fraction_ratio([math.exp(w)], 0.2) for w in points]
    assert by_ratio != module, (
        f"the tutorial's |r - 1| > eps should differ at an edge: {by_ratio} vs {module}"
    )


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_clip_fraction_property(data: st.DataObject) -> None:
    """Random eps and log-ratios, some sitting on the float32 edges or a few steps from them:
    the module counts exactly the log-ratios outside the closed float32 band; away from the
    edges (> 1e-6) that is the tutorial's |r - 1| > eps too."""
    eps = data.draw(st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.5]))
    low, high = _float32_edges(eps)
    near_edge = st.tuples(st.sampled_from([low, high]), st.integers(-3, 3)).map(
        lambda e: float(np.float32(e[0]) + np.float32(e[1]) * np.spacing(np.float32(e[0])))
    )
    anywhere = st.floats(-0.8, 0.8).map(lambda x: float(np.float32(x)))
    log_r = data.draw(st.lists(st.one_of(near_edge, anywhere), min_size=1, max_size=8))

    n = len(log_r)
    batch = policy_batch(range(n), [0] * n, [-w for w in log_r], [1.0] * n)
    params = LossParams(clip_epsilon=eps, normalize_advantage=False)
    out = loss_outputs(params, table_actor([CERTAIN] * n), None, batch)
    agree("clip_fraction", hand.clip_fraction_log(log_r, low, high), out["clip_fraction"], rtol=0, atol=1e-7)

    far = [w for w in log_r if min(abs(w - low), abs(w - high)) > 1e-6]
    if far:
        agree(
            "log-ratio vs ratio definitions away from the edges",
            hand.clip_fraction_ratio(np.exp(far), eps),
            hand.clip_fraction_log(far, low, high),
            rtol=0,
            atol=0,
        )
