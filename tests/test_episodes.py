"""Episode returns read off batches match a plain step-by-step bookkeeping."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

from ppo_torchrl.run.episodes import EpisodeReturns


def by_hand(batches: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> list[float]:
    carry, ended = [0.0] * n, []
    for reward, done in batches:
        for k in range(reward.shape[1]):
            for i in range(n):
                carry[i] += float(reward[i, k])
                if done[i, k]:
                    ended.append(carry[i])
                    carry[i] = 0.0
    return ended


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 4), t=st.integers(1, 6), count=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_returns_match_step_by_step_bookkeeping(n: int, t: int, count: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    batches = [
        (torch.randn(n, t, generator=gen), torch.rand(n, t, generator=gen) < 0.3) for _ in range(count)
    ]
    tracker = EpisodeReturns()
    got: list[float] = []
    for reward, done in batches:
        got += tracker(TensorDict({"next": {"reward": reward[..., None], "done": done[..., None]}}, [n, t]))
    want = by_hand(batches, n)
    assert len(got) == len(want)
    assert all(abs(a - b) < 1e-4 for a, b in zip(got, want, strict=True)), (got, want)


def test_episode_spanning_batches() -> None:
    tracker = EpisodeReturns()
    first = TensorDict(
        {"next": {"reward": torch.ones(1, 3, 1), "done": torch.zeros(1, 3, 1, dtype=torch.bool)}}, [1, 3]
    )
    assert tracker(first) == []
    done = torch.tensor([[[False], [True], [False]]])
    second = TensorDict({"next": {"reward": torch.full((1, 3, 1), 2.0), "done": done}}, [1, 3])
    assert tracker(second) == [3.0 + 4.0]  # 3 from the first batch, 2 + 2 in this one
