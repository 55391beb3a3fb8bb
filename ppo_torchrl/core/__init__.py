"""The PPO core: GAE advantages, the clipped loss and the update loop, each built by a
factory from a small parameter object. It is what token-level RLHF reuses unchanged, and
it imports nothing from the rest of the package but `ppo_torchrl.fields`.

    from ppo_torchrl.core import GAEParams, LossParams, UpdateParams
    from ppo_torchrl.core import make_advantage, make_loss, make_update

Names are imported on first use: the parameter objects load no torch.
"""

from __future__ import annotations

from ppo_torchrl.lazy import lazy_exports

_EXPORTS = {
    "GAEParams": "params",
    "LossParams": "params",
    "UpdateParams": "params",
    "make_advantage": "advantage",
    "make_loss": "loss",
    "NonFiniteError": "update",
    "PPOUpdate": "update",
    "make_optimizer": "update",
    "make_update": "update",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
