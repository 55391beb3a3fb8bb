"""Atari as every PPO paper and library runs it: the DeepMind preprocessing.

An ALE id (``ALE/Pong-v5``) is made with ``frameskip=1`` and wrapped in gymnasium's own
``AtariPreprocessing`` (up to 30 no-op actions on reset, frame skip 4 with max-pooling of
the last two frames, 84 x 84 grayscale) and ``FrameStackObservation`` (the last 4 frames):
the policy sees uint8 ``[4, 84, 84]`` pixels, which the Nature CNN in models/ takes as is.
Sticky actions stay as the id defines them (v5: repeat the last action with p = 0.25).

Training adds three things the learner wants and a score must not see (Mnih et al.,
2015; SB3's and CleanRL's ``make_env``):

- episodic life: losing a life ends the *training* episode (the game goes on), so the
  value of a state does not look past a life;
- FIRE at the start of every life, for games that wait for it (Breakout): the agent does
  not have to discover the button before anything happens;
- rewards clipped to their sign, so every game's returns share one scale.

What is reported is the true game score: `GameScore` puts each step's unclipped reward and
whether the real game ended in ``info`` (``game_reward``, ``game_over``); the trainer sums
those over whole games. Evaluation builds the env with ``training=False``: no episodic
life, no clipping, full games. It still presses FIRE when a life starts, as training did,
or a Breakout policy that never needed the button would wait for the 108,000-frame limit.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TransformReward

NOOP_MAX = 30
FRAME_SKIP = 4
SCREEN_SIZE = 84
FRAME_STACK = 4
INFO_KEYS = ("game_reward", "game_over")


def is_atari(spec: gym.envs.registration.EnvSpec) -> bool:
    """True for the Arcade Learning Environment's ids (ale-py's ``AtariEnv``)."""
    entry = spec.entry_point
    entry = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    return entry.startswith("ale_py")


def describe(training: bool = True) -> str:
    """One line for ``--dry-run``: what wraps an Atari id."""
    parts = [
        f"no-op reset (up to {NOOP_MAX})",
        f"frame skip {FRAME_SKIP} (max of last 2)",
        f"{SCREEN_SIZE}x{SCREEN_SIZE} grayscale",
        f"{FRAME_STACK}-frame stack",
    ]
    if training:
        parts += ["episodic life", "FIRE on reset", "reward sign (training only)"]
    return ", ".join(parts) + "; scores are true game scores over full games"


def wrap_atari(env: gym.Env, training: bool) -> gym.Env:
    """The preprocessing above over an ALE env made with ``frameskip=1``."""
    env = AtariPreprocessing(
        env,
        noop_max=NOOP_MAX,
        frame_skip=FRAME_SKIP,
        screen_size=SCREEN_SIZE,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    env = GameScore(env)
    fires = "FIRE" in env.unwrapped.get_action_meanings()
    if training:
        env = EpisodicLife(env)
        if fires:
            env = FireOnReset(env)
        env = TransformReward(env, lambda reward: float(np.sign(reward)))
    elif fires:
        env = FireOnReset(env, on_life_loss=True)
    return FrameStackObservation(env, FRAME_STACK)


def _lives(env: gym.Env) -> int:
    return int(env.unwrapped.ale.lives())


class GameScore(gym.Wrapper):
    """Writes the unclipped reward and the real end of the game into ``info``, before any
    wrapper changes them for learning."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        observation, info = self.env.reset(**kwargs)
        return observation, {**info, "game_reward": 0.0, "game_over": False}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "game_reward": float(reward), "game_over": bool(terminated or truncated)}
        return observation, reward, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A lost life terminates the episode; the next reset continues the same game (one
    no-op step) unless the game really ended (SB3's ``EpisodicLifeEnv``)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = _lives(self)
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return observation, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        if self.game_over:
            observation, info = self.env.reset(**kwargs)
        else:
            observation, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                observation, info = self.env.reset(**kwargs)
            info = {**info, "game_reward": 0.0, "game_over": False}
        self.lives = _lives(self)
        return observation, info


class FireOnReset(gym.Wrapper):
    """Presses FIRE after a reset and, with ``on_life_loss``, whenever a life is lost (the
    FIRE step's reward counts to that step)."""

    def __init__(self, env: gym.Env, on_life_loss: bool = False) -> None:
        super().__init__(env)
        self.on_life_loss = on_life_loss
        self.lives = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self.env.reset(**kwargs)
        observation, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            observation, info = self.env.reset(**kwargs)
        self.lives = _lives(self)
        return observation, {**info, "game_reward": 0.0, "game_over": False}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        lives = _lives(self)
        if self.on_life_loss and 0 < lives < self.lives and not (terminated or truncated):
            observation, fire_reward, terminated, truncated, info = self.env.step(1)
            reward += fire_reward
            info = {**info, "game_reward": float(reward)}
            lives = _lives(self)
        self.lives = lives
        return observation, reward, terminated, truncated, info
