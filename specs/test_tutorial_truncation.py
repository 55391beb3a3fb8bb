"""Item 7 — a time-limit truncation is not a termination.

The reference tutorial's compute_gae (copied line for line in ``hand.tutorial_compute_gae``)
sets the next value to 0 whenever ``done``, with ``done = terminated or truncated``. At a
time limit the pole is still up: the true return goes on, so the correct bootstrap is
V(final observation). Treating the cut-off as the end of the world lowers every advantage
of the episode:

    tutorial_A_t - correct_A_t = -(gamma * lam)^(T-1-t) * gamma * V(s_T)

The project's GAE follows the correct formula (test_gae.py states it in full).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchrl.envs import EnvBase

from ppo_torchrl import (
    GAEParams,
    LossParams,
    PPOConfig,
    PPOUpdate,
    make_actor_critic,
    make_advantage,
    make_loss,
    make_optimizer,
)
from specs import hand, hand_update
from specs.cases import floats
from specs.check import agree, differ
from specs.rig import linear_layers, rollout_batch, table_critic

GAMMA, LAM, T = 0.99, 0.95, 10
ACTIVATION = "tanh"  # make_actor_critic's default hidden activation


def truncated_cartpole_episode() -> dict[str, np.ndarray]:
    """CartPole-v1 with a 10-step time limit, actions 0, 1, 0, 1, ...: the pole stays up
    and step 10 is truncated (terminated never)."""
    env = gym.make("CartPole-v1", max_episode_steps=T)
    obs, _ = env.reset(seed=0)
    steps: dict[str, list] = {
        k: [] for k in ("obs", "next_obs", "action", "reward", "terminated", "truncated")
    }
    for t in range(T):
        next_obs, reward, terminated, truncated, _ = env.step(t % 2)
        for key, x in zip(steps, (obs, next_obs, t % 2, reward, terminated, truncated), strict=True):
            steps[key].append(x)
        obs = next_obs
    env.close()
    ep = {k: np.asarray(v) for k, v in steps.items()}
    assert ep["truncated"][-1] and not ep["terminated"].any() and not ep["truncated"][:-1].any()
    return ep


def seeded_actor_critic(env: EnvBase) -> tuple[torch.nn.Module, torch.nn.Module]:
    """make_actor_critic(env) (64-64 tanh MLPs), its weights drawn right after seeding torch
    with 0 (make_actor_critic does not seed; these are the weights the numbers below saw)."""
    torch.manual_seed(0)
    return make_actor_critic(env, activation=ACTIVATION)


def trained_looking_critic(env: EnvBase) -> torch.nn.Module:
    """make_actor_critic's critic with its output bias set to 20: values near 20, the size a
    CartPole critic reaches once episodes get long (rewards 1, gamma 0.99)."""
    _, critic = seeded_actor_critic(env)
    with torch.no_grad():
        [m for m in critic.modules() if isinstance(m, torch.nn.Linear)][-1].bias.fill_(20.0)
    return critic


def hand_both(
    ep: dict[str, np.ndarray], critic: torch.nn.Module, activation: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """(tutorial advantages, correct advantages, V(s_T)) with V computed in NumPy."""
    v = hand_update.mlp(*linear_layers(critic), ep["obs"], activation)[:, 0]
    v_next = hand_update.mlp(*linear_layers(critic), ep["next_obs"], activation)[:, 0]
    done = ep["terminated"] | ep["truncated"]
    experiences = [
        hand.Experience(float(r), bool(d), float(x)) for r, d, x in zip(ep["reward"], done, v, strict=True)
    ]
    tutorial = np.asarray(hand.tutorial_compute_gae(experiences, GAMMA, LAM))
    correct, _ = hand.gae(ep["reward"], v, v_next, ep["terminated"], done, GAMMA, LAM)
    return tutorial, correct, float(v_next[-1])


def test_truncated_cartpole_episode(cartpole: tuple[PPOConfig, EnvBase]) -> None:
    """gamma = 0.99, lam = 0.95, V ~ 20 (V(s_T) = 20.0 + a little).

    Last step: tutorial delta = 1 + 0 - V(s_9) ~ -19, correct delta = 1 + 0.99 V(s_T) - V(s_9)
    ~ +0.8: a gap of 0.99 * V(s_T) ~ 19.8. At the first step the gap is still
    0.9405^9 * 19.8 ~ 11.4. The tutorial tells the policy that keeping the pole up for 10
    steps was a disaster; the project's GAE gives the correct ones (0.8 to 6.2).
    """
    _, env = cartpole
    critic = trained_looking_critic(env)
    ep = truncated_cartpole_episode()
    tutorial, correct, v_final = hand_both(ep, critic, ACTIVATION)
    gap = -((GAMMA * LAM) ** np.arange(T - 1, -1, -1)) * GAMMA * v_final
    agree("tutorial - correct = -(gamma lam)^(T-1-t) gamma V(s_T)", gap, tutorial - correct, rtol=1e-9)
    assert 19 < -gap[-1] < 21 and 10 < -gap[0] < 13

    batch = rollout_batch(
        ep["obs"][None],
        ep["next_obs"][None],
        ep["reward"][None],
        ep["terminated"][None],
        ep["truncated"][None],
    )
    make_advantage(GAEParams(gamma=GAMMA, lam=LAM), critic)(batch)
    agree("project GAE vs the correct formula", correct, batch["advantage"][0, :, 0], rtol=1e-5, atol=1e-4)
    differ("project GAE vs the tutorial", tutorial, batch["advantage"][0, :, 0].numpy(), 10.0)


def test_the_update_uses_the_correct_advantages(cartpole: tuple[PPOConfig, EnvBase]) -> None:
    """PPOUpdate on that episode (epochs = 1, one minibatch) reports the mean and the
    (unbiased) std of the advantages it computed: those of the correct formula (mean ~3.7),
    not the tutorial's (mean ~-11.6)."""
    _, env = cartpole
    actor, _ = seeded_actor_critic(env)
    critic = trained_looking_critic(env)
    ep = truncated_cartpole_episode()
    tutorial, correct, _ = hand_both(ep, critic, ACTIVATION)

    batch = rollout_batch(
        ep["obs"][None],
        ep["next_obs"][None],
        ep["reward"][None],
        ep["terminated"][None],
        ep["truncated"][None],
    )
    batch["action"] = torch.as_tensor(ep["action"][None])
    with torch.no_grad():
        batch["action_log_prob"] = actor.get_dist(batch).log_prob(batch["action"])
    loss = make_loss(LossParams(clip_epsilon=0.3), actor, critic)
    advantage = make_advantage(GAEParams(gamma=GAMMA, lam=LAM), critic)
    update = PPOUpdate(
        loss, make_optimizer(loss, lr=2e-3), advantage, epochs=1, minibatch_size=T, max_grad_norm=0.5
    )
    metrics = update(batch)
    agree("advantage_mean", correct.mean(), metrics["advantage_mean"], rtol=1e-5, atol=1e-4)
    agree("advantage_std", correct.std(ddof=1), metrics["advantage_std"], rtol=1e-4, atol=1e-4)
    differ("correct vs tutorial mean", correct.mean(), tutorial.mean(), 5.0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.data(), floats(0.3, 1.0), floats(0.3, 1.0))
