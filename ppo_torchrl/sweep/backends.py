"""Where a sweep's trials run: each a full ``python -m ppo_torchrl.train`` run in its own
process, a few at a time on this machine (`LocalPool`) or as Ray tasks on a local instance or
a cluster (`RayPool`).

A trial is a subprocess, not a function call, on both backends: it gets the exact
behaviour of the command line (signals, exit status, the one-line errors, its own torch
thread count and RNG), a crash in one trial cannot take the sweep down, and on Ray the same
task runs on any node that has the package installed. What comes back from a trial is its
exit status, its last line of output (the one-line error when it failed) and its
``--summary-json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.sweep.plan import Trial


def run_trial(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    log_path: str,
    started: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """One training run as a subprocess. Its output goes to ``log_path`` (or, where that
    folder does not exist, as on another Ray node, is kept and returned). A stop request
    (KeyboardInterrupt, which is also how Ray cancels a task) is passed on as one SIGTERM:
    the run writes a checkpoint and ends its MLflow run KILLED. ``started`` is handed the
    process (the local pool signals it directly)."""
    _interruptible()
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        local_log = Path(log_path).parent.is_dir()
        log_file = Path(log_path) if local_log else Path(tmp) / "trial.log"
        cmd = [sys.executable, "-m", "ppo_torchrl.train", *argv, "--summary-json", str(summary_path)]
        with log_file.open("w") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                cwd=cwd if os.path.isdir(cwd) else None,
                start_new_session=True,  # a terminal's Ctrl-C reaches the sweep, which passes it on once
            )
            if started is not None:
                started(proc)
            try:
                # Polled, not proc.wait(): Ray cancels a task by raising KeyboardInterrupt in its
                # thread, which a thread blocked in waitpid() would never see.
                while (code := proc.poll()) is None:
                    time.sleep(0.2)
            except BaseException:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
                raise
        output = log_file.read_text(errors="replace")
        summary = json.loads(summary_path.read_text()) if code == 0 and summary_path.exists() else None
    lines = [line for line in output.splitlines() if line.strip()]
    return {
        "exit_code": code,
        "last_line": lines[-1] if lines else "",
        "summary": summary,
        "output": None if local_log else output[-200_000:],
    }


def _interruptible() -> None:
    """Let KeyboardInterrupt reach this thread. Ray cancels a task by simulating SIGINT, which
    Python ignores where SIGINT was ignored at start-up: a Ray instance started from a
    background job (``cmd &``, nohup) hands that to all its workers."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) in (
        signal.SIG_IGN,
        None,
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


class LocalPool:
    """Trials as subprocesses of this machine, at most ``workers`` at once."""

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(workers)
        self.pending: dict[Future, Trial] = {}
        self.procs: list[Any] = []

    @property
    def running(self) -> int:
        return len(self.pending)

    def submit(self, trial: Trial, args: tuple) -> None:
        self.pending[self.executor.submit(run_trial, *args, started=self.procs.append)] = trial

    def finished(self, timeout: float) -> list[tuple[Trial, dict[str, Any]]]:
        done, _ = wait(self.pending, timeout=timeout, return_when=FIRST_COMPLETED)
        return [(self.pending.pop(f), f.result()) for f in done]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class RayPool:
    """Trials as Ray tasks (each still a subprocess) on a local Ray instance, or on the
    cluster at RAY_ADDRESS; each task reserves the CPUs its trial's torch threads use."""

    def __init__(self, cpus_per_trial: int) -> None:
        import ray

        address = os.environ.get("RAY_ADDRESS") or None
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": "warning",
        }
        if address is None:
            from ppo_torchrl.run.ray_env import local_runtime_env

            options["runtime_env"] = local_runtime_env()
        try:
            ray.init(address=address, **options)
        except ConnectionError as err:
            raise ConfigError(f"backend: {err}") from None
        self.ray = ray
        self.task = ray.remote(num_cpus=cpus_per_trial, max_retries=0)(run_trial)
        self.pending: dict[Any, Trial] = {}

    @property
    def running(self) -> int:
        return len(self.pending)

    def submit(self, trial: Trial, args: tuple) -> None:
        self.pending[self.task.remote(*args)] = trial

    def finished(self, timeout: float) -> list[tuple[Trial, dict[str, Any]]]:
        done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            trial = self.pending.pop(ref)
            try:
                out.append((trial, self.ray.get(ref)))
            except self.ray.exceptions.TaskCancelledError:  # stop(): the trial got its SIGTERM
                out.append((trial, {"exit_code": 143, "last_line": "stopped by the sweep", "summary": None}))
            except self.ray.exceptions.RayTaskError as err:
                line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
                out.append((trial, {"exit_code": None, "last_line": line, "summary": None, "output": None}))
        return out

    def stop(self) -> None:
        for ref in self.pending:
            self.ray.cancel(ref)  # KeyboardInterrupt in run_trial: its run gets one SIGTERM

    def close(self) -> None:
        self.ray.shutdown()
