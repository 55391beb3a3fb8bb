"""Beyond CartPole: small envs of other kinds against a random policy, with their presets.

    .venv/bin/python experiments/other_envs.py [ENV_ID ...]

Acrobot-v1 (discrete actions), Pendulum-v1 (continuous), FrozenLake-v1 (Discrete
observations) and Blackjack-v1 (Tuple observations). Trains each env with its preset
(ppo_torchrl/presets/, no tracking), takes the run's final greedy evaluation (the
preset's number of episodes), and measures a uniformly random policy over the same
evaluation episodes. Updates experiments/results/other_envs.json env by env.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from ppo_torchrl import PPOConfig, train
from ppo_torchrl.run.evaluation import EVAL_SEED_OFFSET
from ppo_torchrl.run.presets import preset_file, resolve_preset

HERE = Path(__file__).parent
ENVS = ("Acrobot-v1", "Pendulum-v1", "FrozenLake-v1", "Blackjack-v1")


def random_policy_return(env_id: str, episodes: int = 100, seed: int = 0) -> tuple[float, float]:
    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns = []
    for i in range(episodes):
        env.reset(seed=seed + EVAL_SEED_OFFSET + i)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


def main() -> None:
    out = HERE / "results" / "other_envs.json"
    results = json.loads(out.read_text()) if out.exists() else {"envs": {}}
    for env_id in sys.argv[1:] or ENVS:
        _, preset = resolve_preset("auto", env_id)
        with tempfile.TemporaryDirectory() as scratch:
            cfg = PPOConfig(**{**preset, "env": env_id, "track": False, "checkpoint_dir": scratch})
            result = train(cfg)
        rand_mean, rand_std = random_policy_return(env_id, cfg.eval_episodes)
        results["date"] = time.strftime("%Y-%m-%d")
        results["envs"][env_id] = {
            "config": str(preset_file(env_id).relative_to(HERE.parent)),
            "eval_episodes": cfg.eval_episodes,
            "frames": result.frames,
            "train_seconds": round(result.train_seconds, 1),
            "greedy_eval_mean": result.final_eval_mean,
            "greedy_eval_std": result.final_eval_std,
            "random_policy_mean": rand_mean,
            "random_policy_std": rand_std,
            "solved": result.solved,
        }
        print(
            f"{env_id}: PPO {result.final_eval_mean:.1f} ± {result.final_eval_std:.1f} after "
            f"{result.frames:,} frames ({result.train_seconds:.0f} s) vs random "
            f"{rand_mean:.1f} ± {rand_std:.1f}",
            flush=True,
        )
        out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
