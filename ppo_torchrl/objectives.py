"""PPO's two estimators, as TorchRL builds them: GAE advantages and the clipped loss.

Nothing here knows the environment: both modules read standard TensorDict keys
(``observation``, ``action``, ``action_log_prob``, ``("next", "reward")``,
``("next", "terminated")``, ``("next", "done")``), so token-level RLHF reuses them as-is.
"""

from __future__ import annotations

from tensordict.nn import TensorDictModule
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from ppo_torchrl.config import PPOConfig


def make_advantage(cfg: PPOConfig, critic: TensorDictModule) -> GAE:
    """GAE(gamma, lambda) over the critic.

    TorchRL's GAE cuts the bootstrap on ``terminated`` and the recursion on ``done``, so a
    time-limit truncation bootstraps from V(final observation) instead of treating the
    cut-off as the end of the world. ``vectorized=False`` takes the exact recursion: the
    vectorized path (TorchRL 0.14) truncates the (gamma*lambda)^k series one term early
    and fails outright for lambda = 0, while being no faster at PPO batch sizes
    (specs/test_gae.py holds both cases).
    """
    return GAE(
        gamma=cfg.gamma,
        lmbda=cfg.lam,
        value_network=critic,
        average_gae=False,
        vectorized=False,
    )


def make_loss(cfg: PPOConfig, actor: ProbabilisticActor, critic: TensorDictModule | None) -> ClipPPOLoss:
    """ClipPPOLoss with the config's epsilon, coefficients and advantage normalisation.

    ``critic=None`` gives a critic-free loss (e.g. GRPO, whose advantages come from
    elsewhere); the caller then writes ``advantage`` into the batch itself.
    """
    return ClipPPOLoss(
        actor,
        critic,
        clip_epsilon=cfg.clip_epsilon,
        entropy_bonus=True,
        entropy_coeff=cfg.entropy_coef,
        critic_coeff=cfg.critic_coef if critic is not None else None,
        # TorchRL's "l2" is the squared error without the 1/2 factor of the PPO paper.
        loss_critic_type=cfg.critic_loss,
        normalize_advantage=cfg.normalize_advantage,
        clip_value=cfg.clip_epsilon if cfg.clip_value else None,
        # The loss reads the actor's and critic's own parameters instead of functional
        # copies swapped in on every call: PPO needs no target networks, and the swap
        # costs about a third of a small-network loss evaluation.
        functional=False,
    )
