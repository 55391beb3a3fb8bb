"""Greedy evaluation on gymnasium's own env.

Evaluation never uses the training env: it steps ``gymnasium.make_vec(env_id)`` directly,
one episode per sub-env, with the policy's deterministic action (argmax for discrete
actions, the squashed mean for continuous ones). Returns are the env's raw rewards. The envs
are `make_gym_env`'s, with the run's env kwargs and the observation encoding training
used. Where gymnasium ships its own vectorized implementation of the env (CartPole-v1
does) and nothing needs encoding, that one is used — the same physics without a Python
loop over sub-envs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from ppo_torchrl.envs.atari import is_atari
from ppo_torchrl.envs.gym_envs import env_spec, make_gym_env, needs_encoding

# Evaluation seeds start far from training seeds so that evaluation episodes are not
# replays of the first training episodes.
EVAL_SEED_OFFSET = 1_000_000
MAX_PARALLEL = 100


@dataclass
class EvalResult:
    mean: float
    std: float
    returns: list[float]

    def __str__(self) -> str:
        return f"{self.mean:.1f} ± {self.std:.1f} over {len(self.returns)} episodes"


@torch.no_grad()
def evaluate_policy(
    actor: TensorDictModuleBase,
    env_id: str,
    episodes: int = 100,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Mean and std of the greedy policy's undiscounted return over ``episodes`` episodes.
    Observations go to the actor's device; its actions come back to the CPU for gymnasium."""
    device = next(actor.parameters()).device

    def act(obs: np.ndarray) -> np.ndarray:
        observation = torch.as_tensor(obs).to(device)
        return actor(TensorDict({"observation": observation}, [len(obs)]))["action"].cpu().numpy()

    with set_exploration_type(ExplorationType.DETERMINISTIC):
        return evaluate_actions(act, env_id, episodes, seed, env_kwargs)


def evaluate_actions(
    act: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    episodes: int = 100,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Evaluate any batched policy ``act(observations) -> actions`` (e.g. another library's).

    Episode ``i`` starts from the reset of seed ``seed + EVAL_SEED_OFFSET + i // MAX_PARALLEL``'s
    vector env, so two policies evaluated with the same seed face the same start states.
    """
    returns: list[float] = []
    while len(returns) < episodes:
        n = min(MAX_PARALLEL, episodes - len(returns))
        returns += _run_episodes(act, env_id, n, seed + EVAL_SEED_OFFSET + len(returns), env_kwargs or {})
    values = np.asarray(returns, dtype=np.float64)
    return EvalResult(float(values.mean()), float(values.std()), returns)


def _run_episodes(
    act: Callable[[np.ndarray], np.ndarray], env_id: str, n: int, seed: int, env_kwargs: Mapping[str, Any]
) -> list[float]:
    """Run the first episode of each of ``n`` sub-envs (later autoreset episodes are ignored,
    so the vector env's autoreset mode does not matter)."""
    envs = None
    spec = env_spec(env_id)
    # ale-py's own vector env preprocesses Atari its own way, not as training did.
    if spec.vector_entry_point is not None and not env_kwargs and not is_atari(spec):
        envs = gym.make_vec(spec.id, num_envs=n, vectorization_mode="vector_entry_point")
        if needs_encoding(envs.single_observation_space):
            envs.close()
            envs = None
    if envs is None:
        envs = gym.vector.SyncVectorEnv([lambda: make_gym_env(env_id, env_kwargs)] * n)
    try:
        obs, _ = envs.reset(seed=seed)
        totals = np.zeros(n, dtype=np.float64)
        running = np.ones(n, dtype=bool)
        dtype = envs.single_action_space.dtype
        while running.any():
            obs, reward, terminated, truncated, _ = envs.step(np.asarray(act(obs), dtype=dtype))
            totals += np.where(running, reward, 0.0)
            running &= ~(terminated | truncated)
    finally:
        envs.close()
    return totals.tolist()
