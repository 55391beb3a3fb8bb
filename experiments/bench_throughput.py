"""Throughput: the project's collection path with the policy in the loop, beside raw gymnasium.

    .venv/bin/python experiments/bench_throughput.py

For 8, 64 and 512 envs: frames/s of ``Collector(make_env(env_id, num_envs), actor)`` (the exact path
training uses: the default backend, the policy sampling every action) for both training
backends, and of raw gymnasium stepping the same number of CartPole-v1 envs with random
actions and no TorchRL: gymnasium's sync vector env (``gym.make`` envs stepped in a Python
loop, as SB3's DummyVecEnv does) and gymnasium's numpy-vectorized CartPoleVectorEnv.
Then the cost of one PPO minibatch gradient step of the default config, and whether
torch.compile of the loss would pay for its compile time within one training run.

Writes experiments/results/bench_throughput.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torchrl.collectors import Collector

from ppo_torchrl import PPOConfig, make_actor_critic, make_advantage, make_env, make_loss, make_update
from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams

RESULTS = Path(__file__).parent / "results" / "bench_throughput.json"
FRAMES = 40_000


def collector_fps(num_envs: int, backend: str) -> float:
    env = make_env("CartPole-v1", num_envs, backend=backend)
    actor, _ = make_actor_critic(env)
    steps = max(4, 2048 // num_envs)
    collector = Collector(
        env,
        actor,
        frames_per_batch=num_envs * steps,
        total_frames=-1,
        auto_register_policy_transforms=False,
        track_traj_ids=False,
    )
    batches = iter(collector)
    next(batches)  # warm-up
    frames, started = 0, time.perf_counter()
    while frames < FRAMES:
        frames += next(batches).numel()
    fps = frames / (time.perf_counter() - started)
    collector.shutdown()
    return fps


def gymnasium_fps(num_envs: int, mode: str) -> float:
    envs = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode=mode)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    steps = max(50, FRAMES // num_envs)
    actions = rng.integers(0, 2, size=(steps, num_envs))
    started = time.perf_counter()
    for t in range(steps):
        envs.step(actions[t])
    fps = steps * num_envs / (time.perf_counter() - started)
    envs.close()
    return fps


def update_step_ms() -> dict[str, float]:
    """Milliseconds per PPO minibatch gradient step of the default config."""
    cfg = PPOConfig(track=False)
    env = make_env(cfg.env, cfg.num_envs, seed=cfg.seed)
    actor, critic = make_actor_critic(env, hidden_sizes=cfg.hidden_sizes, activation=cfg.activation)
    with torch.no_grad():
        batch = env.rollout(cfg.rollout_steps, actor, break_when_any_done=False)
    loss = make_loss(cfg.params(LossParams), actor, critic)
    update = make_update(cfg.params(UpdateParams), loss, make_advantage(cfg.params(GAEParams), critic))
    update(batch.clone())  # warm-up
    runs = []
    for _ in range(10):
        started = time.perf_counter()
        metrics = update(batch.clone())
        runs.append((time.perf_counter() - started) / metrics["gradient_steps"] * 1000)
    return {
        "minibatch_size": cfg.minibatch_size,
        "ms_per_step_median": float(np.median(runs)),
        "includes": "GAE over the batch, shuffle, loss forward+backward, grad clip, Adam, amortized",
    }


def compile_cost() -> dict[str, float]:
    """Would torch.compile pay off within one run? Its first-call cost against the time saved
    per minibatch step, for the loss forward+backward of the default config."""
    cfg = PPOConfig(track=False)
    env = make_env(cfg.env, cfg.num_envs, seed=cfg.seed)
    actor, critic = make_actor_critic(env, hidden_sizes=cfg.hidden_sizes, activation=cfg.activation)
    with torch.no_grad():
        batch = env.rollout(cfg.rollout_steps, actor, break_when_any_done=False)
        make_advantage(cfg.params(GAEParams), critic)(batch)
    minibatch = batch.reshape(-1)[: cfg.minibatch_size]
    loss = make_loss(cfg.params(LossParams), actor, critic)

    def step(module) -> None:
        out = module(minibatch)
        sum(v for k, v in out.items() if k.startswith("loss_")).backward()

    def per_step_ms(module) -> float:
        started = time.perf_counter()
        for _ in range(50):
            step(module)
        return (time.perf_counter() - started) / 50 * 1000

    step(loss)
    eager = per_step_ms(loss)
    compiled = torch.compile(loss)
    started = time.perf_counter()
    try:
        step(compiled)
    except Exception as err:  # report, don't hide, a compile failure
        return {"eager_ms_per_step": eager, "compile_error": f"{type(err).__name__}: {str(err)[:200]}"}
    first_call = time.perf_counter() - started
    faster = per_step_ms(compiled)
    return {
        "eager_ms_per_step": eager,
        "compiled_ms_per_step": faster,
        "compile_first_call_seconds": first_call,
        "steps_to_break_even": first_call * 1000 / max(eager - faster, 1e-9),
    }


def main() -> None:
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    for n in (8, 64, 512):
        row = {
            "num_envs": n,
            "ours_torch_backend": collector_fps(n, "torch"),
            "ours_gymnasium_backend": collector_fps(n, "gymnasium"),
            "raw_gymnasium_sync": gymnasium_fps(n, "sync"),
            "raw_gymnasium_numpy_vector": gymnasium_fps(n, "vector_entry_point"),
        }
        row["ours_default_vs_raw_sync"] = row["ours_torch_backend"] / row["raw_gymnasium_sync"]
        rows.append(row)
        print(
            "  ".join(f"{k} {v:,.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
            flush=True,
        )
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch threads {torch.get_num_threads()}",
        "frames_per_second": rows,
        "ppo_update": update_step_ms(),
    }
    print(record["ppo_update"])
    record["torch_compile"] = compile_cost()
    print(record["torch_compile"])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
