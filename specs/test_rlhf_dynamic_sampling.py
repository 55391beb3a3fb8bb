"""Item 16 — DAPO's dynamic sampling: which GRPO groups carry signal (`tokens.informative_groups`).

A GRPO group is ``group_size`` consecutive rows (one prompt's completions). If its scores are
all equal, every s_i = mean, so A_i = 0 / (0 + 1e-4) = 0 (item 13): the group moves nothing
but costs an update's compute. DAPO drops it:

    informative_groups(s, G) = the rows of the groups g with max(s_g) > min(s_g), in order.

Worked example, G = 4, s = [1, 1, 1, 1 | 0, 1, 0, 0 | 0, 0, 0, 0 | 0.5, 0.5, 0.5, 0.6]: groups 0
and 2 are flat, so the rows kept are 4, 5, 6, 7 and 12, 13, 14, 15. Group 1's advantages
(mean 1/4, std sqrt(0.75 / 3) = 0.5) are [-0.25, 0.75, -0.25, -0.25] / 0.5001 =
[-0.499900, 1.499700, -0.499900, -0.499900]; group 3's (mean 0.525, std 0.05) are
[-0.025, -0.025, -0.025, 0.075] / 0.0501 = [-0.499002, -0.499002, -0.499002, 1.497006].
Groups never mix, so dropping one changes no other group's advantage.

float32: "a flat group gets A = 0" is exact only where torch's float32 mean of the G equal
scores is the score itself (e.g. scores on a 1/8 grid). For G = 7 copies of 0.1 the float32
mean is 2^-27 off, std ~ 8e-9, and every row gets the same A ~ -7.45e-5 (not noise: a shared
push on the whole group); a score near 8 gives ~5e-3. Dropping the group removes that too.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_torchrl.rlhf.tokens import group_advantages, informative_groups
from specs import hand_rlhf
from specs.check import agree
from specs.rig_rlhf import f32

SCORES = [1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0.5, 0.5, 0.5, 0.6]
KEPT = [4, 5, 6, 7, 12, 13, 14, 15]


def advantages(scores, group_size: int) -> np.ndarray:
    return group_advantages(f32(scores), group_size).double().numpy()


def test_worked_example() -> None:
    """The docstring's four groups: rows 4-7 and 12-15 kept, with the advantages computed there,
    which are the same whether the flat groups are in the batch or not."""
    assert hand_rlhf.informative_groups(SCORES, 4) == KEPT
    kept = informative_groups(f32(SCORES), 4)
    assert kept == KEPT, f"hand {KEPT}, module {kept}"
    expected = [-0.499900, 1.499700, -0.499900, -0.499900, -0.499002, -0.499002, -0.499002, 1.497006]
    agree("hand A of the kept rows", expected, hand_rlhf.group_advantages(SCORES, 4)[KEPT])
    agree("A of the kept rows, in the full batch", expected, advantages(SCORES, 4)[KEPT])
    agree("A of the kept rows, alone", expected, advantages(np.array(SCORES)[KEPT], 4))
    agree("A of the dropped rows", np.zeros(8), advantages(SCORES, 4)[[0, 1, 2, 3, 8, 9, 10, 11]], 0, 0)


def test_all_flat_and_all_varied() -> None:
    """Every group flat: nothing kept (the stage then samples again or updates on less).
    Every group varied: every row, in order. One differing row is enough; G = 2 too."""
    for scores, g, kept in (
        ([2.0] * 6, 3, []),
        ([0.0, 0.0, 1.0, 1.0, -3.0, -3.0], 2, []),
        ([0.0, 1.0, 1.0, 0.0, 3.0, 2.0], 2, [0, 1, 2, 3, 4, 5]),
        ([5.0, 5.0, 5.0, 5.125, 1.0, 2.0, 3.0, 4.0], 4, list(range(8))),
    ):
        assert hand_rlhf.informative_groups(scores, g) == kept
        assert informative_groups(f32(scores), g) == kept, f"{scores}, G = {g}"


def test_flat_group_in_float32_is_not_exactly_zero() -> None:
    """Pinned: seven copies of float32(0.1) in one group. By hand A = 0 exactly; torch's float32
    mean is 2^-27 away, so each row gets the same tiny A (about -7.45e-5 with this torch).
    informative_groups drops the group, as it should (its scores are equal bit for bit)."""
    scores = [0.1] * 7
    a = advantages(scores, 7)
    agree("hand", np.zeros(7), hand_rlhf.group_advantages(scores, 7), 0, 0)
    assert informative_groups(f32(scores), 7) == []
    assert (a == a[0]).all() and 0 < abs(a[0]) < 1e-3, f"expected one shared tiny nonzero A, got {a}"


# Scores on a grid of 1/8: float32 sums and means of a few of them are exact, so a flat group's
# advantages are exactly 0 in the module too.
grid = st.integers(-24, 24).map(lambda k: k / 8)


@st.composite
def grouped_scores(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """Groups of G in 2..5, each flat (one score repeated) or drawn freely (flat by chance too)."""
    g, n_groups = draw(st.integers(2, 5)), draw(st.integers(1, 5))
    groups = [
        [draw(grid)] * g if draw(st.booleans()) else draw(st.lists(grid, min_size=g, max_size=g))
        for _ in range(n_groups)
    ]
    return np.array(groups, dtype=np.float64).reshape(-1), g


@settings(max_examples=60, deadline=None)
@given(grouped_scores())
def test_dynamic_sampling_property(arg: tuple[np.ndarray, int]) -> None:
    """Module rows = hand rows; the kept rows' advantages are exactly those of the kept groups
    computed alone; every dropped row's advantage was exactly 0 and every kept group has a
    nonzero one (its top score is above the mean)."""
    scores, g = arg
    kept = informative_groups(f32(scores), g)
    assert kept == hand_rlhf.informative_groups(scores, g), f"scores {scores}, G = {g}"
    full = advantages(scores, g)
    dropped = np.setdiff1d(np.arange(len(scores)), kept)
    agree("A of the dropped rows", np.zeros(len(dropped)), full[dropped], rtol=0, atol=0)
    if kept:
        alone = advantages(scores[kept], g)
        agree("kept rows: in the batch vs alone", alone, full[kept], rtol=0, atol=0)
        agree("kept rows: hand", hand_rlhf.group_advantages(scores[kept], g), alone, atol=1e-5)
        assert (np.abs(alone.reshape(-1, g)).max(1) > 0.5).all()
