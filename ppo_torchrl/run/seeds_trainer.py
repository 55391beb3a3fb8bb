"""Many seeds in one program: ``python -m ppo_torchrl.train --num-seeds N``.

Seeds ``seed … seed+N-1`` train as one batch dimension of the same PPO recipe: every env,
network, advantage and update carries [seeds, ...] and every per-seed quantity stays per
seed (core/independent.py lists them). Per iteration, as in the algorithm box:

    for each iteration:
        roll out num_envs x rollout_steps steps per seed      (seeds_rollout.rollout)
        GAE and epochs of minibatch steps, per seed            (core IndependentUpdate)
        now and then: greedy evaluation of every seed          (torch-native, all at once)
    final: each seed's greedy policy on gymnasium's own env, eval_episodes episodes

Only the torch-native envs (envs/seeded.py) run this way: they step every seed's envs in a
few tensor ops. The checkpoint holds every seed (run/seeds_checkpoint.py); `evaluate` and
`export` take one with ``--seed-index k``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ppo_torchrl.core.advantage import make_advantage
from ppo_torchrl.core.independent import IndependentUpdate, MaskedAdam
from ppo_torchrl.core.loss import make_loss
from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams
from ppo_torchrl.core.streams import Streams
from ppo_torchrl.envs.factory import TORCH_NATIVE_ENVS
from ppo_torchrl.envs.seeded import SeededEnv
from ppo_torchrl.models.actor_critic import make_actor_critic
from ppo_torchrl.models.stacked import StackedMLP, load_row, stacked_actor, stacked_critic
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.preflight import check_seeds_config
from ppo_torchrl.run.results import EvalPoint, stable_solve
from ppo_torchrl.run.seeds_rollout import EpisodeReturns, greedy_returns, rollout


@dataclass
class SeedsResult:
    seeds: list[int]
    frames: int  # per seed
    frames_per_batch: int  # per seed
    train_seconds: float
    eval_seconds: float
    final: list[float]  # each seed's final greedy mean on gymnasium's env
    final_std: list[float]
    evals: list[list[EvalPoint]]  # per seed, torch-native evaluations during training
    stable: list[EvalPoint | None]
    first_iteration_seconds: float = 0.0
    checkpoint: str | None = None
    write_errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        from ppo_torchrl.run.stats import summarize

        return {
            "seeds": self.seeds,
            "frames_per_seed": self.frames,
            "frames_per_batch": self.frames_per_batch,
            "train_seconds": self.train_seconds,
            "first_iteration_seconds": self.first_iteration_seconds,
            "eval_seconds": self.eval_seconds,
            "frames_per_second_all_seeds": len(self.seeds) * self.frames / max(self.train_seconds, 1e-9),
            "final_eval_means": self.final,
            "final_eval_stds": self.final_std,
            "final": summarize(self.final),
            "stable_solved_at_frames": [p.frames if p else None for p in self.stable],
            "stable_solved_at_seconds": [p.train_seconds if p else None for p in self.stable],
            "evals": [[list(p) for p in points] for points in self.evals],
            "checkpoint": self.checkpoint,
        }


def seed_actor(cfg: PPOConfig, weights: torch.Tensor) -> torch.nn.Module:
    """An ordinary single-seed actor for ``cfg`` (CPU) holding one seed's flat actor weights
    (a row of the stacked actor); ValueError if they do not fit ``cfg``'s network."""
    actor, _ = make_actor_critic(
        TORCH_NATIVE_ENVS[cfg.env](1), hidden_sizes=cfg.hidden_sizes, activation=cfg.activation
    )
    load_row(weights, actor)
    return actor


