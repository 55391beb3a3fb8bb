"""Many seeds in one program: ``python -m ppo_torchrl.train --num-seeds N``.

Seeds ``seed … seed+N-1`` train as one batch dimension of the same PPO recipe: every env,
network, advantage and update carries [seeds, ...] and every per-seed quantity stays per
seed (core/functional.py lists them). Per iteration, as in the algorithm box:

    for each iteration:
        roll out num_envs x rollout_steps steps per seed      (SeedsProgram._rollout)
        GAE and epochs of minibatch steps, per seed            (_advantages, _update)
        now and then: greedy evaluation of every seed          (torch-native, all at once)
    final: each seed's greedy policy on gymnasium's own env, eval_episodes episodes

Only the torch-native envs run this way: they step every seed's envs in a few tensor ops.
With ``--compile`` each part is one torch.compile'd graph (run/seeds_program.py). The
checkpoint holds every seed (run/seeds_checkpoint.py) and resumes exactly; `evaluate` and
`export` take one seed of it with ``--seed-index k``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ppo_torchrl.envs.factory import TORCH_NATIVE_ENVS
from ppo_torchrl.models.actor_critic import make_actor_critic
from ppo_torchrl.models.stacked import load_row
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.preflight import check_seeds_config
from ppo_torchrl.run.results import EvalPoint, stable_solve
from ppo_torchrl.run.seeds_program import start_program


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
    """Every seed's program state (run/seeds_program.py) and what a run reports of it."""

    def __init__(self, cfg: PPOConfig, device: torch.device) -> None:
        check_seeds_config(cfg)
        self.cfg, self.device = cfg, device
        self.seeds = list(range(cfg.seed, cfg.seed + cfg.num_seeds))
        # each seed starts from the weights a single run with --seed s starts from
        self.program, _, _ = start_program(cfg, self.seeds, device)
        self.frames = 0
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.evals: list[list[EvalPoint]] = [[] for _ in self.seeds]
        self.last_metrics: dict[str, torch.Tensor] = {}
        self.first_iteration_seconds = 0.0
        self.first_iteration = 0  # a resumed run's first iteration is its own warm-up
        self.best_means = torch.full((len(self.seeds),), -torch.inf)
        self.best_frames = torch.zeros(len(self.seeds), dtype=torch.int64)
        self.best_actor = self.actor_weights()

    @property
    def iterations(self) -> int:
        return self.cfg.frames // self.cfg.frames_per_batch

    def actor_weights(self) -> torch.Tensor:
        """Every seed's flat actor weights [seeds, P], on the CPU."""
        return self.program.learners.params[0].detach().cpu().clone()

    def iterate(self, iteration: int) -> None:
        """One collect-and-update of every seed (``iteration`` counts from the run's start)."""
        cfg = self.cfg
        started = time.perf_counter()
        if cfg.anneal_lr:  # in place: the compiled update reads the same tensor
            self.program.lr.fill_(cfg.lr_at(iteration * cfg.frames_per_batch))
        self.last_metrics = self.program.iterate()
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # the clock measures the work, not its launch
        self.frames += cfg.frames_per_batch
        seconds = time.perf_counter() - started
        self.train_seconds += seconds
        if iteration == self.first_iteration:  # warm-up, and torch.compile's compilation
            self.first_iteration_seconds = seconds

    def evaluate(self) -> torch.Tensor:
        """Every seed's greedy mean on the torch-native env (off the training clock)."""
        started = time.perf_counter()
        means = self.program.greedy_returns(self.cfg.eval_episodes).cpu()
        for points, mean in zip(self.evals, means.tolist(), strict=True):
            points.append(
                EvalPoint(self.frames, self.train_seconds, mean, float("nan"), self.cfg.eval_episodes)
            )
        # Each seed's best evaluation so far and its weights (best.pt): per seed, as a single
        # run keeps its own best.pt.
        better = means > self.best_means
        self.best_means = torch.where(better, means, self.best_means)
        self.best_frames = torch.where(better, self.frames, self.best_frames)
        self.best_actor[better] = self.actor_weights()[better]
        self.eval_seconds += time.perf_counter() - started
        return means

    def final_evaluation(self) -> tuple[list[float], list[float]]:
        """Each seed's greedy policy, as an ordinary actor, on gymnasium's own env: the same
        evaluation a single-seed run ends with (and `evaluate --seed-index k` repeats)."""
        from ppo_torchrl.run.evaluation import evaluate_policy

        started = time.perf_counter()
        means, stds = [], []
        for k, seed in enumerate(self.seeds):
            result = evaluate_policy(self.policy_of(k), self.cfg.env, self.cfg.eval_episodes, seed)
            means.append(result.mean)
            stds.append(result.std)
        self.eval_seconds += time.perf_counter() - started
        return means, stds

    def policy_of(self, index: int) -> torch.nn.Module:
        """Seed ``index``'s policy as the single-seed trainer builds it, on the CPU."""
        return seed_actor(self.cfg, self.program.learners.params[0][index].detach().cpu())

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
