"""The module side: tiny TensorDict modules with known outputs, and batches with TorchRL's keys.

The objects under test are always the ones the project builds: ``make_advantage`` from a
``GAEParams``, ``make_loss`` from a ``LossParams``, ``make_update`` from an ``UpdateParams``
(or ``PPOUpdate`` directly), ``make_actor_critic``. What this file adds are inputs whose
numbers a reader can follow: an actor whose logits are a table indexed by the state id, a
critic whose values are a table, observations that are state ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.modules import ProbabilisticActor, ValueOperator

from ppo_torchrl import LossParams, make_loss

# Logits [0, -1e4]: pi(a=0|s) = 1 and log pi(0|s) = 0.0 *exactly* in float32, so the
# module's log-ratio equals -log pi_old bit for bit (used where float32 edges matter).
CERTAIN = (0.0, -1e4)


class Table(nn.Module):
    """out = table[state id]; the observation holds the state id as a float."""

    def __init__(self, table: Any) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(np.asarray(table), dtype=torch.float32))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.table[observation.long().squeeze(-1)]


def table_actor(logits: Any) -> ProbabilisticActor:
    """pi(.|s) = softmax(logits[s]): a Categorical actor writing action and action_log_prob."""
    module = TensorDictModule(Table(logits), in_keys=["observation"], out_keys=["logits"])
    return ProbabilisticActor(
        module,
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
    )


def table_critic(values: Any) -> ValueOperator:
    """V(s) = values[s], written to state_value."""
    return ValueOperator(Table(np.asarray(values, dtype=np.float64)[:, None]), in_keys=["observation"])


def actor_table(actor: ProbabilisticActor) -> torch.Tensor:
    return actor.module[0].module.table


def critic_table(critic: ValueOperator) -> torch.Tensor:
    return critic.module.table


def ids(states: Any) -> torch.Tensor:
    """State ids as float observations with a trailing feature dimension."""
    return torch.as_tensor(np.asarray(states), dtype=torch.float32).unsqueeze(-1)


def column(x: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype).unsqueeze(-1)


def policy_batch(
    states: Sequence[int],
    actions: Sequence[int],
    logp_old: Sequence[float],
    advantage: Sequence[float],
    value_target: Sequence[float] | None = None,
    old_value: Sequence[float] | None = None,
) -> TensorDict:
    """A flat batch of n samples, advantages already written (what the loss reads)."""
    data: dict[str, torch.Tensor] = {
        "observation": ids(states),
        "action": torch.as_tensor(list(actions), dtype=torch.int64),
        "action_log_prob": torch.as_tensor(np.asarray(logp_old), dtype=torch.float32),
        "advantage": column(advantage),
    }
    if value_target is not None:
        data["value_target"] = column(value_target)
    if old_value is not None:
        data["state_value"] = column(old_value)
    return TensorDict(data, batch_size=[len(states)])


def loss_outputs(params: LossParams, actor: Any, critic: Any, batch: TensorDict) -> TensorDict:
    """make_loss(params, actor, critic) applied to ``batch``."""
    return make_loss(params, actor, critic)(batch)


def rollout_batch(
    obs: Any,
    next_obs: Any,
    reward: Any,
    terminated: Any,
    truncated: Any,
    actions: Any | None = None,
    logp_old: Any | None = None,
) -> TensorDict:
    """A collector-shaped batch [N, T] (time last) with TorchRL's step keys.

    ``obs``/``next_obs`` are state ids (or feature arrays of shape [N, T, F]).
    """
    obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
    next_t = torch.as_tensor(np.asarray(next_obs), dtype=torch.float32)
    if obs_t.dim() == 2:
        obs_t, next_t = obs_t.unsqueeze(-1), next_t.unsqueeze(-1)
    term = column(terminated, torch.bool)
    trunc = column(truncated, torch.bool)
    shape = list(obs_t.shape[:2])
    data: dict[str, Any] = {
        "observation": obs_t,
        "next": {
            "observation": next_t,
            "reward": column(reward),
            "terminated": term,
            "truncated": trunc,
            "done": term | trunc,
        },
    }
    if actions is not None:
        data["action"] = torch.as_tensor(np.asarray(actions), dtype=torch.int64)
    if logp_old is not None:
        data["action_log_prob"] = torch.as_tensor(np.asarray(logp_old), dtype=torch.float32)
    return TensorDict(data, batch_size=shape)


def linear_layers(module: nn.Module) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The weights and biases of a module's Linear layers, in order, as NumPy arrays."""
    layers = [m for m in module.modules() if isinstance(m, nn.Linear)]
    weights = [m.weight.detach().double().numpy().copy() for m in layers]
    biases = [m.bias.detach().double().numpy().copy() for m in layers]
    return weights, biases