class SeedsTrainer:
    """Every seed's actor, critic, optimizer, env and random streams, stacked."""

    def __init__(self, cfg: PPOConfig, device: torch.device) -> None:
        check_seeds_config(cfg)
        self.cfg, self.device = cfg, device
        self.seeds = list(range(cfg.seed, cfg.seed + cfg.num_seeds))
        actors, critics = [], []
        probe = TORCH_NATIVE_ENVS[cfg.env](1)
        for s in self.seeds:  # each seed's weights as the single-seed trainer draws them
            torch.manual_seed(s)
            actor, critic = make_actor_critic(probe, hidden_sizes=cfg.hidden_sizes, activation=cfg.activation)
            actors.append(actor.module[0].module)
            critics.append(critic.module)
        self.actor_net = StackedMLP(actors, cfg.activation).to(device)
        self.critic_net = StackedMLP(critics, cfg.activation).to(device)
        self.actor_net.keep_output = True  # see IndependentUpdate._log_prob
        self.actor, self.critic = stacked_actor(self.actor_net), stacked_critic(self.critic_net)
        loss = make_loss(cfg.params(LossParams), self.actor, self.critic, independent=True)
        if cfg.compile:  # shapes never change within a run: one graph per shape, no guards
            loss = torch.compile(loss, dynamic=False)
        up = cfg.params(UpdateParams)
        self.optimizer = MaskedAdam([self.actor_net.flat, self.critic_net.flat], up.lr)
        self.update = IndependentUpdate(
            loss_module=loss,
            optimizer=self.optimizer,
            advantage_module=make_advantage(cfg.params(GAEParams), self.critic),
            epochs=up.epochs,
            minibatch_size=up.minibatch_size,
            max_grad_norm=up.max_grad_norm,
            streams=Streams(self.seeds, salt=3, device=device),
            target_kl=up.target_kl,
        )
        env_streams = Streams(self.seeds, salt=1, device=device)
        self.env = SeededEnv(cfg.env, env_streams, len(self.seeds), cfg.num_envs, device)
        self.action_streams = Streams(self.seeds, salt=2, device=device)
        self.returns = EpisodeReturns(self.env.shape, device)
        self.frames = 0
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.evals: list[list[EvalPoint]] = [[] for _ in self.seeds]
        self.last_metrics: dict[str, torch.Tensor] = {}
        self.first_iteration_seconds = 0.0
        self.best_means = torch.full((len(self.seeds),), -torch.inf)
        self.best_frames = torch.zeros(len(self.seeds), dtype=torch.int64)
        self.best_actor = self.actor_net.flat.detach().cpu().clone()

    @property
    def iterations(self) -> int:
        return self.cfg.frames // self.cfg.frames_per_batch

    def iterate(self, iteration: int) -> None:
        """One collect-and-update of every seed."""
        cfg = self.cfg
        started = time.perf_counter()
        if cfg.anneal_lr:
            self.optimizer.lr = cfg.lr * (1 - iteration / self.iterations)
        batch = rollout(self.env, self.actor_net, cfg.rollout_steps, self.action_streams, self.returns)
        if cfg.reward_scale != 1.0:
            batch["next", "reward"] = batch["next", "reward"] * cfg.reward_scale
        self.last_metrics = self.update(batch)
        self.frames += cfg.frames_per_batch
        seconds = time.perf_counter() - started
        self.train_seconds += seconds
        if iteration == 0:  # warm-up, and torch.compile's compilation with --compile
            self.first_iteration_seconds = seconds

    def evaluate(self) -> torch.Tensor:
        """Every seed's greedy mean on the torch-native env (off the training clock)."""
        started = time.perf_counter()
        means = greedy_returns(self.cfg.env, self.actor_net, self.seeds, self.cfg.eval_episodes, self.device)
        for points, mean in zip(self.evals, means.tolist(), strict=True):
            points.append(
                EvalPoint(self.frames, self.train_seconds, mean, float("nan"), self.cfg.eval_episodes)
            )
        # Each seed's best evaluation so far and its weights (best.pt): per seed, as a single
        # run keeps its own best.pt.
        means_cpu = means.cpu()
        better = means_cpu > self.best_means
        self.best_means = torch.where(better, means_cpu, self.best_means)
        self.best_frames = torch.where(better, self.frames, self.best_frames)
        self.best_actor[better] = self.actor_net.flat.detach().cpu()[better]
        self.eval_seconds += time.perf_counter() - started
        return means

    def final_evaluation(self) -> tuple[list[float], list[float]]:
        """Each seed's greedy policy, as an ordinary actor, on gymnasium's own env: the same
        evaluation a single-seed run ends with (and `evaluate --seed-index k` repeats)."""
        from ppo_torchrl.run.evaluation import evaluate_policy

        started = time.perf_counter()
        means, stds = [], []
        for k, seed in enumerate(self.seeds):
            actor = self.policy_of(k)
            result = evaluate_policy(actor, self.cfg.env, self.cfg.eval_episodes, seed)
            means.append(result.mean)
            stds.append(result.std)
        self.eval_seconds += time.perf_counter() - started
        return means, stds

    def policy_of(self, index: int) -> torch.nn.Module:
        """Seed ``index``'s policy as the single-seed trainer builds it, on the CPU."""
        return seed_actor(self.cfg, self.actor_net.flat[index])

    def result(self, final: list[float], final_std: list[float], threshold: float | None) -> SeedsResult:
        stable = [stable_solve(points, threshold) for points in self.evals]
        return SeedsResult(
            self.seeds,
            self.frames,
            self.cfg.frames_per_batch,
            self.train_seconds,
            self.eval_seconds,
            final,
            final_std,
            self.evals,
            stable,
            first_iteration_seconds=self.first_iteration_seconds,
        )
