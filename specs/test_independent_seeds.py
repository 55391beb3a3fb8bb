"""Many seeds in one program: seed k of the batched step is a single-seed update on seed k's data.

The many-seeds program (core/functional.py over models/stacked.py) runs PPO's update as pure
tensor functions over [seeds, ...] and compiles each minibatch step into one graph. What makes
it many *independent* runs is that every per-seed quantity stays per seed. The claims, each
against the single-seed core (TorchRL's GAE and ClipPPOLoss through `make_advantage`,
`make_loss`, `make_update`) on seed k's slice, with ordinary `make_actor_critic` networks
holding seed k's weights (with the stacked networks' tanh) — for the eager step and for the
compiled one:

    GAE             advantage and value_target of seed k          == make_advantage on slice k
    loss            each loss_* term of seed k, its own means      == make_loss on slice k
                    (advantages standardised within seed k only)
    gradient        d(sum over seeds)/d(seed k's weights)          == d(single loss)/d(weights)
    step            clip seed k's gradient to max_grad_norm, Adam  == PPOUpdate._step on slice k
                    (three steps: moments and bias correction)
    target_kl       a seed past 1.5 x target_kl takes no step; its weights and Adam moments
                    stay while the others move
    non-finite      a seed whose gradient is NaN takes no step, and says so
    streams         SplitMix64 per seed; seed k's draws are the same alone or beside others

to 1e-6 absolute, and the checks have teeth: pooling advantage normalisation or gradient clipping across
seeds makes them fail (tests named ``*_pooled_*``).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from tensordict import TensorDict

from ppo_torchrl import GAEParams, LossParams, UpdateParams, make_advantage, make_loss, make_update
from ppo_torchrl.core import functional
from ppo_torchrl.core.functional import Learners, Minibatch, clip_per_learner, gae, loss_terms, make_step
from ppo_torchrl.core.streams import MASK64, Streams, _signed, mix64, mix64_reference
from ppo_torchrl.envs.cartpole import TorchCartPole
from ppo_torchrl.models.actor_critic import make_actor_critic
from ppo_torchrl.models.stacked import linear_layers, stack, stacked_forward
from ppo_torchrl.models.stacked import tanh as stacked_tanh
from specs.check import agree

SEEDS = [3, 7, 11]
E, T, MB = 4, 8, 16
LOSS = LossParams(clip_epsilon=0.2, entropy_coef=0.01, critic_coef=0.5)


def singles() -> list[tuple[Any, Any]]:
    env = TorchCartPole(1)
    out = []
    for s in SEEDS:
        torch.manual_seed(s)
        actor, critic = make_actor_critic(env)
        for net in (actor, critic):  # the stacked networks' tanh (see test_the_stacked_tanh_is_tanh)
            for parent in list(net.modules()):
                for name, child in parent.named_children():
                    if isinstance(child, torch.nn.Tanh):
                        setattr(parent, name, StackedTanh())
        out.append((actor, critic))
    return out


class StackedTanh(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stacked_tanh(x)


def test_the_stacked_tanh_is_tanh() -> None:
    """The stacked networks compute tanh as 2 sigmoid(2x) - 1 (4x faster on the CPU): equal to
    torch.tanh to float32 rounding. It moves weights after three Adam steps by up to ~2e-6,
    more than this file's 1e-6, so the single-seed networks below use it too: what is held
    equal here is PPO's arithmetic, not two roundings of tanh."""
    x = torch.linspace(-12, 12, 200_001)
    assert float((stacked_tanh(x) - torch.tanh(x)).abs().max()) <= 2.5e-7


class Nets:
    """The seeds' networks stacked: flat weights and the pure forward functions over them."""

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        (actor, actor_shapes), (critic, critic_shapes) = (
            stack([a.module[0].module for a, _ in pairs]),
            stack([c.module for _, c in pairs]),
        )
        self.params = (actor, critic)
        self.policy = lambda flat, obs: stacked_forward(flat, actor_shapes, "tanh", obs)
        self.critic = lambda flat, obs: stacked_forward(flat, critic_shapes, "tanh", obs).squeeze(-1)


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


def as_minibatch(td: TensorDict) -> Minibatch:
    return Minibatch(
        td["observation"],
        td["action"],
        td["action_log_prob"],
        td["advantage"].squeeze(-1),
        td["value_target"].squeeze(-1),
        td.get("state_value", td["value_target"]).squeeze(-1),
    )


def flat_rows(actor: Any, critic: Any, grad: bool = False) -> torch.Tensor:
    """A single-seed network pair's weights (or gradient) in the stacked layout (W^T, b per layer)."""
    parts = []
    for m in (actor, critic):
        for lin in linear_layers(m):
            w, b = (lin.weight.grad, lin.bias.grad) if grad else (lin.weight, lin.bias)
            parts += [w.T.flatten(), b]
    return torch.cat(parts).detach()


