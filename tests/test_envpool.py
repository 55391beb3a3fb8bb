"""``--env-backend envpool`` (envs/envpool_env.py) against the gymnasium path it must match.

EnvPool's randomness (no-op resets, sticky actions) is its own, so the comparison fixes
both to one no-op and no sticky actions; everything else is each backend's training
configuration as shipped, and the frames and rewards must then be identical step for step.
(In Breakout the ball after EnvPool's FIRE reset is one frame ahead of gymnasium's path's.)
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from ppo_torchrl.envs import atari
from ppo_torchrl.envs.envpool_env import EnvPoolEnv
from ppo_torchrl.envs.factory import make_env
from ppo_torchrl.envs.gym_envs import make_gym_env
from ppo_torchrl.run.episodes import EpisodeReturns

pytest.importorskip("envpool")
pytest.importorskip("ale_py")
pytest.importorskip("cv2")


def test_frames_equal_gymnasium_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Freeway (no FIRE, no lives) with one no-op and no sticky actions: each backend's
    training configuration as shipped gives identical frames and rewards for 400 steps."""
    monkeypatch.setattr(atari, "NOOP_MAX", 1)
    deterministic = {"repeat_action_probability": 0.0}
    ours = make_gym_env("ALE/Freeway-v5", deterministic, training=True)
    pool = EnvPoolEnv("ALE/Freeway-v5", 1, seed=0, env_kwargs={**deterministic, "noop_max": 1})
    a, _ = ours.reset(seed=0)
    np.testing.assert_array_equal(a, pool.reset()["observation"][0].numpy())
    rng, scored = np.random.default_rng(0), 0.0
    for _ in range(400):
        action = int(rng.choice(3, p=[0.1, 0.8, 0.1]))  # mostly UP, to score
        a, reward, _, _, info = ours.step(action)
        out = pool.step(TensorDict({"action": torch.tensor([action])}, [1]))["next"]
        np.testing.assert_array_equal(a, out["observation"][0].numpy())
        assert reward == float(out["reward"]) and info["game_reward"] == float(out["game_reward"])
        scored += info["game_reward"]
    assert scored > 0  # the chicken crossed: rewards were compared, not only zeros


def test_trainer_reads_whole_game_scores() -> None:
    """Autoreset after a lost life continues the game, so episodes end at lives and the
    returns the trainer reports are whole games' unclipped scores."""
    env = make_env("ALE/Breakout-v5", 2, seed=1, backend="envpool")
    rollout = env.rollout(900, break_when_any_done=False)
    env.close()
    nxt = rollout["next"]
    games = int(nxt["game_over"].sum())
    assert games >= 2 and int(nxt["done"].sum()) >= 4 * games
    returns = EpisodeReturns()(rollout)
    assert len(returns) == games
    assert sum(returns) <= float(nxt["game_reward"].sum())  # games still running hold the rest


def test_mujoco_through_envpool() -> None:
    """HalfCheetah's 1000-step limit: a truncation whose next observation is the final one."""
    env = make_env("HalfCheetah-v5", 2, seed=0, backend="envpool")
    rollout = env.rollout(1001, break_when_any_done=False)
    env.close()
    truncated = rollout["next", "truncated"].reshape(2, -1)
    assert rollout["next", "observation"].dtype == torch.float32
    assert truncated[:, 999].all() and not truncated[:, :999].any()
    # the step after the truncation starts from a fresh reset, not from the final state
    assert not torch.equal(rollout["observation"][:, 1000], rollout["next", "observation"][:, 999])


def run_train(*args: str, hide_envpool: bool = False) -> subprocess.CompletedProcess:
    hide = "sys.modules['envpool'] = None; " if hide_envpool else ""
    code = f"import sys; {hide}from ppo_torchrl.cli.train import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args, "--dry-run"], capture_output=True, text=True, timeout=120
    )


def test_cli_refusals_are_one_line() -> None:
    missing = run_train("--env", "ALE/Pong-v5", "--env-backend", "envpool", hide_envpool=True)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: env_backend: envpool is not installed; install it with: pip install -e '.[envpool]'"
    ]
    other = run_train("--env", "CartPole-v1", "--env-backend", "envpool")
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "envpool serves Atari and MuJoCo ids" in other.stderr
    shown = run_train("--env", "ALE/Pong-v5", "--env-backend", "envpool")
    assert shown.returncode == 0 and "env_backend: envpool" in shown.stdout
