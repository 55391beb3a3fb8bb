"""GAE advantages, as TorchRL builds them, from `GAEParams` and a critic.

Nothing here knows the environment: GAE reads standard TensorDict keys (the critic's
inputs, ``("next", "reward")``, ``("next", "terminated")``, ``("next", "done")``) and writes
``advantage`` and ``value_target``, so token-level RLHF reuses it as-is.
"""

from __future__ import annotations

from tensordict.nn import TensorDictModule
from torchrl.objectives.value import GAE

from ppo_torchrl.core.devices import module_device
from ppo_torchrl.core.params import GAEParams

SHIFTED_BUDGET = 4


def make_advantage(params: GAEParams, critic: TensorDictModule) -> GAE:
    """GAE(gamma, lambda) over the critic, with its buffers on the critic's device.

    TorchRL's GAE cuts the bootstrap on ``terminated`` and the recursion on ``done``, so a
    time-limit truncation bootstraps from V(final observation) instead of treating the
    cut-off as the end of the world. ``vectorized=False`` takes the exact recursion: the
    vectorized path (TorchRL 0.14) truncates the (gamma*lambda)^k series one term early
    and fails outright for lambda = 0, while being no faster at PPO batch sizes
    (specs/test_gae.py holds both cases).

    ``single_value_call`` values ``observation[0..T-1]`` and the last ``("next", ...)`` in one
    call, with the true final observation of each time-limit truncation inserted (up to
    ``SHIFTED_BUDGET - 1`` a rollout per env before later steps are marked invalid in
    ``shifted_valid``, which PPOUpdate leaves out; terminations cost nothing).
    """
    return GAE(
        gamma=params.gamma,
        lmbda=params.lam,
        value_network=critic,
        average_gae=False,
        vectorized=False,
        device=module_device(critic),
        shifted=params.single_value_call,
        shifted_budget=SHIFTED_BUDGET,
    )