_COMPILED: dict[tuple, Any] = {}


def stepper(nets: Nets, update: UpdateParams, compiled: bool, loss: LossParams = LOSS) -> Any:
    """The many-seeds step, eager or compiled (one graph: ``fullgraph=True`` fails on a break)."""
    step = make_step(nets.policy, nets.critic, loss, update, compiled=compiled)
    if not compiled:
        return step
    key = (update, loss)  # one compilation per configuration for the whole module
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(step, dynamic=False, fullgraph=True)
    return _COMPILED[key]


def run_steps(nets: Nets, update: UpdateParams, compiled: bool, batch: Minibatch, steps: int) -> Learners:
    step = stepper(nets, update, compiled)
    learners = Learners.start(nets.params)
    active, lr = torch.ones(len(SEEDS)), torch.tensor(update.lr)
    for _ in range(steps):
        learners, active, _ = step(learners, batch, lr, active, torch.tensor(False))
    return learners


def single_steps(k: int, update: UpdateParams, steps: int) -> torch.Tensor:
    a, c = singles()[k]
    ppo = make_update(update, make_loss(LOSS, a, c), None)
    for _ in range(steps):
        ppo._step(minibatch()[k], may_stop=False)
    return flat_rows(a, c)


def test_gae_per_seed_equals_single_gae() -> None:
    pairs = singles()
    nets = Nets(pairs)
    batch = trajectories()
    with torch.no_grad():
        value = nets.critic(nets.params[1], batch["observation"])
        next_value = nets.critic(nets.params[1], batch["next", "observation"])
    nxt = batch["next"]
    advantage, target = gae(
        value, next_value, nxt["reward"][..., 0], nxt["terminated"][..., 0], nxt["done"][..., 0], 0.97, 0.9
    )
    for k, (_, single_critic) in enumerate(pairs):
        one = trajectories()[k]
        make_advantage(GAEParams(gamma=0.97, lam=0.9), single_critic)(one)
        agree(f"advantage of seed {k}", one["advantage"][..., 0], advantage[k], atol=1e-5)
        agree(f"value_target of seed {k}", one["value_target"][..., 0], target[k], atol=1e-5)


def test_loss_terms_and_gradient_per_seed_equal_single() -> None:
    pairs = singles()
    nets = Nets(pairs)
    mb = minibatch()
    grads, terms = torch.func.grad(
        lambda params: loss_terms(params, as_minibatch(mb), nets.policy, nets.critic, LOSS), has_aux=True
    )(nets.params)
    batched = torch.cat(grads, 1)
    for k, (a, c) in enumerate(pairs):
        out = make_loss(LOSS, a, c)(mb[k])
        for key in ("loss_objective", "loss_critic", "loss_entropy"):
            agree(f"{key} of seed {k}", out[key], terms[key][k], rtol=0, atol=1e-6)
        agree(f"clip_fraction of seed {k}", out["clip_fraction"], terms["clip_fraction"][k])
        agree(f"kl_approx of seed {k}", out["kl_approx"], terms["kl_approx"][k], atol=1e-6)
        for key in ("ESS", "explained_variance", "mean_ratio", "max_ratio", "entropy"):  # what runs log
            agree(f"{key} of seed {k}", out[key].squeeze(), terms[key][k], atol=1e-6)
        sum(v for key, v in out.items() if key.startswith("loss_")).backward()
        agree(f"gradient of seed {k}", flat_rows(a, c, grad=True), batched[k], rtol=0, atol=1e-6)


def test_pooled_advantage_normalisation_is_caught() -> None:
    """Standardising advantages over all seeds at once changes each seed's loss: the check
    above would fail."""
    pairs = singles()
    nets = Nets(pairs)
    mb = minibatch()
    pooled = as_minibatch(mb)._replace(
        advantage=(mb["advantage"] - mb["advantage"].mean()).squeeze(-1) / mb["advantage"].std()
    )
    no_norm = LossParams(clip_epsilon=0.2, entropy_coef=0.01, critic_coef=0.5, normalize_advantage=False)
    _, terms = loss_terms(nets.params, pooled, nets.policy, nets.critic, no_norm)
    single = make_loss(LOSS, *pairs[0])(mb[0])["loss_objective"]
    with pytest.raises(AssertionError):
        agree("loss_objective of seed 0 (pooled normalisation)", single, terms["loss_objective"][0])


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("max_grad_norm", [0.05, 0.0])
def test_three_steps_per_seed_equal_single_steps(max_grad_norm: float, compiled: bool) -> None:
    """Three steps on the same minibatch: clipped gradients, Adam with bias correction."""
    # CartPole's lr. Adam divides by sqrt(v) + 1e-5, so a near-zero gradient's float32 rounding
    # (~1e-9, summation order) moves a weight by ~lr / 1e-5 x 1e-9: 1e-6 already at lr 0.01.
    update = UpdateParams(epochs=1, minibatch_size=MB, max_grad_norm=max_grad_norm, lr=3e-3, target_kl=None)
    learners = run_steps(Nets(singles()), update, compiled, as_minibatch(minibatch()), 3)
    weights = torch.cat(learners.params, 1)
    assert learners.steps.tolist() == [3.0, 3.0, 3.0]
    for k in range(len(SEEDS)):
        agree(f"weights of seed {k}", single_steps(k, update, 3), weights[k], rtol=0, atol=1e-6)


