"""Policy and value networks: a ProbabilisticActor and a ValueOperator over separate MLPs.

Both read ``observation``. The actor writes ``action`` and ``action_log_prob`` (the key
ClipPPOLoss reads); the critic writes ``state_value``. Discrete action spaces get a
Categorical over logits; continuous Box spaces a TanhNormal squashed into the bounds,
with a state-independent scale (as in the PPO paper's continuous-control setup).
The networks are initialised on the CPU (so a seed gives the same weights everywhere) and
then moved to the device asked for.
"""

from __future__ import annotations

import math

import torch
from tensordict.nn import AddStateIndependentNormalScale, TensorDictModule
from torch import nn
from torchrl.data import Categorical, OneHot, TensorSpec
from torchrl.envs import EnvBase
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _mlp(
    in_features: int, out_features: int, hidden: tuple[int, ...], activation: str, out_gain: float
) -> MLP:
    """MLP with orthogonal init: sqrt(2) gain inside, ``out_gain`` on the last layer.

    A small output gain (0.01 for the policy) starts the policy near uniform, which the
    PPO implementation-details study (Huang et al., 2022) found matters for stability.
    """
    net = MLP(
        in_features=in_features,
        out_features=out_features,
        num_cells=list(hidden),
        activation_class=ACTIVATIONS[activation],
    )
    layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
    for i, layer in enumerate(layers):
        nn.init.orthogonal_(layer.weight, gain=out_gain if i == len(layers) - 1 else math.sqrt(2))
        nn.init.zeros_(layer.bias)
    return net


def observation_size(env: EnvBase) -> int:
    shape = env.observation_spec_unbatched["observation"].shape
    return int(shape[-1]) if len(shape) else 1


def make_actor_critic(
    env: EnvBase,
    *,
    hidden_sizes: tuple[int, ...] = (64, 64),
    activation: str = "tanh",
    device: torch.device | str | None = None,
) -> tuple[ProbabilisticActor, ValueOperator]:
    """Build the policy and the value function for ``env``'s observation and action specs,
    on ``device`` (default CPU). Weights are drawn from torch's global generator: seed it
    first for reproducible networks."""
    device = torch.device(device or "cpu")
    n_obs = observation_size(env)
    # Unbatched: the modules must not depend on how many envs run side by side.
    action_spec: TensorSpec = env.full_action_spec_unbatched["action"].to(device)
    if isinstance(action_spec, (Categorical, OneHot)):
        n_actions = int(action_spec.space.n)
        net = _mlp(n_obs, n_actions, hidden_sizes, activation, out_gain=0.01)
        module = TensorDictModule(net, in_keys=["observation"], out_keys=["logits"])
        actor = ProbabilisticActor(
            module,
            in_keys=["logits"],
            spec=action_spec,
            distribution_class=torch.distributions.Categorical,
            # Logits straight from the MLP are always valid; skipping torch's argument
            # checks saves a quarter of each policy call while collecting.
            distribution_kwargs={"validate_args": False},
            return_log_prob=True,
        )
    else:
        n_act = int(action_spec.shape[-1])
        net = nn.Sequential(
            _mlp(n_obs, n_act, hidden_sizes, activation, out_gain=0.01),
            AddStateIndependentNormalScale(n_act, scale_lb=1e-4),
        )
        module = TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"])
        actor = ProbabilisticActor(
            module,
            in_keys=["loc", "scale"],
            spec=action_spec,
            distribution_class=TanhNormal,
            distribution_kwargs={
                "low": action_spec.space.low,
                "high": action_spec.space.high,
                "tanh_loc": False,
            },
            return_log_prob=True,
        )
    critic = ValueOperator(_mlp(n_obs, 1, hidden_sizes, activation, out_gain=1.0), in_keys=["observation"])
    return actor.to(device), critic.to(device)
