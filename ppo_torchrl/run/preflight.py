"""Checks before a training run starts: everything a run will need that can be known to be
missing now, each refused in one line (ConfigError) before torch trains a step or a store
gets a run. The train command runs them once; a sweep runs them for every trial it plans.

Nothing here builds a trainer: the checks import only what they check (Ray, psutil, imageio,
the env's registration, the device), so that `sweep` can plan trials without the training code.
"""

from __future__ import annotations

import os
import socket

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.config import PPOConfig

DISTRIBUTED = "pip install 'ppo_torchrl[distributed]'"
# field: why the many-seeds program refuses it (one line each)
NOT_WITH_MANY_SEEDS = {
    "normalize_observations": "observation statistics are not stacked per seed",
    "normalize_rewards": "reward statistics are not stacked per seed",
    "video": "record one seed afterwards: python -m ppo_torchrl.evaluate CKPT --seed-index K --video out.gif",
    "episodes": "the budget is frames (every seed runs the same number)",
}


def uses_program(cfg: PPOConfig) -> bool:
    """Whether ``cfg`` trains on the program route (run/learners.py): a torch-native env,
    stepped in this process, with nothing the program lacks (observation or reward statistics)."""
    from ppo_torchrl.envs.factory import TORCH_NATIVE_ENVS

    return (
        cfg.env in TORCH_NATIVE_ENVS
        and not cfg.env_kwargs
        and cfg.env_backend != "gymnasium"
        and cfg.collector == "single"
        and not (cfg.normalize_observations or cfg.normalize_rewards)
    )


def env_wrappers(cfg: PPOConfig) -> str | None:
    """What wraps the env beyond gymnasium's own (Atari's preprocessing), for ``--dry-run``."""
    from ppo_torchrl.envs import atari
    from ppo_torchrl.envs.gym_envs import env_spec

    return atari.describe(training=True) if atari.is_atari(env_spec(cfg.env)) else None


def check_run(cfg: PPOConfig) -> None:
    """Every check below, cheapest first."""
    check_outputs(cfg)
    if cfg.num_seeds:
        check_seeds_config(cfg)
    elif cfg.compile and not uses_program(cfg):
        raise ConfigError(
            "compile: compiles the program route (CartPole-v1 or Acrobot-v1 in this process, without "
            f"--normalize-*); {cfg.env} with these options trains on TorchRL's Collector (drop --compile)"
        )
    from ppo_torchrl.device import resolve_device
    from ppo_torchrl.envs.factory import backend_for

    backend_for(cfg.env, cfg.env_backend, cfg.env_kwargs)  # the env id, its extra, its kwargs
    check_collector(cfg)
    device = resolve_device(cfg.device)
    if cfg.cudagraphs and device.type != "cuda":
        raise ConfigError(
            f"cudagraphs: CUDA graphs need a CUDA device; this run is on {device.type} (drop --cudagraphs)"
        )


def check_outputs(cfg: PPOConfig) -> None:
    """What the end of the run will need: registry names, system metrics, a renderable env."""
    if cfg.track and cfg.log_model:
        from ppo_torchrl.tracking.model import check_registry_names

        check_registry_names(cfg.register_model, cfg.model_alias)
    if cfg.track and cfg.system_metrics:
        from ppo_torchrl.tracking.system_metrics import check_system_metrics

        check_system_metrics()
    if cfg.video:  # renders a frame: headless from here on, before MuJoCo is first imported
        from ppo_torchrl.run.video import check_video

        check_video(cfg.env, cfg.env_kwargs, cfg.video_format)


def check_seeds_config(cfg: PPOConfig) -> None:
    """Where ``cfg`` asks for something many seeds in one program (``--num-seeds``) lack."""
    from ppo_torchrl.envs.factory import TORCH_NATIVE_ENVS as DYNAMICS

    if cfg.env not in DYNAMICS or cfg.env_kwargs or cfg.env_backend == "gymnasium":
        raise ConfigError(
            f"num_seeds: seeds as a batch need a torch-native env ({', '.join(DYNAMICS)}, no env_kwargs, "
            f"env_backend auto or torch); got {cfg.env!r}. Other envs: one run per seed "
            f"(python -m ppo_torchrl.sweep --seeds ...)"
        )
    for name, why in NOT_WITH_MANY_SEEDS.items():
        if getattr(cfg, name):
            raise ConfigError(
                f"num_seeds: --{name.replace('_', '-')} is not available with --num-seeds ({why})"
            )
    if cfg.collector != "single":
        raise ConfigError("num_seeds: the seeds' envs step in this process (--collector single)")


def check_collector(cfg: PPOConfig) -> None:
    """Ray installed and, for a cluster address, answering (cheap: nothing starts)."""
    if cfg.collector != "ray":
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError(f"collector: 'ray' needs Ray, which is not installed: {DISTRIBUTED}") from None
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS", "")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():  # ray.init retries an unreachable address for many minutes
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as err:
            raise ConfigError(
                f"collector: no Ray cluster answers at {address} ({err.strerror or type(err).__name__}); "
                "start one with `ray start --head`, fix --ray-address / RAY_ADDRESS, or leave both "
                "unset for a local instance"
            ) from None
