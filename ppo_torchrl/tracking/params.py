"""TrackingParams: what every tracked entry point tells the tracker, one small parameter object.

`PPOConfig` and `RLHFConfig` compose it: each declares these fields with ``field_like`` (so a
flag, its help, its bounds and its default are written here once) and hands the tracker
``cfg.params(TrackingParams)``. The tracker never sees the config that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ppo_torchrl.fields import REQUIRED, Config, config_field


@dataclass(frozen=True)
class TrackingParams(Config):
    track: bool = config_field(True, "log the run to MLflow (MLFLOW_TRACKING_URI, or ./mlflow.db)")
    # No default: training and RLHF keep their runs in experiments of their own.
    experiment: str = config_field(REQUIRED, "MLflow experiment name")
    tracking_timeout: int = config_field(
        10, "seconds an MLflow HTTP request may take (MLflow's own default: 120)", min=1
    )
    tracking_retries: int = config_field(
        2, "retries of a failed MLflow HTTP request, 1 s apart, doubling (MLflow's default: 7)", min=0
    )
    tracking_end_timeout: float = config_field(
        30.0,
        "seconds the end of a run waits for tracking to catch up; what is left waits in the run "
        "folder's tracking.jsonl for `python -m ppo_torchrl.track sync`",
        min=0.0,
    )
    system_metrics: bool = config_field(
        True, "log MLflow's system metrics (CPU, memory, disk, network; GPU with nvidia-ml-py) while tracking"
    )
    system_metrics_interval: float = config_field(
        10.0, "seconds between system-metric samples (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL wins)", gt=0.0
    )
