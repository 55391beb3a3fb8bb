"""The PPO core's parameter objects: one small, validated dataclass per factory.

    make_advantage(GAEParams(gamma, lam), critic)
    make_loss(LossParams(clip_epsilon, ...), actor, critic)
    make_update(UpdateParams(epochs, minibatch_size, max_grad_norm, lr), loss, advantage)

They hold the algorithm's numbers and nothing else: no env id, no frame budget, no
tracking flag, no device (the modules live on the device of the networks they are given).

Each number has one default, stated once. Where every user agrees (lambda, the loss weights,
the value-loss kind, advantage normalisation) it is here, and the trainer's `PPOConfig` and
`RLHFConfig` take it (``field_like`` without a value). Where they differ for a measured
reason (gamma, the clip range, the optimisation schedule) there is none here
(``REQUIRED``): each config states its own once, with the reason beside it, and
``cfg.params(LossParams)`` builds the object. Importing this module loads no torch, so
configs that produce these objects stay cheap to validate.
"""

from __future__ import annotations

from dataclasses import dataclass

from ppo_torchrl.fields import REQUIRED, Config, config_field


@dataclass(frozen=True)
class GAEParams(Config):
    """Generalized Advantage Estimation."""

    gamma: float = config_field(REQUIRED, "discount factor", min=0.0, max=1.0)
    lam: float = config_field(
        0.95, "GAE lambda: 0 gives the TD error, 1 the Monte-Carlo return", min=0.0, max=1.0
    )
    single_value_call: bool = config_field(
        False,
        "value the T observations and the T next ones in one critic call over T + 4 (TorchRL's "
        "shifted GAE, exact at time limits): half the critic's work, for costly critics (a CNN)",
    )


@dataclass(frozen=True)
class LossParams(Config):
    """The clipped surrogate objective, the value loss and the entropy bonus."""

    clip_epsilon: float = config_field(REQUIRED, "PPO clip range epsilon, in (0, 1)", gt=0.0, lt=1.0)
    clip_epsilon_high: float | None = config_field(
        None,
        "upper clip range: the ratio is clipped to [1 - clip_epsilon, 1 + clip_epsilon_high], DAPO's "
        "clip higher, which leaves room for unlikely tokens to gain probability (none: symmetric)",
        gt=0.0,
    )
    entropy_coef: float = config_field(0.0, "weight of the entropy bonus", min=0.0)
    critic_coef: float = config_field(0.5, "weight of the value loss", min=0.0)
    critic_loss: str = config_field(
        "l2", "value loss: 'l2' (squared error), 'smooth_l1' or 'l1'", choices=("l2", "smooth_l1", "l1")
    )
    clip_value: bool = config_field(False, "clip the value loss around the old values by clip_epsilon")
    normalize_advantage: bool = config_field(True, "standardise advantages in each minibatch")


@dataclass(frozen=True)
class UpdateParams(Config):
    """Epochs of shuffled minibatch gradient steps over one collected batch."""

    epochs: int = config_field(REQUIRED, "passes over each collected batch", min=1)
    minibatch_size: int = config_field(REQUIRED, "steps per gradient step", min=1)
    max_grad_norm: float = config_field(REQUIRED, "gradient-norm clip (0 disables)", min=0.0)
    lr: float = config_field(REQUIRED, "Adam learning rate", gt=0.0)
    target_kl: float | None = config_field(
        REQUIRED,
        "stop the update's epochs early once a minibatch's KL(pi_old || pi) estimate (k3) exceeds "
        "1.5 x target_kl, as SB3 does (none: always run every epoch)",
        gt=0.0,
    )
