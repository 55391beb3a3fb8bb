"""Episode returns read off collected batches, for any env.

The collector hands over [num_envs, T] batches whose episodes straddle batch boundaries.
`EpisodeReturns` carries each env's partial return from one batch to the next and yields
the returns of the episodes that ended, in the order they ended. It does with a few tensor
ops per batch what a per-step ``RewardSum`` transform does inside every env step.

Where the env reports a true game score beside a reward shaped for learning (Atari:
``("next", "game_reward")`` unclipped, ``("next", "game_over")`` at the real end of the game
rather than at each lost life), the returns are those games' scores.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase


class EpisodeReturns:
    def __init__(self) -> None:
        self.carry: torch.Tensor | None = None  # [num_envs] return so far of running episodes

    def __call__(self, batch: TensorDictBase) -> list[float]:
        """Undiscounted returns of the episodes that ended in ``batch`` ([num_envs, T])."""
        scored = ("next", "game_reward") in batch.keys(True)
        reward_key, done_key = ("game_reward", "game_over") if scored else ("reward", "done")
        reward = batch["next", reward_key].reshape(*batch.batch_size, -1).sum(-1).double()
        done = batch["next", done_key].reshape(batch.batch_size)
        n, t = done.shape
        device = done.device
        if self.carry is None:
            self.carry = torch.zeros(n, dtype=torch.float64, device=device)
        # running[i, k]: env i's return from the start of its episode (carry included) to k,
        # as long as no episode ended before k; subtracting the value at the last earlier
        # end gives the return within the episode that step k belongs to.
        running = self.carry[:, None] + reward.cumsum(1)
        steps = torch.arange(t, device=device).expand(n, t)
        last_end = torch.where(done, steps, -1).cummax(1).values  # last end at or before k
        before = torch.cat([torch.full((n, 1), -1, device=device), last_end[:, :-1]], 1)  # strictly before k
        padded = torch.cat([torch.zeros(n, 1, dtype=running.dtype, device=device), running], 1)
        within = running - padded.gather(1, before + 1)
        self.carry = running[:, -1] - padded.gather(1, last_end[:, -1:] + 1).squeeze(1)
        return within.T[done.T].tolist()  # time-major: in the order the episodes ended
