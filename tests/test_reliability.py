"""Reliability: atomic checkpoints, resume, determinism, the non-finite guard, concurrent
runs on one SQLite store, and a fuzzed command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from ppo_torchrl.cli.train import main as train_main
from ppo_torchrl.run.checkpoint import load_checkpoint, save_checkpoint
from ppo_torchrl.run.config import PPOConfig
from tests.conftest import all_runs

# Metrics that measure the machine, not the learning: excluded when histories are compared
# (so are MLflow's system/... metrics).
WALL_CLOCK = {"perf/frames_per_second"}


def histories(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(uri)
    keys = {k for k in client.get_run(run_id).data.metrics if not k.startswith("system/")} - WALL_CLOCK
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in sorted(keys)}


def cli(args: list[str], cwd: Path, uri: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.Popen(
        [sys.executable, "-m", "ppo_torchrl.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(path_glob: str, folder: Path, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(path_glob))
        if found:
            return found[0]
        time.sleep(0.02)
    raise TimeoutError(f"no {path_glob} under {folder}")


# --- atomic writes and unusable checkpoints -------------------------------------------------
def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch) -> None:
    from ppo_torchrl import PPOConfig, Trainer

    trainer = Trainer(PPOConfig(num_envs=2, rollout_steps=8, minibatch_size=16, track=False))
    trainer.progress.frames = 1
    path = save_checkpoint(tmp_path / "last.pt", trainer.state_dict())
    trainer.progress.frames = 2

    def torn_save(obj, handle) -> None:
        handle.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, trainer.state_dict())
    assert load_checkpoint(path)["progress"]["frames"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_unusable_checkpoint_to_resume_is_one_line_exit_2(content, store: str, capsys) -> None:
    path = Path("bad.pt")
    if content is not None:
        path.write_bytes(content)
    assert train_main(["--resume", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint" in err[0] and "bad.pt" in err[0]
    assert all_runs(store) == []


# --- interrupt, resume, determinism --------------------------------------------------------------
BATCH = PPOConfig().num_envs * PPOConfig().rollout_steps  # frames per update of the defaults
RUN = [
    "--seed",
    "3",
    "--frames",
    "12288",
    "--no-stop-when-solved",
    "--eval-every-frames",
    "4096",
    "--checkpoint-every-frames",
    "2048",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    proc = cli([*RUN, "--summary-json", "s.json"], folder, uri)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return uri, json.loads((folder / "s.json").read_text())["run_id"]


@pytest.mark.slow
def test_same_seed_gives_the_same_metric_history(uninterrupted, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = cli([*RUN, "--summary-json", "s.json"], tmp_path, uri)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    again = histories(uri, json.loads((tmp_path / "s.json").read_text())["run_id"])
    assert again == histories(*uninterrupted)
    assert len(again["loss/objective"]) == 12288 // BATCH


@pytest.mark.slow
def test_same_seed_gives_the_same_history_on_the_gymnasium_backend_too(tmp_path: Path) -> None:
    args = ["--env-backend", "gymnasium", "--frames", "4096", "--no-stop-when-solved", "--summary-json"]
    runs = []
    for name in ("a", "b"):
        uri = f"sqlite:///{tmp_path / name}.db"
        proc = cli([*args, f"{name}.json"], tmp_path, uri)
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
        runs.append(histories(uri, json.loads((tmp_path / f"{name}.json").read_text())["run_id"]))
    assert runs[0] == runs[1] and len(runs[0]["loss/objective"]) == 4096 // BATCH


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.slow
def test_interrupted_then_resumed_run_matches_the_uninterrupted_one(
    uninterrupted, tmp_path: Path, signum
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = cli(RUN, tmp_path, uri)
    wait_for("checkpoints/*/last.pt", tmp_path)  # at least one update done
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == 128 + signum, proc.stderr.read()
    [run] = all_runs(uri)
    assert run.info.status == "KILLED"
    last = wait_for("checkpoints/*/last.pt", tmp_path)
    assert load_checkpoint(last)["progress"]["frames"] < 12288
    resumed = cli(["--resume", str(last), "--summary-json", "s.json"], tmp_path, uri)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    [run] = all_runs(uri)  # the same MLflow run, continued
    assert run.info.status == "FINISHED"
    assert json.loads((tmp_path / "s.json").read_text())["run_id"] == run.info.run_id
    assert histories(uri, run.info.run_id) == histories(*uninterrupted)


@pytest.mark.slow
def test_a_second_signal_exits_at_once_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = cli([*RUN, "--frames", "500000", "--hidden-sizes", "256", "256"], tmp_path, uri)
    wait_for("checkpoints/*/last.pt", tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    [run] = all_runs(uri)
    assert run.info.status == "KILLED"
    state = load_checkpoint(wait_for("checkpoints/*/last.pt", tmp_path))
    assert state["progress"]["frames"] >= 2048


# --- non-finite guard -------------------------------------------------------------------------
class NanRewardCartPole(CartPoleEnv):
    """CartPole whose rewards turn NaN after a set number of steps (over all copies)."""

    steps = 0
    limit = 1800

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        NanRewardCartPole.steps += 1
        return obs, float("nan") if self.steps > self.limit else reward, terminated, truncated, info


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    store: str, capsys
) -> None:
    gym.register("NanRewardCartPole-v0", entry_point=NanRewardCartPole, max_episode_steps=500)
    NanRewardCartPole.steps = 0
    args = [
        "--env",
        "NanRewardCartPole-v0",
        "--num-envs",
        "8",
        "--rollout-steps",
        "64",
        "--minibatch-size",
        "256",
        "--checkpoint-every-frames",
        "512",
        "--solved-threshold",
        "475",
    ]
    assert train_main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    # The 4th batch (frames 1537-2048) holds the first NaN reward.
    assert err.startswith("error: update 4 (at 2,048 frames): loss_") and " is nan" in err, err
    [run] = all_runs(store)
    assert run.info.status == "FAILED"
    state = load_checkpoint(next(Path("checkpoints").glob("*/last.pt")))
    assert state["progress"]["frames"] == 1536
    assert all(torch.isfinite(v).all() for v in state["actor"].values() if torch.is_tensor(v))


# --- concurrent runs on one SQLite store ----------------------------------------------------------
@pytest.mark.slow
def test_four_concurrent_runs_on_one_sqlite_store_all_complete(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'shared.db'}"  # created by the racing processes themselves
    procs = [
        cli(
            [
                "--seed",
                str(seed),
                "--frames",
                "6144",
                "--no-stop-when-solved",
                "--checkpoint-every-frames",
                "1024",
            ],
            tmp_path,
            uri,
        )
        for seed in range(4)
    ]
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0, 0, 0], [p.stderr.read()[-500:] for p in procs]
    runs = all_runs(uri)
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    client = MlflowClient(uri)
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/objective")]
        assert steps == list(range(BATCH, 6144 + 1, BATCH))


# --- fuzzed command line ----------------------------------------------------------------------
FLAGS = [
    "--lr",
    "--gamma",
    "--lam",
    "--clip-epsilon",
    "--num-envs",
    "--frames",
    "--episodes",
    "--seed",
    "--epochs",
    "--minibatch-size",
    "--rollout-steps",
    "--entropy-coef",
    "--critic-coef",
    "--max-grad-norm",
    "--env",
    "--critic-loss",
    "--activation",
    "--hidden-sizes",
    "--eval-episodes",
    "--reward-scale",
    "--env-backend",
    "--solved-threshold",
    "--bogus-flag",
]
VALUES = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "nan",
            "inf",
            "-inf",
            "",
            " ",
            "1e309",
            "0x10",
            "abc",
            "CartPole-v1",
            "l2",
            "relu",
            "torch",
            "none",
            "1_000",
            "--",
            "-1",
        ]
    ),
    st.text(max_size=8),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), min_size=1, max_size=4))
@example(pairs=[("--bogus-flag", "\x0c")])  # a form feed: a line break to str.splitlines
@example(pairs=[("--env", "\r")])  # gymnasium quotes the bad id back, line break and all
def test_any_command_line_is_accepted_or_refused_in_one_line(pairs, capsys) -> None:
    argv = [token for flag, value in pairs for token in (flag, value)] + ["--dry-run", "--no-track"]
    try:
        code = train_main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1, (argv, err)
    else:
        printed = dict(line.split(": ", 1) for line in out.strip().splitlines())
        assert printed["track"] == "False"
