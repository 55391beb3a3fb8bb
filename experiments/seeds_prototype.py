"""Feasibility probe for issue 17: N CartPole seeds in one torch program, weights stacked [S, ...].

Not the product (that has to reuse the core's GAE and loss modules, see the issue): this
measures what the stacked-weights layout can reach on this CPU with the project's CartPole
recipe (16 envs x 32 steps per seed, 10 epochs of 256-frame minibatches, target_kl 0.01, lr
3e-3 annealed, clip 0.1, gamma 0.98, lam 0.95, grad-norm 0.5 per seed), every per-seed
quantity kept per seed: advantage normalisation, loss means, gradient clipping, Adam state,
target_kl stops (a stopped seed's step is masked). The env is the torch-native CartPole's
dynamics (envs/cartpole.py) with a seed dimension. Final greedy evaluation on gymnasium's
own CartPole-v1 (100 episodes per seed, evaluation's reset seeds).

    .venv/bin/python experiments/seeds_prototype.py --seeds 16 --frames 500000
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import time

import torch

from ppo_torchrl.envs.cartpole import MAX_EPISODE_STEPS, RESET_BOUND, cartpole_dynamics

E, T, EPOCHS, MB = 16, 32, 10, 256
GAMMA, LAM, CLIP, LR, TARGET_KL, MAX_NORM, VF = 0.98, 0.95, 0.1, 3e-3, 0.01, 0.5, 0.5


def init_layers(seeds: list[int], sizes: list[int], out_gain: float, salt: int) -> list[torch.Tensor]:
    """Per-seed orthogonal init (sqrt(2) inside, ``out_gain`` last): [S, in, out] and [S, 1, out]."""
    params: list[torch.Tensor] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        gain = out_gain if i == len(sizes) - 2 else math.sqrt(2)
        ws = []
        for s in seeds:
            w = torch.empty(n_out, n_in)
            torch.nn.init.orthogonal_(w, gain, generator=torch.Generator().manual_seed(s * 1000 + salt + i))
            ws.append(w.T)
        params += [torch.stack(ws), torch.zeros(len(seeds), 1, n_out)]
    return params


class Stack:
    """Every seed's actor and critic in ONE leaf tensor ``flat`` [S, P]: the per-layer weights
    are views into it, so gradient clipping and Adam are a handful of ops on [S, P] whatever
    the number of layers (launch overhead, not arithmetic, is what small networks cost)."""

    def __init__(self, seeds: list[int]) -> None:
        layers = init_layers(seeds, [4, 64, 64, 2], 0.01, 0) + init_layers(seeds, [4, 64, 64, 1], 1.0, 500)
        self.shapes = [tuple(p.shape[1:]) for p in layers]
        self.flat = torch.cat([p.flatten(1) for p in layers], 1).requires_grad_()

    def views(self, flat: torch.Tensor | None = None) -> list[torch.Tensor]:
        flat = self.flat if flat is None else flat
        out, at = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append(flat[:, at : at + n].view(-1, *shape))
            at += n
        return out


def mlp(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x [S, N, in] -> [S, N, out]; tanh between layers."""
    for i in range(0, len(params), 2):
        x = torch.baddbmm(params[i + 1], x, params[i])
        if i + 2 < len(params):
            x = torch.tanh(x)
    return x


class Adam:
    """Adam over [S, P] with a per-seed mask: a masked seed's weights and moments stay."""

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat
        self.m, self.v = torch.zeros_like(flat), torch.zeros_like(flat)
        self.t = torch.zeros(flat.shape[0], 1)

    def step(self, lr: float, mask: torch.Tensor) -> None:
        b1, b2 = 0.9, 0.999
        keep = mask.view(-1, 1).bool()
        g = self.flat.grad
        with torch.no_grad():
            self.t += keep
            m_new = self.m.lerp(g, 1 - b1)
            v_new = (self.v * b2).addcmul_(g, g, value=1 - b2)
            t = self.t.clamp(min=1)
            step = lr * (m_new / (1 - b1**t)) / ((v_new / (1 - b2**t)).sqrt() + 1e-5)
            self.m = torch.where(keep, m_new, self.m)
            self.v = torch.where(keep, v_new, self.v)
            self.flat.sub_(torch.where(keep, step, 0.0))


