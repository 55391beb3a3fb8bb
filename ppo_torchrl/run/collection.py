"""Where batches come from: this process, worker processes, or a Ray cluster.

All three are TorchRL collectors, picked by ``cfg.collector``:

- ``single``: ``Collector(env, actor)`` in this process (the default, and the fastest on a
  small machine: nothing crosses a process boundary).
- ``processes``: ``Collector(env_fns, actor, num_collectors=N, sync=True)``, TorchRL's
  multi-process collector. Each worker steps ``num_envs / N`` envs with its own copy of
  the policy; pays off when stepping the env costs more than moving the batch.
- ``ray``: TorchRL's ``RayCollector``, one Ray actor per worker, on a local Ray instance
  or on the cluster at ``cfg.ray_address`` (or ``RAY_ADDRESS``).

Whatever the backend, a batch is ``[num_envs, rollout_steps]`` with the envs in worker
order, so the trainer, GAE and the episode bookkeeping cannot tell them apart. Workers are
synchronous (every batch holds exactly ``frames_per_batch`` frames, all from the current
weights) and get the new weights after every update. Worker ``i`` seeds torch (its policy's
sampling) and its envs from ``seed + i * envs_per_worker``: the envs get the same seeds as
in a single collector, and a run is repeatable. What a worker cannot do is hand its envs'
state to a checkpoint, so on these backends the episodes in flight restart on resume.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase

from ppo_torchrl.envs.factory import make_env
from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.ray_env import local_runtime_env


def _worker_env(env_id: str, num_envs: int, seed: int, backend: str, env_kwargs: dict[str, Any]) -> EnvBase:
    """Runs in a worker: its envs, and its policy's sampling seeded, from ``seed``."""
    torch.manual_seed(seed)
    return make_env(env_id, num_envs, seed=seed, backend=backend, env_kwargs=env_kwargs)


class Collection:
    """A TorchRL collector of the kind ``cfg.collector`` names, yielding
    ``[num_envs, rollout_steps]`` batches on ``device``.

    ``env`` is the in-process env of the single collector (its state goes into checkpoints);
    the other backends build theirs in the workers, and ``env`` is None.
    """

    def __init__(self, cfg: PPOConfig, actor: Any, device: torch.device, env: EnvBase | None) -> None:
        self.cfg, self.device, self.env = cfg, device, env
        common = {
            "frames_per_batch": cfg.frames_per_batch,
            "auto_register_policy_transforms": False,
        }
        if cfg.collector == "single":
            assert env is not None
            on_cpu = device.type == "cpu" and env.device in (None, device)
            self.collector: Any = Collector(
                env,
                actor,
                total_frames=-1,  # the trainer enforces the frame and episode budgets
                track_traj_ids=False,  # unused here, and ~10% of collection time
                # The policy steps where its weights are; batches are stored there for the update.
                **({} if on_cpu else {"policy_device": device, "storing_device": device}),
                **common,
            )
            return
        n = cfg.collectors
        per_worker = cfg.num_envs // n
        env_fns = [
            partial(
                _worker_env, cfg.env, per_worker, cfg.seed + i * per_worker, cfg.env_backend, cfg.env_kwargs
            )
            for i in range(n)
        ]
        # Workers run the policy on the CPU next to their envs; batches come back to the CPU.
        workers = {"policy_device": "cpu", "env_device": "cpu", "storing_device": "cpu"}
        if cfg.collector == "processes":
            self.collector = Collector(
                env_fns,
                actor,
                num_collectors=n,
                sync=True,
                cat_results=0,  # [envs_1 + envs_2 + ..., T]: the env dimension, in worker order
                total_frames=-1,
                # TorchRL sets this process's torch threads (default: cores - workers); keep ours.
                **({"num_threads": cfg.torch_threads} if cfg.torch_threads else {}),
                **workers,
                **common,
            )
        else:
            try:
                self.collector = self._ray(env_fns, actor, workers)
            except ConnectionError as err:  # a cluster that answered the port check but not Ray
                hint = (
                    ""
                    if os.environ.get("RAY_AUTH_MODE")
                    else (
                        " (a cluster with token authentication, as `ray start --head` makes when "
                        "~/.ray/auth_token exists, needs RAY_AUTH_MODE=token here)"
                    )
                )
                raise ConfigError(f"collector: {err}{hint}") from None

    def _ray(self, env_fns: list[Any], actor: Any, workers: dict[str, str]) -> Any:
        cfg = self.cfg
        return Collector(
            env_fns,
            actor,
            backend="ray",
            num_collectors=cfg.collectors,
            sync=True,
            total_frames=2**62,  # RayCollector stops at once on -1; the trainer stops it
            ray_init_config=_ray_init_config(cfg.ray_address),
            remote_configs={"num_cpus": 1, "num_gpus": 0},
            frames_per_batch=cfg.frames_per_batch,
            collector_kwargs={"track_traj_ids": False, "auto_register_policy_transforms": False, **workers},
        )

    def batches(self) -> Iterator[TensorDictBase]:
        self.sync_weights()  # the workers start from these weights (a resumed run's, too)
        for batch in self.collector:
            if batch.ndim == 3:  # Ray stacks the workers' [envs, T] batches: [workers, envs, T]
                batch = batch.reshape(-1, batch.shape[-1])
            yield batch.to(self.device) if self.env is None else batch

    def sync_weights(self) -> None:
        """Send the policy's new weights (and observation statistics) to the workers."""
        if self.env is None:
            self.collector.update_policy_weights_()

    def reset(self) -> None:
        """Start the in-process envs anew (after a checkpoint restored their state)."""
        if self.env is not None:
            self.collector.reset()

    def shutdown(self) -> None:
        self.collector.shutdown()
        # TorchRL 0.14's multi-process collector leaves its weight-sync schemes to __del__,
        # which at interpreter exit starts a queue thread and hangs: end them here instead.
        for scheme in (getattr(self.collector, "_weight_sync_schemes", None) or {}).values():
            scheme.shutdown()


def _ray_init_config(address: str | None) -> dict[str, Any]:
    """``ray.init`` arguments: the given cluster, else RAY_ADDRESS, else a local instance
    whose workers can import what this process imports (an env's ``module:`` included)."""
    from torchrl.collectors.distributed.ray import DEFAULT_RAY_INIT_CONFIG

    address = address or os.environ.get("RAY_ADDRESS", "")
    config = {
        **DEFAULT_RAY_INIT_CONFIG,
        "address": address or None,
        "include_dashboard": False,
        "log_to_driver": False,  # workers' own logs stay in Ray's session folder
        "logging_level": "warning",
        "ignore_reinit_error": True,
    }
    if not address:
        config["runtime_env"] = local_runtime_env()
    return config
