"""Shared fixtures: a CartPole env and the project's own actor-critic built on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# Small tensors: one intra-op thread is faster and keeps parallel workers fair.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def cartpole() -> Iterator[tuple[Any, Any]]:
    """(cfg, env): the project's batched CartPole env with one copy, built as the trainer
    builds it from ``cfg`` (env id, copies, seed, backend). ``cfg`` also names the network
    shape (``hidden_sizes``, ``activation``) and the seed to draw its weights with:
    make_actor_critic does not seed torch, so a spec seeds it with ``cfg.seed`` first."""
    from ppo_torchrl import PPOConfig, make_env

    cfg = PPOConfig(num_envs=1, rollout_steps=16, minibatch_size=16, seed=3)
    env = make_env(cfg.env, cfg.num_envs, seed=cfg.seed, backend=cfg.env_backend)
    yield cfg, env
    env.close()