def minibatch_loss(
    stack: Stack,
    flat: torch.Tensor,
    o: torch.Tensor,
    a: torch.Tensor,
    lp_old: torch.Tensor,
    A: torch.Tensor,
    R: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over seeds of each seed's clipped-surrogate + value loss (advantages standardised per
    seed), and each seed's k3 KL estimate."""
    A = (A - A.mean(1, keepdim=True)) / (A.std(1, keepdim=True) + 1e-8)
    views = stack.views(flat)
    actor, critic = views[:6], views[6:]
    logp = torch.log_softmax(mlp(actor, o), -1).gather(-1, a.unsqueeze(-1)).squeeze(-1)
    log_ratio = logp - lp_old
    ratio = log_ratio.exp()
    kl3 = (ratio - 1 - log_ratio).mean(1).detach()
    surr = -torch.min(ratio * A, ratio.clamp(1 - CLIP, 1 + CLIP) * A).mean(1)
    v_loss = (mlp(critic, o).squeeze(-1) - R).pow(2).mean(1)
    return (surr + VF * v_loss).sum(), kl3  # seeds independent: the sum's gradient is per seed


def train(
    seeds: list[int], frames: int, compile_loss: bool = False
) -> tuple[list[torch.Tensor], float, dict]:
    torch.manual_seed(seeds[0])
    S = len(seeds)
    stack = Stack(seeds)
    opt = Adam(stack.flat)
    loss_fn = functools.partial(minibatch_loss, stack)
    if compile_loss:
        loss_fn = torch.compile(loss_fn, dynamic=False)
    state = (torch.rand(S, E, 4, dtype=torch.float64) * 2 - 1) * RESET_BOUND
    steps = torch.zeros(S, E, dtype=torch.long)
    iterations = frames // (E * T)
    started = time.perf_counter()
    epochs_run = []
    phase = {"rollout": 0.0, "update": 0.0}
    for it in range(iterations):
        t0 = time.perf_counter()
        obs_buf, act_buf, logp_buf, val_buf, rew_buf, term_buf, done_buf = [], [], [], [], [], [], []
        with torch.no_grad():
            views = stack.views()
            actor, critic = views[:6], views[6:]
            for _ in range(T):
                obs = state.float()
                logits = mlp(actor, obs)
                logp_all = torch.log_softmax(logits, -1)
                action = (torch.rand(S, E) < logp_all[..., 1].exp()).long()
                obs_buf.append(obs)
                act_buf.append(action)
                logp_buf.append(logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1))
                val_buf.append(mlp(critic, obs).squeeze(-1))
                state, terminated = cartpole_dynamics(state, action)
                steps += 1
                truncated = steps >= MAX_EPISODE_STEPS
                done = terminated | truncated
                rew_buf.append(torch.ones(S, E))
                term_buf.append(terminated)
                done_buf.append(done)
                # bootstrap a truncated episode with the value of its last state (as TorchRL does)
                if truncated.any():
                    boot = mlp(critic, state.float()).squeeze(-1)
                    rew_buf[-1] = rew_buf[-1] + GAMMA * boot * (truncated & ~terminated)
                fresh = (torch.rand(S, E, 4, dtype=torch.float64) * 2 - 1) * RESET_BOUND
                state = torch.where(done.unsqueeze(-1), fresh, state)
                steps = torch.where(done, 0, steps)
            last_value = mlp(critic, state.float()).squeeze(-1)
            values = torch.stack(val_buf, -1)  # [S, E, T]
            rewards, dones = torch.stack(rew_buf, -1), torch.stack(done_buf, -1).float()
            adv = torch.zeros_like(values)
            gae = torch.zeros(S, E)
            next_value = last_value
            for t in reversed(range(T)):
                delta = rewards[..., t] + GAMMA * next_value * (1 - dones[..., t]) - values[..., t]
                gae = delta + GAMMA * LAM * (1 - dones[..., t]) * gae
                adv[..., t] = gae
                next_value = values[..., t]
            targets = adv + values
        t1 = time.perf_counter()
        phase["rollout"] += t1 - t0
        flat = lambda x: x.reshape(S, E * T, *x.shape[3:])  # noqa: E731
        b_obs, b_act = flat(torch.stack(obs_buf, 2)), flat(torch.stack(act_buf, 2))
        b_logp, b_adv, b_tgt = flat(torch.stack(logp_buf, 2)), flat(adv), flat(targets)
        lr = LR * max(0.0, 1 - it / iterations)
        active = torch.ones(S)
        ran = torch.zeros(S)
        for epoch in range(EPOCHS):
            order = torch.argsort(torch.rand(S, E * T), dim=1)
            for j, mb in enumerate(order.split(MB, dim=1)):
                o = b_obs.gather(1, mb.unsqueeze(-1).expand(-1, -1, 4))
                a, lp_old = b_act.gather(1, mb), b_logp.gather(1, mb)
                A, R = b_adv.gather(1, mb), b_tgt.gather(1, mb)
                loss, kl3 = loss_fn(stack.flat, o, a, lp_old, A, R)
                if epoch or j:  # the batch's first step is always taken (as in core/update.py)
                    active = active * (kl3 <= 1.5 * TARGET_KL).float()
                if not active.any():
                    break
                stack.flat.grad = None
                loss.backward()
                norms = stack.flat.grad.norm(dim=1, keepdim=True)  # per seed, as clip_grad_norm_
                stack.flat.grad.mul_((MAX_NORM / (norms + 1e-6)).clamp(max=1.0))
                opt.step(lr, active)
            ran += active
            if not active.any():
                break
        epochs_run.append(ran)
        phase["update"] += time.perf_counter() - t1
    seconds = time.perf_counter() - started
    info = {"mean_epochs_run": float(torch.stack(epochs_run).mean()), "seconds": phase}
    return stack.views()[:6], seconds, info


