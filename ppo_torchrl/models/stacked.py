"""Many seeds' MLPs as one weight tensor each: seeds are a batch dimension.

`stack` lays every seed's MLP out as ONE row of a [seeds, P] tensor (per layer W^T, then b),
and `stacked_forward` runs all of them as one batched matmul (``baddbmm``) per layer over
[seeds, samples, features]. Why one flat tensor: small networks cost launch overhead, not
arithmetic, so per-seed gradient clipping and a masked Adam step (core/functional.py) are
then a handful of ops on [seeds, P] whatever the depth. (Measured on this 2-core CPU, 16
CartPole seeds: this layout beat ``torch.func.vmap`` over ``functional_call`` and an actor
and critic fused as one 2S network; see experiments/results/seeds_prototype_cpu.json.)

Seed ``s``'s weights start as the single-seed trainer's would with ``--seed s`` (the caller
builds them with `make_actor_critic` under ``torch.manual_seed(s)``), and `load_row` writes
one seed back into an ordinary actor or critic, so evaluation, export and MLflow models of
one seed reuse the single-seed code unchanged. MLP encoders only: the torch-native envs that
run seeds as a batch need nothing else.
"""

from __future__ import annotations

import torch
from torch import nn

Shapes = list[tuple[int, ...]]  # per layer (in, out) of W^T, then (1, out) of b


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def stack(mlps: list[nn.Module]) -> tuple[torch.Tensor, Shapes]:
    """Every MLP's weights as a row of one [len(mlps), P] tensor, and the layout of a row."""
    layers = [linear_layers(m) for m in mlps]
    shapes: Shapes = []
    for layer in layers[0]:
        shapes += [(layer.in_features, layer.out_features), (1, layer.out_features)]
    # W^T ([in, out]) so that baddbmm needs no transpose.
    rows = [torch.cat([t for lin in seed for t in (lin.weight.T.flatten(), lin.bias)]) for seed in layers]
    return torch.stack(rows).detach().clone(), shapes


def stacked_forward(flat: torch.Tensor, shapes: Shapes, activation: str, x: torch.Tensor) -> torch.Tensor:
    """Every seed's MLP at once, as a pure function of its weights ``flat`` [S, P] (laid out
    as ``shapes``) and ``x`` [S, *batch, in] -> [S, *batch, out]: one batched matmul per
    layer. What the compiled update differentiates."""
    lead = x.shape[:-1]
    x = x.reshape(lead[0], -1, x.shape[-1])
    at, n_layers = 0, len(shapes) // 2
    for i in range(n_layers):
        (fan_in, fan_out) = shapes[2 * i]
        weight = flat[:, at : at + fan_in * fan_out].view(-1, fan_in, fan_out)
        at += fan_in * fan_out
        bias = flat[:, at : at + fan_out].view(-1, 1, fan_out)
        at += fan_out
        x = torch.baddbmm(bias, x, weight)
        if i < n_layers - 1:
            x = tanh(x) if activation == "tanh" else torch.relu(x)
    return x.reshape(*lead, x.shape[-1])


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh as 2 sigmoid(2x) - 1: the same function to float32 rounding (|diff| <= 2e-7), and on
    this project's CPUs 4x faster than torch.tanh, eager or compiled (105 vs 391 us for a
    [16, 256, 64] activation), which made tanh a third of a many-seeds update step."""
    return 2 * torch.sigmoid(2 * x) - 1


def split_row(row: torch.Tensor, module: nn.Module) -> list[torch.Tensor]:
    """One seed's flat row (weights, or Adam moments laid out as weights) as ``module``'s
    tensors in its parameter order: each linear layer's weight [out, in], then its bias;
    ValueError if the sizes differ."""
    targets = linear_layers(module)
    sizes = [t.numel() for layer in targets for t in (layer.weight, layer.bias)]
    if sum(sizes) != row.numel():
        raise ValueError(f"{row.numel()} weights for a network of {sum(sizes)}")
    parts = iter(row.detach().split(sizes))
    out = []
    for layer in targets:
        out += [next(parts).view(layer.in_features, layer.out_features).T, next(parts)]
    return out


@torch.no_grad()
def load_row(row: torch.Tensor, module: nn.Module) -> None:
    """Write one seed's flat weights (a row of `stack`'s tensor) into ``module``'s linear
    layers; ValueError if the sizes differ."""
    targets = [t for layer in linear_layers(module) for t in (layer.weight, layer.bias)]
    for target, value in zip(targets, split_row(row, module), strict=True):
        target.copy_(value)
