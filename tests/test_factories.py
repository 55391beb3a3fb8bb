"""Each factory on its own: env, actor-critic, GAE, ClipPPOLoss, the PPO update."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from ppo_torchrl import (
    GAEParams,
    LossParams,
    PPOConfig,
    PPOUpdate,
    make_actor_critic,
    make_advantage,
    make_env,
    make_loss,
    make_optimizer,
)
from ppo_torchrl.fields import ConfigError


@pytest.fixture(scope="module")
def cartpole() -> tuple[PPOConfig, object]:
    cfg = PPOConfig(num_envs=4, rollout_steps=16, minibatch_size=32, env_backend="gymnasium")
    env = make_env(cfg.env, cfg.num_envs, seed=cfg.seed, backend=cfg.env_backend)
    yield cfg, env
    env.close()


def test_make_env_is_batched_over_num_envs(cartpole) -> None:
    cfg, env = cartpole
    assert env.batch_size == torch.Size([cfg.num_envs])
    rollout = env.rollout(5, break_when_any_done=False)
    assert rollout.batch_size == torch.Size([cfg.num_envs, 5])
    assert rollout["observation"].shape == (cfg.num_envs, 5, 4)
    assert rollout["next", "reward"].dtype == torch.float32
    for key in ("done", "terminated", "truncated"):
        assert ("next", key) in rollout.keys(True)


@pytest.mark.parametrize("backend", ["torch", "gymnasium"])
def test_both_cartpole_backends_pass_torchrl_spec_checks(backend: str) -> None:
    from torchrl.envs.utils import check_env_specs

    env = make_env("CartPole-v1", 3, backend=backend)
    check_env_specs(env)
    assert env.batch_size == torch.Size([3])
    env.close()


def test_auto_backend_is_torch_for_native_envs_only() -> None:
    from ppo_torchrl.envs.acrobot import TorchAcrobot
    from ppo_torchrl.envs.cartpole import TorchCartPole
    from ppo_torchrl.envs.factory import backend_for

    assert isinstance(make_env("CartPole-v1", 2), TorchCartPole)
    assert isinstance(make_env("Acrobot-v1", 2), TorchAcrobot)
    assert backend_for("MountainCar-v0") == "gymnasium"
    with pytest.raises(ConfigError, match="env_backend: 'torch' exists only for CartPole-v1, Acrobot-v1"):
        backend_for("MountainCar-v0", "torch")


def test_torch_cartpole_truncation_keeps_final_observation_then_resets() -> None:
    from ppo_torchrl.envs.cartpole import MAX_EPISODE_STEPS, cartpole_dynamics

    env = make_env("CartPole-v1", 2)
    td = env.reset()
    env.elapsed[:] = MAX_EPISODE_STEPS - 1  # one step before CartPole-v1's time limit
    state_before = env.state.clone()
    td["action"] = torch.tensor([0, 1])
    step, following = env.step_and_maybe_reset(td)
    assert step["next", "truncated"].all() and not step["next", "terminated"].any()
    final = step["next", "observation"]
    # The final observation is the physics step from the state before, not a reset...
    expected, _ = cartpole_dynamics(state_before, torch.tensor([0, 1]))
    assert torch.equal(final, expected.float())
    # ...and the next step starts from a fresh reset with a fresh time limit.
    assert not torch.equal(following["observation"], final) and (env.elapsed == 0).all()


def test_make_env_rejects_unknown_ids() -> None:
    with pytest.raises(ConfigError, match="env: unknown gymnasium environment id 'NoSuchEnv-v9'"):
        make_env("NoSuchEnv-v9")


def test_truncation_keeps_the_final_observation_in_next() -> None:
    """GAE must bootstrap from the real last state of a time-limited episode."""
    env = make_env("Pendulum-v1", 2)  # 200-step limit
    rollout = env.rollout(201, break_when_any_done=False)
    t = 199
    assert rollout["next", "truncated"][:, t].all() and not rollout["next", "terminated"].any()
    # The next observation continues the trajectory (cos, sin of the angle stay on the unit
    # circle and close to the previous step), while the following root observation is a reset.
    final = rollout["next", "observation"][:, t]
    previous = rollout["observation"][:, t]
    assert torch.allclose(final[:, :2].norm(dim=-1), torch.ones(2), atol=1e-4)
    assert (final[:, :2] - previous[:, :2]).abs().max() < 0.5
    assert not torch.allclose(rollout["observation"][:, t + 1], final, atol=0.1)
    env.close()


def test_actor_critic_discrete(cartpole) -> None:
    cfg, env = cartpole
    actor, critic = make_actor_critic(env)
    assert isinstance(actor, ProbabilisticActor) and isinstance(critic, ValueOperator)
    td = actor(env.reset())
    assert td["action"].shape == (cfg.num_envs,) and td["action"].dtype == torch.int64
    assert td["action_log_prob"].shape == (cfg.num_envs,)
    assert critic(td)["state_value"].shape == (cfg.num_envs, 1)
    # separate networks: no parameter is shared
    assert not {id(p) for p in actor.parameters()} & {id(p) for p in critic.parameters()}


def test_actor_critic_orthogonal_init(cartpole) -> None:
    cfg, env = cartpole
    actor, _critic = make_actor_critic(env, hidden_sizes=cfg.hidden_sizes)
    linears = [m for m in actor.modules() if isinstance(m, torch.nn.Linear)]
    hidden, last = linears[0], linears[-1]
    # Orthogonal rows (4 inputs < 64 outputs: W^T W = gain^2 I).
    w = hidden.weight
    assert torch.allclose(w.T @ w, 2.0 * torch.eye(w.shape[1]), atol=1e-4)
    w = last.weight  # policy head: gain 0.01, so the initial policy is near uniform
    assert torch.allclose(w @ w.T, 1e-4 * torch.eye(w.shape[0]), atol=1e-7)
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    probs = torch.softmax(actor.module[0](env.reset())["logits"], -1)
    assert torch.allclose(probs, torch.full_like(probs, 0.5), atol=0.02)


def test_actor_critic_continuous_actions_stay_in_bounds() -> None:
    env = make_env("Pendulum-v1", 3)
    actor, _ = make_actor_critic(env)
    td = actor(env.reset())
    assert isinstance(actor.get_dist(td), TanhNormal)
    assert td["action"].shape == (3, 1)
    assert (td["action"].abs() <= 2.0).all()
    env.close()


def test_make_advantage_is_gae_with_its_parameters(cartpole) -> None:
    _, env = cartpole
    _, critic = make_actor_critic(env)
    gae = make_advantage(GAEParams(gamma=0.9, lam=0.7), critic)
    assert isinstance(gae, GAE)
    assert float(gae.gamma) == pytest.approx(0.9) and float(gae.lmbda) == pytest.approx(0.7)


def test_make_loss_is_clip_ppo_with_its_parameters(cartpole) -> None:
    _, env = cartpole
    actor, critic = make_actor_critic(env)
    loss = make_loss(LossParams(clip_epsilon=0.3, entropy_coef=0.02, critic_coef=0.7), actor, critic)
    assert isinstance(loss, ClipPPOLoss)
    assert float(loss.clip_epsilon) == pytest.approx(0.3)
    assert float(loss.entropy_coeff) == pytest.approx(0.02)
    assert float(loss.critic_coeff) == pytest.approx(0.7)
    assert loss.loss_critic_type == "l2"


def _rollout(cfg: PPOConfig, env, actor) -> TensorDict:
    with torch.no_grad():
        return env.rollout(cfg.rollout_steps, actor, break_when_any_done=False)


def test_ppo_update_changes_both_networks_and_reports_metrics(cartpole) -> None:
    cfg, env = cartpole
    actor, critic = make_actor_critic(env)
    loss = make_loss(cfg.params(LossParams), actor, critic)
    update = PPOUpdate(
        loss,
        make_optimizer(loss, cfg.lr),
        make_advantage(cfg.params(GAEParams), critic),
        epochs=2,
        minibatch_size=32,
        max_grad_norm=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    before = [p.detach().clone() for p in loss.parameters()]
    metrics = update(_rollout(cfg, env, actor))
    after = list(loss.parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    assert metrics["gradient_steps"] == 2 * (cfg.frames_per_batch // 32)
    for key in (
        "loss_objective",
        "loss_critic",
        "entropy",
        "clip_fraction",
        "kl_approx",
        "explained_variance",
        "grad_norm",
    ):
        assert math.isfinite(metrics[key]), key
    assert 0.0 <= metrics["clip_fraction"] <= 1.0


def test_ppo_update_without_advantage_module_uses_given_advantages(cartpole) -> None:
    """Critic-free use (e.g. GRPO): the caller writes ``advantage``; no GAE runs."""
    cfg, env = cartpole
    actor, _ = make_actor_critic(env)
    loss = make_loss(cfg.params(LossParams), actor, None)
    update = PPOUpdate(
        loss, make_optimizer(loss, cfg.lr), None, epochs=1, minibatch_size=64, max_grad_norm=0.0
    )
    batch = _rollout(cfg, env, actor)
    batch["advantage"] = torch.randn(*batch.batch_size, 1)
    metrics = update(batch)
    assert "loss_critic" not in metrics and math.isfinite(metrics["loss_objective"])
    assert "value_target" not in batch


def test_ppo_update_drops_steps_marked_invalid(cartpole) -> None:
    cfg, env = cartpole
    actor, critic = make_actor_critic(env)
    loss = make_loss(cfg.params(LossParams), actor, critic)
    update = PPOUpdate(
        loss,
        make_optimizer(loss, cfg.lr),
        make_advantage(cfg.params(GAEParams), critic),
        epochs=1,
        minibatch_size=16,
        max_grad_norm=0.5,
    )
    batch = _rollout(cfg, env, actor)
    mask = torch.zeros(batch.batch_size, dtype=torch.bool)
    mask[:, :8] = True  # 4 envs x 8 valid steps = 32 steps = 2 minibatches of 16
    batch["collector", "mask"] = mask
    assert update(batch)["gradient_steps"] == 2


def test_the_trainer_collects_with_the_very_networks_it_updates() -> None:
    """The collector must step the trainer's own actor, on its device: a copy (which TorchRL
    makes when the policy sits elsewhere than ``policy_device``) would never see an update."""
    from ppo_torchrl import Trainer

    cfg = PPOConfig(num_envs=2, rollout_steps=8, minibatch_size=16, track=False, device="cpu")
    trainer = Trainer(cfg, program=False)  # the Collector route (CartPole's own is the program)
    learner = trainer.learner
    assert learner.collection.collector.policy is trainer.actor
    assert trainer.device == torch.device("cpu") and learner.env.data_device == torch.device("cpu")
    assert learner.env.device is None  # on the CPU it declares none, as TorchRL's CPU envs do
    assert learner.env.reset()["observation"].device == trainer.device
    assert {p.device for p in learner.loss_module.parameters()} == {trainer.device}
    learner.shutdown()


def test_pixels_share_one_cnn_pass_per_minibatch_in_the_loss() -> None:
    """For pixels the loss runs the CNN once (the actor's pass) and the value head on its
    features: the same losses and the same gradients, to float precision, as running the
    whole critic again on the observations."""
    import tests.toy_envs  # noqa: F401  (registers MatchPixels-v0)
    from ppo_torchrl.models.actor_critic import loss_critic

    env = make_env("tests.toy_envs:MatchPixels-v0", 4, seed=0, backend="gymnasium")
    torch.manual_seed(0)
    actor, critic = make_actor_critic(env)
    with torch.no_grad():
        batch = env.rollout(8, actor, break_when_any_done=False).reshape(-1)
        critic(batch)
    batch["advantage"] = torch.randn(batch.shape[0], 1)
    batch["value_target"] = batch["state_value"] + torch.randn_like(batch["state_value"])
    params = LossParams(clip_epsilon=0.1, entropy_coef=0.01, critic_coef=0.5, clip_value=True)
    results = []
    for critic_module in (critic, loss_critic(critic)):
        loss = make_loss(params, actor, critic_module)
        out = loss(batch.clone())
        total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
        grads = torch.autograd.grad(
            total, list(actor.parameters()) + list(critic.parameters()), allow_unused=True
        )
        results.append((out, grads))
    (full, full_grads), (shared, shared_grads) = results
    assert loss_critic(critic) is not critic
    for key in ("loss_objective", "loss_critic", "loss_entropy"):
        torch.testing.assert_close(shared[key], full[key])
    for a, b in zip(full_grads, shared_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)
    assert any(g is not None and g.abs().sum() > 0 for g in shared_grads[: len(list(actor.parameters()))])


def test_single_value_call_gae_equals_two_calls_across_truncations() -> None:
    """GAE's one critic call over T + 4 observations gives the two-call advantages exactly,
    time-limit truncations (whose true final observation it must insert) included."""
    from dataclasses import replace

    env = make_env("CartPole-v1", 3, seed=0, backend="gymnasium", env_kwargs={"max_episode_steps": 20})
    torch.manual_seed(0)
    actor, critic = make_actor_critic(env)
    with torch.no_grad():
        batch = env.rollout(64, actor, break_when_any_done=False)
    batch.refine_names(None, "time")
    truncated = batch["next", "truncated"]
    assert truncated.any() and not batch["next", "terminated"][truncated].any()
    params = GAEParams(gamma=0.99, lam=0.95)
    two, one = batch.clone(), batch.clone()
    with torch.no_grad():
        make_advantage(params, critic)(two)
        make_advantage(replace(params, single_value_call=True), critic)(one)
    valid = one["shifted_valid"]
    assert valid.all()  # a few truncations an env: within the budget, nothing displaced
    torch.testing.assert_close(one["advantage"], two["advantage"])
    torch.testing.assert_close(one["value_target"], two["value_target"])