def evaluate(actor: list[torch.Tensor], episodes: int = 100) -> list[float]:
    """Greedy play of gymnasium's CartPole-v1, evaluation's reset seeds 0..episodes-1, every seed."""
    import gymnasium as gym
    import numpy as np

    S = actor[0].shape[0]
    envs = [gym.make("CartPole-v1") for _ in range(S * episodes)]
    obs = np.stack([e.reset(seed=i % episodes)[0] for i, e in enumerate(envs)])
    done = np.zeros(len(envs), bool)
    total = np.zeros(len(envs))
    while not done.all():
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32).view(S, episodes, 4)
            action = mlp(actor, x).argmax(-1).view(-1).numpy()
        for i, e in enumerate(envs):
            if not done[i]:
                obs[i], r, term, trunc, _ = e.step(int(action[i]))
                total[i] += r
                done[i] = term or trunc
    return total.reshape(S, episodes).mean(1).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--frames", type=int, default=500_000, help="per seed")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument("--compile", action="store_true", help="torch.compile the minibatch loss")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    actor, seconds, info = train(seeds, args.frames, args.compile)
    frames = args.frames // (E * T) * E * T
    returns = evaluate(actor)
    result = {
        "seeds": args.seeds,
        "frames_per_seed": frames,
        "train_seconds": seconds,
        "frames_per_second_all_seeds": args.seeds * frames / seconds,
        "final_greedy_means": returns,
        "fraction_ge_475": sum(r >= 475 for r in returns) / len(returns),
        "torch_threads": torch.get_num_threads(),
        **info,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "final_greedy_means"}, indent=1))
    print("per seed:", [round(r, 1) for r in returns])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
