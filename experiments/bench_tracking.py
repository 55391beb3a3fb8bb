"""What tracking costs training: the default CartPole-v1 run, untracked and tracked.

    .venv/bin/python experiments/bench_tracking.py [--seeds 8] [-- extra train flags]

Each seed runs ``python -m ppo_torchrl.train --frames 100000 --no-stop-when-solved`` (the
whole budget, so every run does the same work) in three ways: ``--no-track``; tracked to a
SQLite file; tracked to a real ``mlflow server`` on loopback (system metrics on, the
default). The figure is the summary's ``train_seconds`` (learning only: start-up and
evaluation are off that clock). A seed trains identically in every mode, so each tracked
run is divided by the untracked run of the same seed (the paired ratio); the result is the
median of those ratios. Modes are interleaved and rotated per seed. Nothing else should run
meanwhile: there are only 2 cores, and the server shares them.
Writes experiments/results/tracking.json (``--out`` for another file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "tracking.json"
RUN = ["--frames", "100000", "--no-stop-when-solved"]
FLAGS: list[str] = []  # the command line's extra train flags


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(root: Path, nice: int = 0) -> tuple[subprocess.Popen, str]:
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    args = ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    args += [
        "--backend-store-uri",
        f"sqlite:///{root / 'backend.db'}",
        "--artifacts-destination",
        str(root / "a"),
    ]
    # `nice`: the server's own work (SQL writes, HTTP) then takes only cycles training leaves
    # idle, as on a tracking server that runs on another machine.
    prefix = ["nice", "-n", str(nice)] if nice else []
    proc = subprocess.Popen(
        [*prefix, str(mlflow_cli), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    uri = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not start")


def train_seconds(seed: int, folder: Path, uri: str | None, extra: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = [*RUN, *FLAGS, "--seed", str(seed), "--summary-json", "s.json", *extra]
    if uri is None:
        args.append("--no-track")
    else:
        env["MLFLOW_TRACKING_URI"] = uri
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "ppo_torchrl.train", *args],
        cwd=folder,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return json.loads((folder / "s.json").read_text())["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per mode (default: 3)")
    parser.add_argument("--out", default=str(RESULTS), help=f"results file (default: {RESULTS})")
    parser.add_argument(
        "--modes", default="untracked,sqlite,server", help="comma-separated subset of untracked,sqlite,server"
    )
    parser.add_argument(
        "--server-nice",
        type=int,
        default=0,
        help="run the server at this nice level (default 0: shares the cores)",
    )
    parser.add_argument("flags", nargs="*", help="extra train flags for every run (after --)")
    args = parser.parse_args()
    FLAGS.extend(args.flags)
    root = Path(tempfile.mkdtemp(prefix="bench_tracking-"))
    server, server_uri = start_server(root / "server", args.server_nice)
    modes: dict[str, tuple[str | None, list[str]]] = {
        "untracked": (None, []),
        "sqlite": (f"sqlite:///{root / 'mlflow.db'}", []),
        "server": (server_uri, []),
    }
    modes = {m: modes[m] for m in args.modes.split(",")}
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    try:
        names = list(modes)
        for seed in range(args.seeds):  # modes interleaved and rotated: drift hits all alike
            for mode in names[seed % len(names) :] + names[: seed % len(names)]:
                uri, extra = modes[mode]
                seconds[mode].append(train_seconds(seed, root / mode / str(seed), uri, extra))
                print(f"seed {seed} {mode}: {seconds[mode][-1]:.2f} s", flush=True)
    finally:
        server.terminate()
    # A seed trains identically in every mode (tracking draws no random numbers), so each
    # tracked run is compared with the untracked run of its own seed: the paired ratio.
    paired = {m: [t / u for t, u in zip(v, seconds["untracked"], strict=True)] for m, v in seconds.items()}
    result: dict[str, Any] = {
        "command": "python -m ppo_torchrl.train " + " ".join(RUN) + " " + " ".join(args.flags),
        "server_nice": args.server_nice,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "train_seconds": seconds,
        "median": {m: statistics.median(v) for m, v in seconds.items()},
        "paired_ratio": paired,
        "median_paired_ratio": {m: statistics.median(v) for m, v in paired.items()},
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for mode, ratio in result["median_paired_ratio"].items():
        print(f"{mode}: median {result['median'][mode]:.2f} s, median paired ratio x{ratio:.3f}")


if __name__ == "__main__":
    main()
