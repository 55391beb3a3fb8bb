"""What learns in a run: one collect-and-update of PPO per call, by one of two routes.

    ProgramLearner    a torch-native env (CartPole-v1, Acrobot-v1) stepped in this process:
                      the many-seeds program (run/seeds_program.py) with one seed, so
                      ``train --seed S`` is seed S of ``train --num-seeds N`` — the same
                      rollout, GAE and update functions, one graph each with ``--compile``
    CollectorLearner  every other env, backend or option: TorchRL's Collector (here, in
                      processes or on Ray), then GAE and PPOUpdate over ClipPPOLoss (core/)

Both keep an ordinary actor and critic holding the current weights, which evaluation,
videos, checkpoints and the MLflow model read, and both hand the trainer (trainer.py) the
same three things per call: frames, the returns of the episodes that ended, the update's
metrics. The two compute the same algorithm (specs/test_independent_seeds.py holds the
program's step equal to ClipPPOLoss's); they differ in random streams, so a seed's numbers
differ between routes. ``--env-backend gymnasium`` takes a torch-native env id the Collector
route.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, NamedTuple

import torch
from tensordict import TensorDict, TensorDictBase

from ppo_torchrl.core.advantage import make_advantage
from ppo_torchrl.core.loss import make_loss
from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams
from ppo_torchrl.core.update import NonFiniteError, make_update
from ppo_torchrl.envs.factory import make_env, restore_env, snapshot_env
from ppo_torchrl.models.actor_critic import loss_critic, make_actor_critic
from ppo_torchrl.models.encoders import ObservationNorm
from ppo_torchrl.models.stacked import load_row, split_row
from ppo_torchrl.run.checkpoint import restore_rng, rng_state
from ppo_torchrl.run.collection import Collection
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.episodes import EpisodeReturns
from ppo_torchrl.run.preflight import uses_program
from ppo_torchrl.run.reward_norm import RewardNormalizer
from ppo_torchrl.run.seeds_program import METRICS, start_program


class Learned(NamedTuple):
    frames: int  # collected in this call
    returns: list[float]  # of the episodes that ended, in the order they ended
    metrics: dict[str, float]  # the update's, and the learning rate it ran at


def make_learner(cfg: PPOConfig, device: torch.device, program: bool | None = None) -> Any:
    """The learner of ``cfg``'s route (``program`` overrides: a checkpoint's route)."""
    program = uses_program(cfg) if program is None else program
    return ProgramLearner(cfg, device) if program else CollectorLearner(cfg, device)


class ProgramLearner:
    """One seed of the many-seeds program; ``actor`` and ``critic`` follow its weights."""

    optimizer = None  # Adam's state is the program's (its `state_dict` shows it as torch's)

    def __init__(self, cfg: PPOConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.program, actor, critic = start_program(cfg, [cfg.seed], device)
        self.actor, self.critic = actor.to(device), critic.to(device)

    def describe(self) -> str:
        compiled = ", compiled (the first update compiles)" if self.cfg.compile else ""
        return (
            f"learner: the program, one seed of --num-seeds's step (run/learners.py){compiled}; "
            "--env-backend gymnasium learns on TorchRL's Collector instead"
        )

    def learn(self, frames_before: int) -> Learned:
        cfg, program = self.cfg, self.program
        if cfg.anneal_lr:  # in place: a compiled update reads the same tensor
            program.lr.fill_(cfg.lr_at(frames_before))
        metrics = program.iterate()
        if bool(metrics["nonfinite"][0]):
            bad = next((k for k in METRICS if not torch.isfinite(metrics[k][0])), "grad_norm")
            raise NonFiniteError(bad, float(metrics[bad][0]))
        self._sync()
        ended, done = (x[0].T for x in program.last_ended)  # time-major: the order they ended
        out = {k: float(v[0]) for k, v in metrics.items() if k != "nonfinite"}
        out["lr"] = float(program.lr)
        return Learned(cfg.frames_per_batch, ended[done].tolist(), out)

    def _sync(self) -> None:
        load_row(self.program.learners.params[0][0], self.actor)
        load_row(self.program.learners.params[1][0], self.critic)

    @property
    def last_batch(self) -> TensorDictBase | None:
        """The last update's batch as the Collector route's keys (--explain reads it)."""
        data = self.program.last_data
        if data is None:
            return None
        keys = ("observation", "action", "action_log_prob", "advantage")
        values = (data.observation, data.action, data.old_log_prob, data.advantage)
        return TensorDict(
            {k: v[0] for k, v in zip(keys, values, strict=True)}, batch_size=[data.action.shape[1]]
        )

    def shutdown(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's route fields: the program's whole state, and its Adam moments also
        laid out as torch's Adam state dict over the actor's then the critic's parameters."""
        learners = self.program.learners
        modules = (self.actor, self.critic)
        moments = [
            [split_row(m[i][0].cpu(), module) for m in (learners.exp_avg, learners.exp_avg_sq)]
            for i, module in enumerate(modules)
        ]
        step = learners.steps[0].float().cpu()
        per_param = [(a, b) for avg, sq in moments for a, b in zip(avg, sq, strict=True)]
        return {
            "optimizer": {
                "state": {
                    i: {"step": step.clone(), "exp_avg": a.clone(), "exp_avg_sq": b.clone()}
                    for i, (a, b) in enumerate(per_param)
                },
                "param_groups": [
                    {
                        "lr": float(self.program.lr),
                        "betas": (0.9, 0.999),
                        "eps": 1e-5,
                        "params": list(range(len(per_param))),
                    }
                ],
            },
            "rng": {"torch": torch.get_rng_state(), "update": None, "cuda": None},
            "env": None,
            "episode_carry": None,
            "reward_norm": None,
            "program": self.program.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.program.load_state_dict(state["program"])
        self._sync()
        torch.set_rng_state(state["rng"]["torch"])


class CollectorLearner:
    """TorchRL's Collector, GAE and PPOUpdate: any env, any backend, every option."""

    def __init__(self, cfg: PPOConfig, device: torch.device) -> None:
        self.cfg = cfg
        # The single collector steps this env; other backends build theirs in their workers,
        # and one env here gives the networks their shapes.
        single = cfg.collector == "single"
        env = make_env(cfg.env, cfg.num_envs if single else 1, device=device, **cfg.env_options())
        torch.manual_seed(cfg.seed)  # the networks' initial weights
        self.actor, self.critic = make_actor_critic(env, device=device, **cfg.network_options())
        self.obs_norm = next((m for m in self.actor.modules() if isinstance(m, ObservationNorm)), None)
        self.reward_norm = RewardNormalizer(cfg.num_envs, cfg.gamma) if cfg.normalize_rewards else None
        self.loss_module = make_loss(cfg.params(LossParams), self.actor, loss_critic(self.critic))
        # A CNN critic is the costliest pass of GAE: value observations and next ones at once.
        gae = replace(cfg.params(GAEParams), single_value_call=loss_critic(self.critic) is not self.critic)
        advantage = make_advantage(gae, self.critic)
        self.ppo_update = make_update(cfg.params(UpdateParams), self.loss_module, advantage, seed=cfg.seed)
        self.optimizer = self.ppo_update.optimizer
        if not single:
            env.close()
        self.env = env if single else None
        self.device = device
        self.collection = Collection(cfg, self.actor, device, self.env)
        self.episode_returns = EpisodeReturns()
        self.last_batch: TensorDictBase | None = None
        self._batches: Iterator[TensorDictBase] | None = None

    def describe(self) -> str:
        return f"learner: TorchRL's Collector ({self.cfg.collector}), GAE and PPOUpdate (run/learners.py)"

    def learn(self, frames_before: int) -> Learned:
        cfg = self.cfg
        if self._batches is None:
            self._batches = self.collection.batches()
        batch = self.last_batch = next(self._batches)
        returns = self.episode_returns(batch)
        if cfg.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr_at(frames_before)
        if cfg.reward_scale != 1.0:
            batch["next", "reward"] = batch["next", "reward"] * cfg.reward_scale
        if self.reward_norm is not None:
            self.reward_norm(batch)
        metrics = self.ppo_update(batch)
        if self.obs_norm is not None:  # after the update: frozen while a batch is collected and learned
            self.obs_norm.update(batch["observation"])
        self.collection.sync_weights()
        return Learned(batch.numel(), returns, {**metrics, "lr": self.optimizer.param_groups[0]["lr"]})

    def shutdown(self) -> None:
        self.collection.shutdown()

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.ppo_update.generator, self.device),
            "env": snapshot_env(self.env) if self.env is not None else None,
            "episode_carry": self.episode_returns.carry,
            "reward_norm": self.reward_norm.state_dict() if self.reward_norm else None,
            "program": None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """After `check_weights` loaded the networks and the optimizer. Envs come back through
        TorchRL's own reset path; where a backend cannot restore its envs, the episodes in
        flight restart and their partial returns go."""
        restored = self.env is not None and restore_env(self.env, state["env"])
        self.collection.reset()
        carry = state["episode_carry"]
        self.episode_returns.carry = carry.to(self.device) if restored and carry is not None else None
        if self.reward_norm is not None:
            self.reward_norm.load_state_dict(state["reward_norm"])
        restore_rng(state["rng"], self.ppo_update.generator, self.device)