def test_truncation_property(length: int, data: st.DataObject, gamma: float, lam: float) -> None:
    """Random truncated episodes through a value table: the project's GAE equals the correct
    formula, and the tutorial's falls short by exactly (gamma lam)^(T-1-t) gamma V(s_T)."""
    values = np.array(data.draw(st.lists(floats(-10, 10), min_size=length + 1, max_size=length + 1)))
    reward = np.array(data.draw(st.lists(floats(-2, 2), min_size=length, max_size=length)))
    obs, next_obs = np.arange(length), np.arange(1, length + 1)
    truncated = np.arange(length) == length - 1
    terminated = np.zeros(length, bool)

    experiences = [
        hand.Experience(float(r), bool(d), float(values[s]))
        for r, d, s in zip(reward, truncated, obs, strict=True)
    ]
    tutorial = np.asarray(hand.tutorial_compute_gae(experiences, gamma, lam))
    correct, _ = hand.gae(reward, values[obs], values[next_obs], terminated, truncated, gamma, lam)
    gap = -((gamma * lam) ** np.arange(length - 1, -1, -1)) * gamma * values[length]
    agree("tutorial - correct", gap, tutorial - correct, rtol=1e-9, atol=1e-12)

    batch = rollout_batch(obs[None], next_obs[None], reward[None], terminated[None], truncated[None])
    make_advantage(GAEParams(gamma=gamma, lam=lam), table_critic(values))(batch)
    agree("project GAE vs correct", correct, batch["advantage"][0, :, 0], atol=1e-4)
