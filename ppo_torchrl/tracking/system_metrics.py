"""MLflow's system metrics for a run: CPU, memory, disk and network (GPU with nvidia-ml-py).

MLflow samples them on a thread of its own and logs them as ``system/...`` metrics, which
its UI shows in a "System metrics" tab. Two things are added here: its start-up chatter and
outage warnings go (the run's own lines say what is on, and when the server is away), and a
run that ends between two samples still logs the sample in hand, so even a short run shows
what the machine was doing. A resumed run
continues the step count where the interrupted one stopped.
"""

from __future__ import annotations

import logging
import threading
import time

from ppo_torchrl.fields import ConfigError

EXTRA = "pip install psutil"


def check_system_metrics() -> None:
    """MLflow's monitors need psutil (a dependency of this package; gone only if removed)."""
    try:
        import psutil  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"system_metrics: needs psutil, not installed: {EXTRA} (or --no-system-metrics)"
        ) from None


class SystemMetrics:
    """Start on construction; `finish` logs the pending sample and stops the thread."""

    def __init__(self, run_id: str, tracking_uri: str, interval: float, resume: bool = False) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # Its start-up lines go; so does its warning when the server stops answering (the
        # run's tracking writer says that once, for everything).
        for name in ("mlflow.system_metrics", "mlflow.system_metrics.system_metrics_monitor"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.monitor = SystemMetricsMonitor(
            run_id, sampling_interval=interval, resume_logging=resume, tracking_uri=tracking_uri
        )
        self.monitor.start()

    def finish(self, timeout: float = 5.0) -> None:
        """Stop within about ``timeout`` s whatever the server does: the last sample is sent
        from a thread of its own, and a thread still inside a request after that (a server
        that does not answer) is left to end on its own (a daemon), its sample dropped."""
        monitor = self.monitor
        if monitor._process is None:
            return
        started = time.monotonic()
        monitor._shutdown_event.set()
        monitor._process.join(timeout)
        alive = monitor._process.is_alive()
        monitor._process = None
        if alive:
            return

        def publish_last() -> None:
            try:  # MLflow's loop drops a sample taken before the stop: log it, if the store is there
                pending = monitor.aggregate_metrics()
                if pending:
                    monitor.publish_metrics(pending)
                monitor.mlflow_logger.flush()
            except Exception:
                pass  # the run's tracking writer reports an unreachable store

        last = threading.Thread(target=publish_last, name="system-metrics-last", daemon=True)
        last.start()
        last.join(max(0.0, timeout - (time.monotonic() - started)))
