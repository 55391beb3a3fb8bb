"""Atari's DeepMind preprocessing (envs/atari.py), on the real ALE games.

The frames must be exactly what gymnasium's own ``AtariPreprocessing`` and
``FrameStackObservation`` give on the same seed and actions; what training adds (episodic
life, FIRE at each life's start, sign-clipped rewards) must change only what it says; and
what the trainer and evaluation report must be whole games' true scores.
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from ppo_torchrl.envs.factory import make_env
from ppo_torchrl.envs.gym_envs import env_spec, make_gym_env
from ppo_torchrl.run.episodes import EpisodeReturns
from ppo_torchrl.run.evaluation import evaluate_actions

pytest.importorskip("ale_py")
pytest.importorskip("cv2")


def reference(env_id: str) -> gym.Env:
    """gymnasium's own preprocessing, configured as every Atari PPO configures it."""
    env = gym.make(env_spec(env_id), frameskip=1)
    env = AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
    return FrameStackObservation(env, 4)


@pytest.mark.parametrize("training", [True, False])
def test_frames_equal_gymnasiums_preprocessing(training: bool) -> None:
    """Freeway has neither a FIRE button nor lives, so nothing but the frame pipeline acts:
    every observation (sticky actions and no-op resets included) must be identical."""
    ours, theirs = make_gym_env("ALE/Freeway-v5", training=training), reference("ALE/Freeway-v5")
    a, _ = ours.reset(seed=7)
    b, _ = theirs.reset(seed=7)
    assert a.shape == (4, 84, 84) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    actions = np.random.default_rng(0).integers(0, ours.action_space.n, 400)
    for action in actions:
        a, reward_a, *_ = ours.step(action)
        b, reward_b, *_ = theirs.step(action)
        np.testing.assert_array_equal(a, b)
        assert reward_a == reward_b  # Freeway scores 1 a crossing: the sign changes nothing
    assert np.any(a[0] != a[-1])  # the stack really holds 4 different frames


def test_fire_starts_each_life_in_breakout() -> None:
    """The first frame after a reset is the frame after FIRE, in training and evaluation."""
    for training in (True, False):
        ours = make_gym_env("ALE/Breakout-v5", training=training)
        frames = AtariPreprocessing(
            gym.make(env_spec("ALE/Breakout-v5"), frameskip=1), noop_max=30, frame_skip=4
        )
        obs, _ = ours.reset(seed=3)
        frames.reset(seed=3)
        fired, *_ = frames.step(1)
        np.testing.assert_array_equal(obs[-1], fired)


