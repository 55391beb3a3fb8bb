"""The command line: --help, and one clear line with exit status 2 for every bad input."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from ppo_torchrl.cli.train import main
from ppo_torchrl.run.config import PPOConfig
from tests.conftest import all_runs


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own exits
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_config_field_with_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    for f in dataclasses.fields(PPOConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in flat, flag
        assert " ".join(f.metadata["help"].split()) in flat, f.name
    assert "MISSING" not in flat and "(default: none)" in flat  # env_kwargs: an empty mapping
    for flag in (
        "--episodes",
        "--gamma",
        "--lam",
        "--clip-epsilon",
        "--config",
        "--no-track",
        "--summary-json",
        "--explain",
        "--no-stop-when-solved",
    ):
        assert flag in flat
    assert flat.count("(default:") >= len(dataclasses.fields(PPOConfig))


BAD_INPUTS = {
    "negative lr": (["--lr", "-0.001"], "lr: must be > 0"),
    "nan lr": (["--lr", "nan"], "lr: must be a finite number"),
    "infinite lr": (["--lr", "inf"], "lr: must be a finite number"),
    "non-numeric lr": (["--lr", "fast"], "lr: must be a number"),
    "clip epsilon above 1": (["--clip-epsilon", "1.5"], "clip_epsilon: must be in (0.0, 1.0)"),
    "clip epsilon zero": (["--clip-epsilon", "0"], "clip_epsilon: must be in (0.0, 1.0)"),
    "gamma above 1": (["--gamma", "1.2"], "gamma: must be in [0.0, 1.0]"),
    "lam below 0": (["--lam", "-0.5"], "lam: must be in [0.0, 1.0]"),
    "nan gamma": (["--gamma", "nan"], "gamma: must be a finite number"),
    "zero envs": (["--num-envs", "0"], "num_envs: must be >= 1"),
    "negative frames": (["--frames", "-100"], "frames: must be >= 1"),
    "negative episodes": (["--episodes", "-3"], "episodes: must be >= 0"),
    "non-numeric frames": (["--frames", "lots"], "frames: must be a whole number"),
    "fractional seed": (["--seed", "1.5"], "seed: must be a whole number"),
    "unknown env": (["--env", "NoSuchEnv-v0"], "env: unknown gymnasium environment id 'NoSuchEnv-v0'"),
    "unknown flag": (["--learning-rate", "0.1"], "unrecognized arguments: --learning-rate"),
    "missing config": (["--config", "missing.yaml"], "config: file not found: missing.yaml"),
    "malformed config": (["--config", "bad.yaml"], "is not valid YAML"),
    "unknown config key": (["--config", "unknown.yaml"], "config: unknown key 'learning_rate'"),
    "unreadable config": (["--config", "."], "config: cannot read"),
    "bad value in config": (["--config", "badvalue.yaml"], "gamma: must be in [0.0, 1.0]"),
    "unknown device": (["--device", "gpu"], "device: must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "a GPU that is not there": (["--device", "cuda:99"], "device: 'cuda:99' asked for, but torch sees"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_run(
    case: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("bad.yaml").write_text("gamma: [0.9\n")
    Path("unknown.yaml").write_text("learning_rate: 0.1\n")
    Path("badvalue.yaml").write_text("gamma: 3\n")
    argv, expected = BAD_INPUTS[case]
    code, out, err = run_main(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert all_runs(store) == []


def test_config_file_values_are_overridden_by_flags(store: str) -> None:
    import argparse

    from ppo_torchrl.cli.train_args import build_parser, new_run_config

    Path("c.yaml").write_text("gamma: 0.9\nlam: 0.8\nnum_envs: 16\n")
    args = build_parser().parse_args(["--config", "c.yaml", "--lam", "0.5"])
    assert isinstance(args, argparse.Namespace)
    cfg, _ = new_run_config(args)
    assert (cfg.gamma, cfg.lam, cfg.num_envs) == (0.9, 0.5, 16)
    assert cfg.clip_epsilon == PPOConfig().clip_epsilon


@pytest.mark.parametrize("argv", [["--clip-epsilon", "nan"], ["--no-such-flag"]])
def test_bad_input_from_a_real_process(argv: list[str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ppo_torchrl.train", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_train_is_the_function_after_the_command_line_is_loaded() -> None:
    """`ppo_torchrl.train` the function stays the function: the command's code lives in
    cli/train.py, and the `python -m ppo_torchrl.train` module that names it is never imported."""
    import ppo_torchrl.cli.train
    import ppo_torchrl.sweep.cli
    from ppo_torchrl import train
    from ppo_torchrl.run.trainer import train as the_function

    assert train is the_function
    assert callable(ppo_torchrl.cli.train.main)
