"""Many seeds in one program: seed k of a batched call is a single-seed call on seed k's data.

The batched path (core/independent.py, models/stacked.py) reuses the core's GAE and
ClipPPOLoss over [seeds, ...] batches. What makes it many *independent* runs is that every
per-seed quantity stays per seed. The claims, each against the single-seed core on seed k's
slice (ordinary `make_actor_critic` networks holding seed k's weights):

    GAE             advantage and value_target of seed k          == make_advantage on slice k
    loss            mean_k(loss_objective + loss_critic + ...)     == make_loss on slice k
                    (advantages standardised within seed k only)
    gradient        d(sum over seeds)/d(seed k's weights)          == d(single loss)/d(weights)
    step            clip seed k's gradient to max_grad_norm, Adam  == PPOUpdate._step on slice k
    target_kl       a seed past 1.5 x target_kl takes no step; its weights and Adam moments
                    stay while the others move
    streams         SplitMix64 per seed; seed k's draws are the same alone or beside others

and the checks have teeth: pooling advantage normalisation or gradient clipping across
seeds makes them fail (tests named ``*_pooled_*``).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from tensordict import TensorDict

from ppo_torchrl import GAEParams, LossParams, UpdateParams, make_advantage, make_loss, make_update
from ppo_torchrl.core.independent import IndependentUpdate, MaskedAdam, clip_per_learner
from ppo_torchrl.core.streams import MASK64, Streams, _signed, mix64, mix64_reference
from ppo_torchrl.envs.cartpole import TorchCartPole
from ppo_torchrl.models.actor_critic import make_actor_critic
from ppo_torchrl.models.stacked import StackedMLP, linear_layers, stacked_actor, stacked_critic
from specs.check import agree

SEEDS = [3, 7, 11]
E, T, MB = 4, 8, 16


def singles() -> list[tuple[Any, Any]]:
    env = TorchCartPole(1)
    out = []
    for s in SEEDS:
        torch.manual_seed(s)
        out.append(make_actor_critic(env))
    return out


def stacked(pairs: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    actor = stacked_actor(StackedMLP([a.module[0].module for a, _ in pairs], "tanh"))
    critic = stacked_critic(StackedMLP([c.module for _, c in pairs], "tanh"))
    return actor, critic


def trajectories(seed: int = 0) -> TensorDict:
    """[seeds, envs, time] of made-up steps with terminations and truncations."""
    g = torch.Generator().manual_seed(seed)
    S = len(SEEDS)
    obs = torch.randn(S, E, T, 4, generator=g) * 0.5
    terminated = torch.rand(S, E, T, 1, generator=g) < 0.1
    done = terminated | (torch.rand(S, E, T, 1, generator=g) < 0.05)
    nxt = {"observation": torch.randn(S, E, T, 4, generator=g) * 0.5,
           "reward": torch.rand(S, E, T, 1, generator=g), "terminated": terminated, "done": done}  # fmt: skip
    return TensorDict(
        {"observation": obs, "action": torch.randint(0, 2, (S, E, T), generator=g),
         "action_log_prob": -torch.rand(S, E, T, generator=g) - 0.3, "next": nxt},
        batch_size=[S, E, T],
    )  # fmt: skip


def minibatch(seed: int = 1) -> TensorDict:
    """[seeds, MB] steps with advantages of very different scales per seed."""
    g = torch.Generator().manual_seed(seed)
    S = len(SEEDS)
    scale = torch.tensor([0.1, 1.0, 30.0]).view(S, 1, 1)
    return TensorDict(
        {"observation": torch.randn(S, MB, 4, generator=g),
         "action": torch.randint(0, 2, (S, MB), generator=g),
         "action_log_prob": -torch.rand(S, MB, generator=g) - 0.4,
         "advantage": torch.randn(S, MB, 1, generator=g) * scale + scale,
         "value_target": torch.randn(S, MB, 1, generator=g) * 3},
        batch_size=[S, MB],
    )  # fmt: skip


def grad_rows(actor: Any, critic: Any) -> torch.Tensor:
    """A single-seed network pair's gradient in the stacked layout's order (W^T, b per layer)."""
    parts = [
        t
        for m in (actor, critic)
        for lin in linear_layers(m)
        for t in (lin.weight.grad.T.flatten(), lin.bias.grad)
    ]
    return torch.cat(parts)


LOSS = LossParams(clip_epsilon=0.2, entropy_coef=0.01, critic_coef=0.5)


def test_gae_per_seed_equals_single_gae() -> None:
    pairs = singles()
    _, critic = stacked(pairs)
    batch = trajectories()
    make_advantage(GAEParams(gamma=0.97, lam=0.9), critic)(batch)
    for k, (_, single_critic) in enumerate(pairs):
        one = trajectories()[k]
        make_advantage(GAEParams(gamma=0.97, lam=0.9), single_critic)(one)
        agree(f"advantage of seed {k}", one["advantage"], batch["advantage"][k], atol=1e-5)
        agree(f"value_target of seed {k}", one["value_target"], batch["value_target"][k], atol=1e-5)


def per_seed_losses(loss_module: Any, mb: TensorDict) -> torch.Tensor:
    out = loss_module(mb)
    return sum(v.flatten(1).mean(1) for k, v in out.items() if k.startswith("loss_"))


def test_loss_and_gradient_per_seed_equal_single() -> None:
    pairs = singles()
    actor, critic = stacked(pairs)
    mb = minibatch()
    losses = per_seed_losses(make_loss(LOSS, actor, critic, independent=True), mb)
    losses.sum().backward()
    grads = torch.cat([actor.module[0].module.flat.grad, critic.module.flat.grad], 1)
    for k, (a, c) in enumerate(pairs):
        out = make_loss(LOSS, a, c)(mb[k])
        single = sum(v for key, v in out.items() if key.startswith("loss_"))
        single.backward()
        agree(f"loss of seed {k}", single, losses[k], rtol=1e-5, atol=1e-6)
        agree(f"gradient of seed {k}", grad_rows(a, c), grads[k], rtol=1e-4, atol=1e-6)


def test_pooled_advantage_normalisation_is_caught() -> None:
    """Standardising advantages over all seeds at once (the loss's default for a [S, MB]
    batch) changes each seed's loss: the check above would fail."""
    pairs = singles()
    actor, critic = stacked(pairs)
    loss = make_loss(LOSS, actor, critic, independent=True)
    loss.normalize_advantage_exclude_dims = ()  # pooled
    losses = per_seed_losses(loss, minibatch())
    single = make_loss(LOSS, *pairs[0])(minibatch()[0])
    single = sum(v for key, v in single.items() if key.startswith("loss_"))
    with pytest.raises(AssertionError):
        agree("loss of seed 0 (pooled normalisation)", single, losses[0], rtol=1e-5, atol=1e-6)


