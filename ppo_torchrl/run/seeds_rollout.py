"""Rollouts and greedy evaluations of every seed at once, on a `SeededEnv`.

The policy is called as its `StackedMLP` (logits for [seeds, envs]) and actions are drawn by
inverse CDF from each seed's own stream, so no ``torch.distributions`` object or TensorDict
is built per step. The batch comes back as the TensorDict [seeds, envs, time] that GAE and
ClipPPOLoss read, with ``("next", "observation")`` the true final observation where an
episode ended (a truncation is bootstrapped from it).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict

from ppo_torchrl.core.streams import Streams
from ppo_torchrl.envs.seeded import SeededEnv
from ppo_torchrl.models.stacked import StackedMLP


class EpisodeReturns:
    """Returns of the episodes in flight [seeds, envs] and of those finished since last read."""

    def __init__(self, shape: tuple[int, int], device: torch.device) -> None:
        self.running = torch.zeros(shape, device=device)
        self.total = torch.zeros(shape[0], device=device)
        self.count = torch.zeros(shape[0], device=device)

    def add(self, reward: torch.Tensor, done: torch.Tensor) -> None:
        self.running += reward
        self.total += (self.running * done).sum(1)
        self.count += done.sum(1)
        self.running *= ~done

    def read(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean return per seed, NaN where none finished; episodes per seed); then resets."""
        mean = self.total / self.count.where(self.count > 0, torch.nan)
        out = (mean, self.count.clone())
        self.total.zero_()
        self.count.zero_()
        return out


@torch.no_grad()
def rollout(
    env: SeededEnv, policy: StackedMLP, steps: int, streams: Streams, returns: EpisodeReturns
) -> TensorDict:
    """``steps`` steps of every env of every seed with actions sampled from ``policy``."""
    (seeds, envs), dev = env.shape, env.device
    n_actions = env.dynamics.NUM_ACTIONS
    obs = torch.empty(seeds, envs, steps, len(env.dynamics.OBSERVATION_HIGH), device=dev)
    next_obs = torch.empty_like(obs)
    action = torch.empty(seeds, envs, steps, dtype=torch.int64, device=dev)
    log_prob = torch.empty(seeds, envs, steps, device=dev)
    reward = torch.empty(seeds, envs, steps, 1, device=dev)
    terminated = torch.empty(seeds, envs, steps, 1, dtype=torch.bool, device=dev)
    done = torch.empty_like(terminated)
    current = env.observation()
    for t in range(steps):
        log_p = torch.log_softmax(policy(current), -1)
        u = streams.uniform(envs).to(dev)
        a = (log_p.exp().cumsum(-1) < u.unsqueeze(-1)).sum(-1).clamp(max=n_actions - 1)
        out = env.step(a)
        obs[:, :, t], action[:, :, t] = current, a
        log_prob[:, :, t] = log_p.gather(-1, a.unsqueeze(-1)).squeeze(-1)
        next_obs[:, :, t] = out["observation"]
        reward[:, :, t, 0] = out["reward"]
        terminated[:, :, t, 0], done[:, :, t, 0] = out["terminated"], out["done"]
        returns.add(out["reward"], out["done"])
        current = env.observation()
    nxt = {"observation": next_obs, "reward": reward, "terminated": terminated, "done": done}
    return TensorDict(
        {"observation": obs, "action": action, "action_log_prob": log_prob, "next": nxt},
        batch_size=[seeds, envs, steps],
        device=dev,
    )


@torch.no_grad()
def greedy_returns(
    env_id: str, policy: StackedMLP, seeds: list[int], episodes: int, device: torch.device
) -> torch.Tensor:
    """Mean undiscounted return of each seed's greedy (argmax) policy over ``episodes``
    episodes on the torch-native env, all at once [seeds]. Start states come from a fixed
    stream per seed, so every evaluation of a run faces the same episodes. (Final, judged
    evaluations run on gymnasium's own env instead, see seeds_trainer.py.)"""
    env = SeededEnv(env_id, Streams(seeds, salt=4, device=device), len(seeds), episodes, device)
    total = torch.zeros(env.shape, device=env.device)
    running = torch.ones(env.shape, dtype=torch.bool, device=env.device)
    for _ in range(env.dynamics.MAX_EPISODE_STEPS):
        out = env.step(policy(env.observation()).argmax(-1))
        total += out["reward"] * running
        running &= ~out["done"]
        if not bool(running.any()):
            break
    return total.mean(1)
