"""Beyond CartPole: Acrobot-v1 (discrete) and Pendulum-v1 (continuous) against a random policy.

    .venv/bin/python experiments/other_envs.py

Trains each env with its config file in experiments/ (no tracking), evaluates the greedy
policy over 100 episodes, and measures a uniformly random policy over the same 100
evaluation episodes. Writes experiments/results/other_envs.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from ppo_torchrl import PPOConfig, train
from ppo_torchrl.fields import load_config_file
from ppo_torchrl.run.evaluation import EVAL_SEED_OFFSET

HERE = Path(__file__).parent
CONFIGS = {"Acrobot-v1": HERE / "acrobot.yaml", "Pendulum-v1": HERE / "pendulum.yaml"}


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
    results = {"date": time.strftime("%Y-%m-%d"), "envs": {}}
    for env_id, path in CONFIGS.items():
        with tempfile.TemporaryDirectory() as scratch:
            cfg = PPOConfig(
                **{**load_config_file(path, PPOConfig), "track": False, "checkpoint_dir": scratch}
            )
            result = train(cfg)
        rand_mean, rand_std = random_policy_return(env_id)
        results["envs"][env_id] = {
            "config": str(path.relative_to(HERE.parent)),
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
    out = HERE / "results" / "other_envs.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
