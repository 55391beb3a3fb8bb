"""One PPO iteration of every seed as three compiled graphs: rollout, GAE, the update.

    rollout   num_envs x rollout_steps steps of every seed's envs and policy, up to CHUNK
              steps unrolled into one graph (actions by inverse CDF from each seed's stream,
              resets from another; episode returns counted on the way)
    GAE       the critic on every observation and next observation, then the recursion
    update    every epoch in one graph: each epoch's permutation per seed, then each
              minibatch's step (core/functional.py: loss, gradient, per-seed clipping,
              masked Adam, target_kl)

Everything is a pure function of tensors; the state (weights, Adam moments, envs, stream
positions, the learning rate) lives in tensors, and nothing is read back to Python inside an
iteration. So torch.compile makes each piece one graph (``fullgraph=True``: a break is an
error, not a slowdown) that never recompiles after the first iteration, and ``cudagraphs``
replays them as CUDA graphs on a GPU. Granularities measured on the 2-core CPU (16 seeds,
4 epochs, the variants interleaved in one process, 2026-12-04): a graph per epoch with
8-step rollout chunks ran 167k frames/s, the whole update as one graph with 32-step chunks
181k, that plus inductor's C++ wrapper 186-211k (1 seed: 82k, 95k, 131k); a graph per
minibatch step 263k against the whole update's 277k in another hour (1 seed: 93k vs 137k,
experiments/seeds_granularity.py). The
torch-native envs' physics are the same functions
the single-env classes step (envs/cartpole.py, acrobot.py), held against gymnasium by
tests/test_env_parity_*.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from ppo_torchrl.core.functional import Learners, Minibatch, gae, make_step
from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams
from ppo_torchrl.core.streams import Streams, bits_at, to_uniform
from ppo_torchrl.envs.factory import TORCH_NATIVE_ENVS
from ppo_torchrl.envs.native import TorchNativeEnv
from ppo_torchrl.models.actor_critic import make_actor_critic
from ppo_torchrl.models.stacked import stack, stacked_forward
from ppo_torchrl.run.config import PPOConfig

CHUNK = 32  # rollout steps per graph: 8-step chunks ran 10-20% slower, 128 compile for minutes
METRICS = (
    "loss_objective", "loss_critic", "loss_entropy", "loss_total", "entropy", "clip_fraction",
    "kl_approx", "kl_k3", "mean_ratio", "max_ratio", "ESS", "explained_variance", "grad_norm", "nonfinite",
)  # fmt: skip
SALTS = {"env": 1, "act": 2, "mb": 3, "eval": 4}  # one stream per seed and purpose


class SeedsProgram:
    """Every seed's networks, Adam state, envs, streams and episode counts, and the functions
    (compiled with `compile`) that advance them one iteration at a time."""

    def __init__(
        self,
        cfg: PPOConfig,
        seeds: list[int],
        dynamics: type[TorchNativeEnv],
        weights: tuple[Tensor, Tensor],
        shapes: tuple[list[tuple[int, ...]], list[tuple[int, ...]]],
        device: torch.device,
    ) -> None:
        self.cfg, self.seeds, self.device, self.dyn = cfg, seeds, device, dynamics
        S, N, T = len(seeds), cfg.num_envs, cfg.rollout_steps
        self.shape, self.batch = (S, N), N * T
        self.chunk = max(k for k in range(1, min(T, CHUNK) + 1) if T % k == 0)
        self.policy = lambda flat, obs: stacked_forward(flat, shapes[0], cfg.activation, obs)
        self.value = lambda flat, obs: stacked_forward(flat, shapes[1], cfg.activation, obs).squeeze(-1)
        self.update_params = cfg.params(UpdateParams)
        self.gae_params = cfg.params(GAEParams)
        self._step_args = (self.policy, self.value, cfg.params(LossParams), self.update_params)
        self.step = make_step(*self._step_args, compiled=False)
        self.learners = Learners.start(tuple(w.detach().to(device).clone() for w in weights))
        self.keys = {name: Streams(seeds, salt, device).keys for name, salt in SALTS.items()}
        self.drawn = {
            name: torch.zeros((), dtype=torch.int64, device=device) for name in ("env", "act", "mb")
        }
        u = to_uniform(bits_at(self.keys["env"], self.drawn["env"], N * dynamics.STATE_DIM), torch.float64)
        self.drawn["env"] += N * dynamics.STATE_DIM
        self.env_state = dynamics.start_states(u.view(S, N, dynamics.STATE_DIM))
        self.elapsed = torch.zeros(self.shape, dtype=torch.int64, device=device)
        self.running = torch.zeros(self.shape, device=device)  # returns of the episodes in flight
        self.lr = torch.tensor(float(self.update_params.lr), device=device)
        self.episodes = (torch.zeros(S, device=device), torch.zeros(S, device=device))  # (sum, count)
        self._fns: dict[str, Callable[..., Any]] = {
            "rollout": self._rollout, "advantages": self._advantages, "update": self._update
        }  # fmt: skip
        self.cudagraphs = False
        self.last_ended: tuple[Tensor, Tensor] | None = None
        self.last_data: Minibatch | None = None

    def compile(self, cudagraphs: bool = False) -> None:
        """Each function one graph (``fullgraph``) for fixed shapes (``dynamic=False``); on the
        CPU with inductor's C++ wrapper (cuts the per-call Python overhead, +10-40% measured),
        with ``cudagraphs`` on a GPU replayed as CUDA graphs."""
        mode = "reduce-overhead" if cudagraphs else None  # (torch takes a mode or options)
        options = {"cpp_wrapper": True} if self.device.type == "cpu" and not cudagraphs else None
        self.cudagraphs = cudagraphs
        self.step = make_step(*self._step_args, compiled=True)  # func.grad: traced into the graph
        self._fns = {
            name: torch.compile(fn, dynamic=False, fullgraph=True, options=options, mode=mode)
            for name, fn in self._fns.items()
        }

    def _call(self, name: str, *args: Any) -> Any:
        out = self._fns[name](*args)
        # A CUDA graph writes its outputs into the same memory at every replay: keep copies.
        return tree_map(lambda x: x.clone() if isinstance(x, Tensor) else x, out) if self.cudagraphs else out

    # --- the pure functions ----------------------------------------------------------------------
    def _rollout(
        self, actor: Tensor, state: Tensor, elapsed: Tensor, running: Tensor, act_at: Tensor, env_at: Tensor
    ) -> tuple[Tensor, ...]:
        """``self.chunk`` steps of every env: the steps' tensors [S, N, K, ...] (the last, the
        return of the episode each step ended, 0 where none did), and the envs' new state,
        step counts and running returns."""
        dyn, (S, N) = self.dyn, self.shape
        cols: tuple[list[Tensor], ...] = ([], [], [], [], [], [], [], [])
        K, D = self.chunk, dyn.STATE_DIM
        # The chunk's draws at once (step k's are positions k*N.. of the action stream and
        # k*N*D.. of the env stream, as if drawn step by step): two hashes instead of 2K.
        u_act = to_uniform(bits_at(self.keys["act"], act_at, K * N)).view(S, K, N)
        u_env = to_uniform(bits_at(self.keys["env"], env_at, K * N * D), torch.float64).view(S, K, N, D)
        for k in range(K):
            obs = dyn.observe(state)
            log_p = torch.log_softmax(self.policy(actor, obs), -1)
            u = u_act[:, k]
            action = (log_p.exp().cumsum(-1) < u.unsqueeze(-1)).sum(-1).clamp(max=dyn.NUM_ACTIONS - 1)
            nxt, terminated = dyn.dynamics(state, action)
            elapsed = elapsed + 1
            done = terminated | (elapsed >= dyn.MAX_EPISODE_STEPS)
            reward = dyn.reward(terminated)
            running = running + reward
            ended = running * done
            running = running * ~done
            # Fresh start states are drawn at every step, so a seed's stream advances the same
            # whatever its episodes do.
            fresh = dyn.start_states(u_env[:, k])
            # The next observation is the true final one where an episode ended: a truncated
            # episode is bootstrapped from it.
            chosen = log_p.gather(-1, action.unsqueeze(-1)).squeeze(-1)
            row = (obs, action, chosen, dyn.observe(nxt), reward, terminated, done, ended)
            for col, x in zip(cols, row, strict=True):
                col.append(x)
            state = torch.where(done.unsqueeze(-1), fresh, nxt)
            elapsed = torch.where(done, 0, elapsed)
        steps = tuple(torch.stack(col, 2) for col in cols)
        return (*steps, state, elapsed, running)

    def _advantages(
        self, critic: Tensor, obs: Tensor, next_obs: Tensor, reward: Tensor, terminated: Tensor, done: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        value, next_value = self.value(critic, obs), self.value(critic, next_obs)
        reward = reward * self.cfg.reward_scale
        advantage, target = gae(
            value, next_value, reward, terminated, done, self.gae_params.gamma, self.gae_params.lam
        )
        return advantage, target, value

    def _update(
        self, learners: Learners, data: Minibatch, lr: Tensor, mb_at: Tensor
    ) -> tuple[Learners, dict[str, Tensor], Tensor, Tensor]:
        """Every epoch: a permutation per seed, then each full minibatch's step. A seed stopped
        by target_kl takes and counts no more steps (as `PPOUpdate`, which returns at once)."""
        S, size = data.action.shape[0], self.update_params.minibatch_size
        active = torch.ones(S, device=data.action.device)
        sums = {key: torch.zeros_like(active) for key in METRICS}
        taken, epochs_run = torch.zeros_like(active), torch.zeros_like(active)
        rows = torch.arange(S, device=active.device).unsqueeze(1)
        for epoch in range(self.update_params.epochs):
            epochs_run = epochs_run + active  # an epoch a seed starts counts, as in PPOUpdate
            order = torch.argsort(bits_at(self.keys["mb"], mb_at + epoch * self.batch, self.batch), dim=1)
            for j in range(self.batch // size):
                index = order[:, j * size : (j + 1) * size]
                batch = Minibatch(*(x[rows, index] for x in data))
                may_stop = torch.tensor(epoch > 0 or j > 0, device=active.device)
                learners, active, metrics = self.step(learners, batch, lr, active, may_stop)
                for key in METRICS:
                    sums[key] = sums[key] + metrics[key] * active
                taken = taken + active
        return learners, sums, taken, epochs_run

    # --- what the trainer calls -----------------------------------------------------------------
    def iterate(self) -> dict[str, Tensor]:
        """Collect and learn one batch per seed; the update's per-seed metrics ([seeds] tensors,
        still on the device: read them only when they are reported)."""
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        (S, N), K = self.shape, self.chunk
        parts: list[tuple[Tensor, ...]] = []
        for _ in range(self.cfg.rollout_steps // K):
            out = self._call(
                "rollout", self.learners.params[0], self.env_state, self.elapsed, self.running,
                self.drawn["act"], self.drawn["env"],
            )  # fmt: skip
            self.drawn["act"] = self.drawn["act"] + K * N
            self.drawn["env"] = self.drawn["env"] + K * N * self.dyn.STATE_DIM
            parts.append(out[:8])
            self.env_state, self.elapsed, self.running = out[8], out[9], out[10]
        obs, action, log_prob, next_obs, reward, terminated, done, ended = (
            torch.cat(c, 2) for c in zip(*parts, strict=True)
        )
        self.episodes = (self.episodes[0] + ended.sum((1, 2)), self.episodes[1] + done.sum((1, 2)))
        self.last_ended = (ended, done)  # [S, N, T]: which steps ended an episode, with what return
        advantage, target, value = self._call(
            "advantages", self.learners.params[1], obs, next_obs, reward, terminated, done
        )
        data = Minibatch(
            obs.reshape(S, self.batch, -1),
            *(x.reshape(S, self.batch) for x in (action, log_prob, advantage, target, value)),
        )
        self.learners, sums, taken, epochs_run = self._call(
            "update", self.learners, data, self.lr, self.drawn["mb"]
        )
        self.drawn["mb"] = self.drawn["mb"] + self.batch * self.update_params.epochs
        self.last_data = data  # what this update learned from (--explain reads it)
        metrics = {key: value / taken.clamp(min=1) for key, value in sums.items()}
        metrics["nonfinite"] = sums["nonfinite"]
        flat_advantage = advantage.reshape(S, -1)
        metrics.update(
            advantage_mean=flat_advantage.mean(1),
            advantage_std=flat_advantage.std(1),
            gradient_steps=taken,
            epochs_run=epochs_run,
        )
        return metrics

    def greedy_returns(self, episodes: int) -> Tensor:
        """Each seed's mean greedy return over ``episodes`` episodes on the torch-native env [S].
        Start states come from a fixed stream per seed (salt 4), so every evaluation of a run
        faces the same episodes. (The judged final evaluation runs on gymnasium's own env.)"""
        dim = self.dyn.STATE_DIM
        u = to_uniform(bits_at(self.keys["eval"], torch.zeros((), dtype=torch.int64, device=self.device),
                               episodes * dim), torch.float64)  # fmt: skip
        state = self.dyn.start_states(u.view(len(self.seeds), episodes, dim))
        total = torch.zeros(state.shape[:2], device=self.device)
        running = torch.ones(state.shape[:2], dtype=torch.bool, device=self.device)
        actor, dyn = self.learners.params[0], self.dyn
        with torch.no_grad():  # eager: 500 unrolled steps would take minutes to compile
            for t in range(dyn.MAX_EPISODE_STEPS):
                state, terminated = dyn.dynamics(state, self.policy(actor, dyn.observe(state)).argmax(-1))
                total += dyn.reward(terminated) * running
                running &= ~terminated
                if t % 50 == 49 and not bool(running.any()):
                    break
        return total.mean(1)

    def take_episodes(self) -> tuple[Tensor, Tensor]:
        """(mean return of the training episodes that ended since the last call, NaN where
        none; their count), per seed."""
        total, count = self.episodes
        self.episodes = (torch.zeros_like(total), torch.zeros_like(count))
        return total / count.where(count > 0, torch.nan), count

    # --- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs, on the CPU."""
        cpu = lambda x: x.detach().cpu()  # noqa: E731
        return {
            "learners": tree_map(cpu, self.learners._asdict()),
            "env": {"state": cpu(self.env_state), "elapsed": cpu(self.elapsed), "running": cpu(self.running)},
            "drawn": {k: int(v) for k, v in self.drawn.items()},
            "episodes": [cpu(x) for x in self.episodes],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = lambda x: x.to(self.device)  # noqa: E731
        self.learners = Learners(**{k: tree_map(dev, v) for k, v in state["learners"].items()})
        self.env_state, self.elapsed, self.running = (
            dev(state["env"][k]) for k in ("state", "elapsed", "running")
        )
        self.drawn = {
            k: torch.tensor(v, dtype=torch.int64, device=self.device) for k, v in state["drawn"].items()
        }
        self.episodes = (dev(state["episodes"][0]), dev(state["episodes"][1]))


def start_program(
    cfg: PPOConfig, seeds: list[int], device: torch.device
) -> tuple[SeedsProgram, torch.nn.Module, torch.nn.Module]:
    """The program for ``seeds`` on ``cfg``'s torch-native env, compiled if ``cfg.compile``,
    each seed's networks drawn as a single run with ``--seed s`` draws them; and the first
    seed's actor and critic as ordinary modules (CPU) holding those starting weights."""
    dynamics = TORCH_NATIVE_ENVS[cfg.env]
    actors, critics = [], []
    for s in seeds:
        torch.manual_seed(s)
        actor, critic = make_actor_critic(dynamics(1), **cfg.network_options())
        actors.append(actor)
        critics.append(critic)
    (actor_rows, actor_shapes), (critic_rows, critic_shapes) = stack(actors), stack(critics)
    program = SeedsProgram(
        cfg, seeds, dynamics, (actor_rows, critic_rows), (actor_shapes, critic_shapes), device
    )
    if cfg.compile:
        program.compile(cudagraphs=cfg.cudagraphs)
    return program, actors[0], critics[0]