def play(env: gym.Env, steps: int, seed: int = 0) -> list[tuple[float, bool, bool, dict]]:
    """Random play: (reward, terminated, truncated, info) per step, resetting on ends."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    out = []
    for _ in range(steps):
        _, reward, terminated, truncated, info = env.step(rng.integers(env.action_space.n))
        out.append((reward, terminated, truncated, {**info, "lives": env.unwrapped.ale.lives()}))
        if terminated or truncated:
            env.reset()
    return out


def test_episodic_life_ends_training_episodes_not_games() -> None:
    steps = play(make_gym_env("ALE/Breakout-v5", training=True), 1500)
    ends = [(info["lives"], info["game_over"]) for _, terminated, _, info in steps if terminated]
    assert len(ends) >= 6, "random Breakout should lose a whole game's 5 lives within 1500 steps"
    assert [over for _, over in ends[:5]] == [False] * 4 + [True]  # four lives, then the game
    assert [lives for lives, _ in ends[:4]] == [4, 3, 2, 1]


def test_rewards_clipped_for_training_only() -> None:
    """SpaceInvaders scores 5 to 30 a hit: training sees the sign, the info the score."""
    train = play(make_gym_env("ALE/SpaceInvaders-v5", training=True), 600)
    assert any(info["game_reward"] > 1 for *_, info in train)
    assert all(reward == np.sign(info["game_reward"]) for reward, *_, info in train)
    scored = play(make_gym_env("ALE/SpaceInvaders-v5", training=False), 600)
    assert any(reward > 1 for reward, *_ in scored)
    assert all(reward == info["game_reward"] for reward, *_, info in scored)


def test_trainer_reads_whole_game_scores_off_batches() -> None:
    """Through TorchRL's GymWrapper over a vector env: one return per game (not per life),
    each the sum of the unclipped rewards, the same however the rollout is cut in batches."""
    env = make_env("ALE/Breakout-v5", 2, seed=1)
    rollout = env.rollout(900, break_when_any_done=False)
    env.close()
    nxt = rollout["next"]
    lives_lost = int(nxt["done"].sum())
    games = int(nxt["game_over"].sum())
    assert games >= 2 and lives_lost >= 4 * games  # episodes end at lives, games at the 5th
    assert float(nxt["reward"].abs().max()) <= 1.0
    whole = EpisodeReturns()(rollout)
    cut = EpisodeReturns()
    in_pieces = cut(rollout[:, :300]) + cut(rollout[:, 300:600]) + cut(rollout[:, 600:])
    assert len(whole) == games and sorted(in_pieces) == sorted(whole)
    for i in range(2):  # env i's first game: its score is the sum of game rewards up to its end
        over = nxt["game_over"][i].nonzero()
        if len(over):
            first = float(nxt["game_reward"][i, : int(over[0]) + 1].sum())
            assert first in whole


def test_evaluation_scores_whole_games() -> None:
    """Greedy evaluation runs games to their end on the evaluation env (no episodic life):
    a policy that always moves right still gets 5 lives' worth of play and a true score."""
    result = evaluate_actions(lambda obs: np.full(len(obs), 2), "ALE/Breakout-v5", episodes=2, seed=0)
    assert len(result.returns) == 2
    assert all(score >= 0 and float(score).is_integer() for score in result.returns)


def test_missing_ale_py_is_one_line() -> None:
    hide = "import sys; sys.modules['ale_py'] = None; "
    code = hide + "from ppo_torchrl.cli.train import main; sys.exit(main())"
    out = subprocess.run(
        [sys.executable, "-c", code, "--env", "ALE/Pong-v5", "--dry-run"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: env: ALE/Pong-v5 needs ale-py, which is not installed; "
        "install it with: pip install -e '.[atari]'"
    ]


def test_cli_shows_the_wrappers_and_refuses_a_frameskip() -> None:
    cmd = [sys.executable, "-m", "ppo_torchrl.train", "--env", "ALE/Pong-v5", "--dry-run"]
    shown = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "preset: ALE_Pong-v5" in shown.stdout
    assert "env wrappers: no-op reset (up to 30), frame skip 4" in shown.stdout
    refused = subprocess.run(
        [*cmd, "--env-kwargs", "frameskip=4"], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: env_kwargs: ALE/Pong-v5 takes no frameskip here: the Atari preprocessing skips 4 "
        "frames with max-pooling on an env made with frameskip=1"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_a_trained_atari_policy_is_a_video_and_an_mlflow_model(backend: str, store: str, tmp_path) -> None:
    """A short Breakout run on either backend: its MLflow model takes the stacked frames
    (uint8 [N, 4, 84, 84]) and answers with actions; its video is the game's own pictures."""
    import json

    import mlflow

    from ppo_torchrl.cli.train import main as train_main

    if backend == "envpool":
        pytest.importorskip("envpool")
    summary = tmp_path / "summary.json"
    args = ["--env", "ALE/Breakout-v5", "--env-backend", backend, "--frames", "1024"]
    args += ["--eval-episodes", "1", "--video", "--summary-json", str(summary)]
    assert train_main(args) == 0
    result = json.loads(summary.read_text())
    model = mlflow.pyfunc.load_model(f"runs:/{result['run_id']}/policy")
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 4, 84, 84)
    frames = np.stack([make_gym_env("ALE/Breakout-v5").reset(seed=s)[0] for s in range(3)])
    actions = np.asarray(model.predict(frames))
    assert actions.shape == (3,) and set(actions.tolist()) <= {0, 1, 2, 3}
    videos = list(tmp_path.rglob("videos/*.gif"))
    assert videos and videos[0].stat().st_size > 10_000