def test_pooled_gradient_clipping_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """One norm over every seed's gradient (as clip_grad_norm_ over the stacked tensors) clips
    the seeds with small gradients too: seed 0's weights no longer match its single run."""

    def pooled(grads: tuple, max_norm: float) -> tuple:
        norm = torch.stack([g.square().sum() for g in grads]).sum().sqrt()
        scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        return tuple(g * scale for g in grads), norm.expand(grads[0].shape[0])

    monkeypatch.setattr(functional, "clip_per_learner", pooled)
    update = UpdateParams(epochs=1, minibatch_size=MB, max_grad_norm=0.05, lr=0.01, target_kl=None)
    learners = run_steps(Nets(singles()), update, False, as_minibatch(minibatch()), 1)
    with pytest.raises(AssertionError):
        agree(
            "weights of seed 0 (pooled clipping)",
            single_steps(0, update, 1),
            torch.cat(learners.params, 1)[0],
            rtol=0,
            atol=1e-6,
        )


def test_clip_per_learner_matches_clip_grad_norm() -> None:
    grad = torch.tensor([[3.0, 4, 0, 0, 0], [0.1, 0, 0, 0, 0], [0, 0, 0, 0, 12]])
    (clipped,), norms = clip_per_learner((grad,), 1.0)
    agree("norms", [5.0, 0.1, 12.0], norms)
    agree("clipped", [[0.6, 0.8, 0, 0, 0], [0.1, 0, 0, 0, 0], [0, 0, 0, 0, 1]], clipped, atol=1e-6)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_target_kl_stops_only_the_seed_that_moved(compiled: bool) -> None:
    """Seed 1's old log-probs are far from its policy (k3 >> target): on a step that may stop,
    seed 1 takes none (weights and Adam moments unchanged) and seeds 0 and 2 do."""
    update = UpdateParams(epochs=1, minibatch_size=MB, max_grad_norm=0.5, lr=0.01, target_kl=0.01)
    nets = Nets(singles())
    batch = as_minibatch(minibatch())
    with torch.no_grad():
        log_p = torch.log_softmax(nets.policy(nets.params[0], batch.observation), -1)
        old = log_p.gather(-1, batch.action.unsqueeze(-1)).squeeze(-1).clone()  # ratio 1: k3 = 0
        old[1] -= 1.0  # seed 1: ratio e, k3 = e - 2 = 0.72
    batch = batch._replace(old_log_prob=old)
    start = Learners.start(nets.params)
    step = stepper(nets, update, compiled)
    after, active, metrics = step(start, batch, torch.tensor(0.01), torch.ones(3), torch.tensor(True))
    assert active.tolist() == [1.0, 0.0, 1.0] and after.steps.tolist() == [1.0, 0.0, 1.0]
    assert torch.equal(start.params[0][1], after.params[0][1])
    assert not torch.equal(start.params[0][0], after.params[0][0])
    assert float(after.exp_avg[0][1].abs().sum()) == 0.0
    assert metrics["kl_k3"][1] > 0.5 and metrics["kl_k3"][0] < 1e-6


def test_a_non_finite_gradient_never_reaches_the_weights() -> None:
    update = UpdateParams(epochs=1, minibatch_size=MB, max_grad_norm=0.5, lr=0.01, target_kl=None)
    nets = Nets(singles())
    batch = as_minibatch(minibatch())
    broken = batch.value_target.clone()
    broken[2, 0] = float("nan")
    start = Learners.start(nets.params)
    step = stepper(nets, update, False)
    after, _, metrics = step(
        start, batch._replace(value_target=broken), torch.tensor(0.01), torch.ones(3), torch.tensor(False)
    )
    assert metrics["nonfinite"].tolist() == [0.0, 0.0, 1.0]
    assert torch.equal(start.params[1][2], after.params[1][2]) and after.steps.tolist() == [1.0, 1.0, 0.0]
    assert bool(torch.isfinite(after.params[1]).all())


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
