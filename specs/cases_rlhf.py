"""hypothesis strategies for token-level RLHF: random finished completions, as NumPy data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from specs.cases import floats

# The worked example of items 11 and 12: two completions over T = 4 token steps. Row 0
# (prompt of 2 tokens) writes 3 tokens, the last one EOS, then one pad; row 1 (prompt of 1)
# hits the 4-token limit. The pad's log-probs are 0 (unused).
STARTS, LENGTHS = [2, 1], [3, 4]
LOGP = [[-0.5, -1.0, -0.2, 0.0], [-1.0, -2.0, -0.5, -0.1]]  # log pi(token)
REF = [[-0.7, -0.9, -0.5, 0.0], [-1.0, -1.5, -1.0, -0.4]]  # log pi_ref(token)
SCORES = [1.5, -1.0]  # the reward model's score of each whole sequence


def arrays(draw: st.DrawFn, shape: tuple[int, ...], lo: float, hi: float) -> np.ndarray:
    n = int(np.prod(shape))
    return np.array(draw(st.lists(floats(lo, hi), min_size=n, max_size=n)), dtype=np.float64).reshape(shape)


@dataclass
class Completions:
    """B finished completions laid out over T = max(lengths) token steps."""

    starts: np.ndarray  # [B] prompt lengths: the first generated token's position
    lengths: np.ndarray  # [B] real tokens, EOS (or the length limit) included, 1..T
    logp: np.ndarray  # [B, T] log pi(token) of the sampling policy
    ref: np.ndarray  # [B, T] log pi_ref(token)
    scores: np.ndarray  # [B] the reward model's score of each whole completion
    values: np.ndarray  # [B, W] V by (row, position), W = max(start) + T + 1
    garbage: np.ndarray  # [B, T] junk for the padded steps

    @property
    def steps(self) -> int:
        return int(self.lengths.max())

    @property
    def pads(self) -> np.ndarray:
        return np.arange(self.steps)[None, :] >= self.lengths[:, None]


@st.composite
def completions(draw: st.DrawFn, max_rows: int = 4, max_steps: int = 6) -> Completions:
    """Random rows of random lengths; one row reaches T (the rollout's own T = max length)."""
    B, T = draw(st.integers(1, max_rows)), draw(st.integers(1, max_steps))
    lengths = np.array(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    lengths[draw(st.integers(0, B - 1))] = T
    starts = np.array(draw(st.lists(st.integers(1, 4), min_size=B, max_size=B)))
    width = int(starts.max()) + T + 1
    return Completions(
        starts=starts,
        lengths=lengths,
        logp=arrays(draw, (B, T), -4, -0.01),
        ref=arrays(draw, (B, T), -4, -0.01),
        scores=arrays(draw, (B,), -3, 3),
        values=arrays(draw, (B, width), -5, 5),
        garbage=arrays(draw, (B, T), -1e4, 1e4),
    )
