"""PPO's clipped loss, as TorchRL builds it, from `LossParams`, an actor and a critic.

Nothing here knows the environment: ClipPPOLoss reads standard TensorDict keys (the
actor's and critic's inputs, ``action``, ``action_log_prob``, ``advantage``,
``value_target``), so token-level RLHF reuses it as-is.
"""

from __future__ import annotations

from tensordict.nn import TensorDictModule
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import ClipPPOLoss

from ppo_torchrl.core.devices import module_device
from ppo_torchrl.core.params import LossParams


def make_loss(
    params: LossParams,
    actor: ProbabilisticActor,
    critic: TensorDictModule | None,
) -> ClipPPOLoss:
    """ClipPPOLoss with the given epsilon (or low and high epsilons), coefficients and advantage
    normalisation, its own buffers (epsilons, coefficients) on the actor's device.

    ``critic=None`` gives a critic-free loss (e.g. GRPO, whose advantages come from
    elsewhere); the caller then writes ``advantage`` into the batch itself.

    Many seeds in one program use core/functional.py's `loss_terms` instead: the same
    formulas as pure tensor functions (specs/test_independent_seeds.py holds them equal).
    """
    high = params.clip_epsilon_high
    loss = ClipPPOLoss(
        actor,
        critic,
        # A (low, high) tuple is TorchRL's asymmetric clip: log-ratio clamped to
        # [log(1 - low), log(1 + high)].
        clip_epsilon=params.clip_epsilon if high is None else (params.clip_epsilon, high),
        entropy_bonus=True,
        entropy_coeff=params.entropy_coef,
        critic_coeff=params.critic_coef if critic is not None else None,
        # TorchRL's "l2" is the squared error without the 1/2 factor of the PPO paper.
        loss_critic_type=params.critic_loss,
        normalize_advantage=params.normalize_advantage,
        # An explicit float: TorchRL refuses clip_value=True beside an asymmetric tuple.
        clip_value=params.clip_epsilon if params.clip_value else None,
        # The loss reads the actor's and critic's own parameters instead of functional
        # copies swapped in on every call: PPO needs no target networks, and the swap
        # costs about a third of a small-network loss evaluation.
        functional=False,
    )
    return loss.to(module_device(actor))
