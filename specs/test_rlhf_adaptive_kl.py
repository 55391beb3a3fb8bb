"""Item 17 — the adaptive KL coefficient (Ziegler et al. 2019, section 2.2; `tokens.AdaptiveKL`).

After an update whose batch of n responses had mean KL(pi || pi_ref) = kl (nats per response,
the stage's logged `kl_to_ref`):

    e    = clip(kl / target - 1, -0.2, 0.2)
    beta <- beta * (1 + e * n / horizon)

target None: beta never moves. One step changes beta by at most a factor 1 +- 0.2 n / horizon.

Worked example, beta 0.05, target 6, horizon 10000, n 32 (n / horizon = 0.0032):
  kl 3    : e = 3/6 - 1 = -0.5, clipped to -0.2: beta = 0.05 * (1 - 0.00064) = 0.049968
  kl 6.6  : e = 0.1:                     beta = 0.049968 * 1.00032 = 0.04998398976
  kl 12   : e = 1, clipped to 0.2:      beta = 0.04998398976 * 1.00064 = 0.0500159795134
  kl 6    : e = 0:                       beta unchanged, 0.0500159795134
From 0.05 alone, kl 6.6 gives 0.05 * 1.00032 = 0.050016. Any kl <= 0.8 * target (4.8 here; a
negative k1 estimate too) is -0.2, any kl >= 1.2 * target (7.2) is +0.2.

TorchRL's `torchrl.data.llm.utils.AdaptiveKLController.update(kl_values)` takes the KL penalty
rewards -coef * KL of n samples and recovers kl = -mean(kl_values) / coef, then the same step;
fed [-beta * kl] * n it follows the same betas (it keeps coef as a float32 tensor).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_torchrl.rlhf.tokens import AdaptiveKL
from specs import hand_rlhf
from specs.check import agree

BETA, TARGET, HORIZON, N = 0.05, 6.0, 10_000, 32
KLS = [3.0, 6.6, 12.0, 6.0]
BETAS = [0.049968, 0.04998398976, 0.0500159795134, 0.0500159795134]


def module_path(
    beta: float, target: float | None, horizon: int, steps: list[tuple[float, int]]
) -> list[float]:
    controller = AdaptiveKL(beta, target, horizon)
    return [controller.update(kl, n) for kl, n in steps]


def test_worked_example() -> None:
    """The docstring's four updates, each returning (and storing) the new beta."""
    steps = [(kl, N) for kl in KLS]
    agree("hand", BETAS, hand_rlhf.adaptive_kl_path(BETA, TARGET, HORIZON, steps), rtol=1e-12, atol=0)
    controller = AdaptiveKL(BETA, TARGET, HORIZON)
    for (kl, n), expected in zip(steps, BETAS, strict=True):
        agree(f"beta after kl {kl}", expected, controller.update(kl, n), rtol=1e-12, atol=0)
        assert controller.beta == controller.update(TARGET, n), "kl = target leaves beta as it is"
    agree("one step, kl 6.6", 0.050016, AdaptiveKL(BETA, TARGET, HORIZON).update(6.6, N), rtol=1e-12, atol=0)


def test_clipping_bounds() -> None:
    """e saturates at +-0.2: kl = 0, -1 (a negative k1), 3 and 4.8 all give 0.05 * 0.99936;
    7.2, 12 and 1e6 all give 0.05 * 1.00064 = 0.050032. Just inside, kl 5.4 gives e = -0.1:
    0.05 * 0.99968 = 0.049984."""
    for kl, expected in [(0.0, 0.049968), (-1.0, 0.049968), (3.0, 0.049968), (4.8, 0.049968)]:
        agree(f"kl {kl}", expected, AdaptiveKL(BETA, TARGET, HORIZON).update(kl, N), rtol=1e-12, atol=0)
    for kl in (7.2, 12.0, 1e6):
        agree(f"kl {kl}", 0.050032, AdaptiveKL(BETA, TARGET, HORIZON).update(kl, N), rtol=1e-12, atol=0)
    agree("kl 5.4", 0.049984, AdaptiveKL(BETA, TARGET, HORIZON).update(5.4, N), rtol=1e-12, atol=0)


def test_no_target_keeps_beta() -> None:
    """target None: beta is returned unchanged after any KL, however many updates."""
    controller = AdaptiveKL(BETA, None, HORIZON)
    assert [controller.update(kl, N) for kl in (0.0, 3.0, 1e6, -5.0)] == [BETA] * 4
    assert hand_rlhf.adaptive_kl_path(BETA, None, HORIZON, [(3.0, N), (1e6, N)]) == [BETA] * 2


# TorchRL's controller calls np.clip on a tensor, which NumPy 2 warns about.
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")
def test_agrees_with_torchrl_controller() -> None:
    """TorchRL's controller, fed each step's KL penalty rewards [-coef * kl] * n, follows the
    worked example's betas (float32 coef: 1e-6 relative), then a few more steps with another n."""
    started = time.perf_counter()
    try:
        from torchrl.data.llm.utils import AdaptiveKLController
    except Exception as exc:  # an optional corner of TorchRL (transformers-dependent imports)
        pytest.skip(f"torchrl.data.llm does not import here: {exc!r}")
    if time.perf_counter() - started > 60:
        pytest.skip("importing torchrl.data.llm took over a minute")
    steps = [(kl, N) for kl in KLS] + [(1.0, 8), (9.0, 100), (6.3, 64)]
    controller = AdaptiveKLController(init_kl_coef=BETA, target=TARGET, horizon=HORIZON)
    theirs = []
    for kl, n in steps:
        theirs.append(float(controller.update([-float(controller.coef) * kl] * n)))
    agree("TorchRL vs the worked example", BETAS, theirs[:4], rtol=1e-6, atol=0)
    agree("TorchRL vs AdaptiveKL", theirs, module_path(BETA, TARGET, HORIZON, steps), rtol=1e-6, atol=0)


updates = st.lists(st.tuples(st.floats(-5, 50, allow_nan=False), st.integers(1, 512)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-4, 1.0), st.floats(0.5, 20.0), st.integers(1_000, 100_000), updates)
def test_adaptive_kl_property(
    beta: float, target: float, horizon: int, steps: list[tuple[float, int]]
) -> None:
    """Random updates: module = hand; beta moves up exactly when kl > target and down exactly
    when kl < target, each step by a factor within 1 +- 0.2 n / horizon (so beta stays > 0
    while n < 5 horizon); target None never moves."""
    betas = module_path(beta, target, horizon, steps)
    agree("beta path", hand_rlhf.adaptive_kl_path(beta, target, horizon, steps), betas, rtol=1e-12, atol=0)
    before = [beta, *betas[:-1]]
    for (kl, n), old, new in zip(steps, before, betas, strict=True):
        factor = new / old
        assert abs(factor - 1) <= 0.2 * n / horizon + 1e-15 and new > 0
        assert (new > old) == (kl > target * (1 + 1e-12)) or abs(kl / target - 1) < 1e-9
        assert (new < old) == (kl < target * (1 - 1e-12)) or abs(kl / target - 1) < 1e-9
    assert module_path(beta, None, horizon, steps) == [beta] * len(steps)
