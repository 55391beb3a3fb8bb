"""Many seeds' policies and critics as one stacked network each: seeds are a batch dimension.

`StackedMLP` holds every seed's MLP in ONE parameter ``flat`` of shape [seeds, P]; each
layer's weight is a view into it, and a forward pass is one batched matmul (``baddbmm``)
per layer over [seeds, samples, features]. Why one flat tensor: small networks cost launch
overhead, not arithmetic, so per-seed gradient clipping and a masked Adam step
(core/independent.py) are then a handful of ops on [seeds, P] whatever the depth.
(Measured on this 2-core CPU, 16 CartPole seeds: this layout beat ``torch.func.vmap`` over
``functional_call`` and an actor and critic fused as one 2S network; see
experiments/results/seeds_prototype_cpu.json.)

Seed ``s``'s weights start as the single-seed trainer's would with ``--seed s`` (the same
`make_actor_critic` under ``torch.manual_seed(s)``), and `copy_seed_into` writes one seed
back into an ordinary actor or critic, so evaluation, export and MLflow models of one seed
reuse the single-seed code unchanged. Discrete (Categorical) actions and MLP encoders only:
the torch-native envs that can run seeds as a batch have both.
"""

from __future__ import annotations

import math

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import ProbabilisticActor, ValueOperator


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


class StackedMLP(nn.Module):
    """``len(seeds)`` MLPs of one shape; input [S, *batch, in] -> output [S, *batch, out]."""

    def __init__(self, mlps: list[nn.Module], activation: str) -> None:
        super().__init__()
        layers = [linear_layers(m) for m in mlps]
        # Stored as [in, out] (the transpose of nn.Linear's weight) so that baddbmm needs none.
        self.shapes: list[tuple[int, ...]] = []
        for layer in layers[0]:
            self.shapes += [(layer.in_features, layer.out_features), (1, layer.out_features)]
        rows = [torch.cat([t for lin in seed for t in (lin.weight.T.flatten(), lin.bias)]) for seed in layers]
        self.flat = nn.Parameter(torch.stack(rows).detach().clone())
        self.act = torch.tanh if activation == "tanh" else torch.relu
        # With keep_output, the last forward's output stays readable as ``last_output``: the
        # independent update reads the policy's logits from the loss's own forward.
        self.keep_output = False
        self.last_output: torch.Tensor | None = None

    @property
    def num_seeds(self) -> int:
        return self.flat.shape[0]

    def views(self) -> list[torch.Tensor]:
        """Per-layer [S, in, out] weights and [S, 1, out] biases, views into ``flat``."""
        out, at = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append(self.flat[:, at : at + n].view(-1, *shape))
            at += n
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(lead[0], -1, x.shape[-1])
        params = self.views()
        for i in range(0, len(params), 2):
            x = torch.baddbmm(params[i + 1], x, params[i])
            if i + 2 < len(params):
                x = self.act(x)
        out = x.reshape(*lead, x.shape[-1])
        if self.keep_output:
            self.last_output = out
        return out

    def copy_seed_into(self, index: int, module: nn.Module) -> None:
        """Write seed ``index``'s weights into ``module``, an ordinary MLP of the same shape."""
        load_row(self.flat[index], module)


@torch.no_grad()
def load_row(row: torch.Tensor, module: nn.Module) -> None:
    """Write one seed's flat weights (a row of a `StackedMLP`'s ``flat``, in its layout: per
    layer W^T then b) into ``module``'s linear layers; ValueError if the sizes differ."""
    targets = linear_layers(module)
    sizes = [t.numel() for layer in targets for t in (layer.weight, layer.bias)]
    if sum(sizes) != row.numel():
        raise ValueError(f"{row.numel()} weights for a network of {sum(sizes)}")
    parts = iter(row.detach().to(targets[0].weight.device).split(sizes))
    for layer in targets:
        layer.weight.copy_(next(parts).view(layer.in_features, layer.out_features).T)
        layer.bias.copy_(next(parts))


def stacked_actor(net: StackedMLP) -> ProbabilisticActor:
    """The policy over every seed: ``observation`` [S, ...] -> ``logits``, Categorical action."""
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["logits"]),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        distribution_kwargs={"validate_args": False},
        return_log_prob=True,
    )


def stacked_critic(net: StackedMLP) -> ValueOperator:
    return ValueOperator(net, in_keys=["observation"])


def actor_net(actor: ProbabilisticActor) -> StackedMLP:
    """The StackedMLP inside a `stacked_actor`."""
    return actor.module[0].module


def critic_net(critic: ValueOperator) -> StackedMLP:
    return critic.module