def independent_update(
    actor: Any, critic: Any, params: UpdateParams, loss: Any | None = None
) -> IndependentUpdate:
    flats = [actor.module[0].module.flat, critic.module.flat]
    return IndependentUpdate(
        loss_module=loss or make_loss(LOSS, actor, critic, independent=True),
        optimizer=MaskedAdam(flats, params.lr),
        advantage_module=None,
        epochs=params.epochs,
        minibatch_size=params.minibatch_size,
        max_grad_norm=params.max_grad_norm,
        streams=Streams(SEEDS),
        target_kl=params.target_kl,
    )


def single_step(k: int, pairs: list, params: UpdateParams, steps: int) -> torch.Tensor:
    a, c = pairs[k]
    update = make_update(params, make_loss(LOSS, a, c), None)
    for _ in range(steps):
        update._step(minibatch()[k], may_stop=False)
    return torch.cat(
        [t.detach() for m in (a, c) for lin in linear_layers(m) for t in (lin.weight.T.flatten(), lin.bias)]
    )


@pytest.mark.parametrize("max_grad_norm", [0.05, 0.0])
def test_update_steps_per_seed_equal_single_steps(max_grad_norm: float) -> None:
    """Three steps (clipped gradients, Adam with bias correction) on the same minibatch."""
    params = UpdateParams(epochs=1, minibatch_size=MB, max_grad_norm=max_grad_norm, lr=0.01, target_kl=None)
    pairs = singles()
    actor, critic = stacked(pairs)
    update = independent_update(actor, critic, params)
    active = torch.ones(len(SEEDS))
    for _ in range(3):
        update._step(minibatch(), active, may_stop=False)
    weights = torch.cat([actor.module[0].module.flat, critic.module.flat], 1).detach()
    for k in range(len(SEEDS)):
        agree(f"weights of seed {k}", single_step(k, singles(), params, 3), weights[k], rtol=1e-4, atol=1e-6)


def test_pooled_gradient_clipping_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """One norm over every seed's gradient (clip_grad_norm_ over the stacked tensors) clips
    the seeds with small gradients too: seed 0's weights no longer match its single run."""
    import ppo_torchrl.core.independent as independent

    def pooled(params: list, max_norm: float) -> torch.Tensor:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return norm.expand(params[0].shape[0])

    monkeypatch.setattr(independent, "clip_per_learner", pooled)
    params = UpdateParams(epochs=1, minibatch_size=MB, max_grad_norm=0.05, lr=0.01, target_kl=None)
    actor, critic = stacked(singles())
    independent_update(actor, critic, params)._step(minibatch(), torch.ones(len(SEEDS)), may_stop=False)
    weights = torch.cat([actor.module[0].module.flat, critic.module.flat], 1).detach()
    with pytest.raises(AssertionError):
        agree(
            "weights of seed 0 (pooled clipping)",
            single_step(0, singles(), params, 1),
            weights[0],
            rtol=1e-4,
            atol=1e-6,
        )


def test_clip_per_learner_matches_clip_grad_norm() -> None:
    flat = torch.nn.Parameter(torch.zeros(3, 5))
    flat.grad = torch.tensor([[3.0, 4, 0, 0, 0], [0.1, 0, 0, 0, 0], [0, 0, 0, 0, 12]])
    norms = clip_per_learner([flat], 1.0)
    agree("norms", [5.0, 0.1, 12.0], norms)
    agree("clipped", [[0.6, 0.8, 0, 0, 0], [0.1, 0, 0, 0, 0], [0, 0, 0, 0, 1]], flat.grad, atol=1e-6)


def test_target_kl_stops_only_the_seed_that_moved() -> None:
    """Seed 1's old log-probs are far from its policy (k3 >> target): on a step that may stop,
    seed 1 takes none (weights and Adam moments unchanged) and seeds 0 and 2 do."""
    params = UpdateParams(epochs=1, minibatch_size=MB, max_grad_norm=0.5, lr=0.01, target_kl=0.01)
    actor, critic = stacked(singles())
    update = independent_update(actor, critic, params)
    mb = minibatch()
    with torch.no_grad():
        mb["action_log_prob"] = actor.get_dist(mb).log_prob(mb["action"])  # ratio 1: k3 = 0
        mb["action_log_prob"][1] -= 1.0  # seed 1: ratio e, k3 = e - 2 = 0.72
    before = actor.module[0].module.flat.detach().clone()
    active = torch.ones(len(SEEDS))
    update._step(mb, active, may_stop=True)
    after = actor.module[0].module.flat.detach()
    assert active.tolist() == [1.0, 0.0, 1.0]
    assert torch.equal(before[1], after[1]) and update.optimizer.steps.tolist() == [1.0, 0.0, 1.0]
    assert not torch.equal(before[0], after[0]) and not torch.equal(before[2], after[2])
    assert float(update.optimizer.exp_avg[0][1].abs().sum()) == 0.0


def test_splitmix64_matches_the_64_bit_reference() -> None:
    rng = random.Random(0)
    values = [rng.getrandbits(64) for _ in range(500)] + [0, MASK64, 1 << 63]
    got = mix64(torch.tensor([_signed(v) for v in values], dtype=torch.int64))
    assert [int(x) & MASK64 for x in got] == [mix64_reference(v) for v in values]


def test_a_seeds_stream_is_its_own() -> None:
    together, alone = Streams([0, 5, 9]), Streams([5])
    for shape in [(4,), (2, 3), (7,)]:
        assert torch.equal(together.uniform(*shape)[1], alone.uniform(*shape)[0])
    assert torch.equal(together.permutations(10)[1], alone.permutations(10)[0])
    u = Streams(list(range(32))).uniform(4096, dtype=torch.float64)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0 and abs(float(u.mean()) - 0.5) < 0.01
