"""`python -m ppo_torchrl.export`: real checkpoints from short real runs, exported, then run
by onnxruntime and by torch.export's loader here, independently of the exporter's own check,
and compared with the checkpoint's greedy actor on real observations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from ppo_torchrl.envs.gym_envs import make_gym_env
from ppo_torchrl.export import main as export_main
from ppo_torchrl.run.checkpoint import load_policy
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.trainer import train

ROOT = Path(__file__).resolve().parents[1]
RUNS = {  # one per action kind; Pendulum also carries observation normalisation
    "discrete": {"env": "CartPole-v1", "frames": 4096},
    "box": {
        "env": "Pendulum-v1",
        "frames": 2048,
        "normalize_observations": True,
        "continuous_actions": "normal",
    },
    "multidiscrete": {"env": "tests.toy_envs:MatchMultiDiscrete-v0", "frames": 1024},
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def checkpoint(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp(request.param)
    cfg = PPOConfig(
        track=False, eval_every_frames=0, eval_episodes=2, checkpoint_dir=str(folder), **RUNS[request.param]
    )
    return Path(train(cfg, run_dir=folder / "run").checkpoint)


def observations_and_actions(path: Path, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Real observations (a different seed from the exporter's) and what the checkpoint's
    actor does on them, greedily, clipped to the env's bounds as the env would."""
    cfg, actor = load_policy(path)
    env = make_gym_env(cfg.env, cfg.env_kwargs)
    env.action_space.seed(7)
    obs, _ = env.reset(seed=7)
    rows = []
    for _ in range(n):
        rows.append(np.asarray(obs))
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    x = np.stack(rows)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        actions = actor(TensorDict({"observation": torch.as_tensor(x)}, [n]))["action"].numpy()
    if isinstance(env.action_space, gym.spaces.Box):
        actions = np.clip(actions, env.action_space.low, env.action_space.high)
    return x, actions


def test_onnx_and_torch_export_act_as_the_checkpoint(checkpoint, tmp_path, capsys):
    onnx_path, program_path = tmp_path / "policy.onnx", tmp_path / "policy.pt2"
    assert export_main([str(checkpoint), "--onnx", str(onnx_path), "--torch-export", str(program_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("parity on 256 observations") == 2 and "FAILED" not in out
    x, expected = observations_and_actions(checkpoint)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["observation"]
    from_onnx = session.run(None, {"observation": x})[0]
    with torch.no_grad():
        from_program = torch.export.load(str(program_path)).module()(torch.as_tensor(x)).numpy()
    for got in (from_onnx, from_program):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        if np.issubdtype(expected.dtype, np.floating):
            np.testing.assert_allclose(got, expected, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, expected)


@pytest.fixture(scope="module")
def cartpole_checkpoint(tmp_path_factory) -> Path:
    """One checkpoint for the bad-input tests (they fail before its contents matter)."""
    folder = tmp_path_factory.mktemp("bad-input")
    cfg = PPOConfig(track=False, frames=512, eval_every_frames=0, eval_episodes=1, checkpoint_dir=str(folder))
    return Path(train(cfg, run_dir=folder / "run").checkpoint)


def run_export(*args: str, code: str = "import sys; from ppo_torchrl.export import main; sys.exit(main())"):
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing-folder/policy.onnx", "output: folder does not exist"),
        (".", "is a folder; give a file path"),
        ("/proc/policy.onnx", "output: cannot write /proc/policy.onnx"),  # root cannot write there either
    ],
)
def test_bad_output_paths_are_one_line(target, message, tmp_path, cartpole_checkpoint):
    checkpoint = cartpole_checkpoint
    path = target if target.startswith("/") else str(tmp_path / target)
    done = run_export(str(checkpoint), "--onnx", path)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_a_missing_checkpoint_or_a_missing_extra_is_one_line(tmp_path, cartpole_checkpoint):
    checkpoint = cartpole_checkpoint
    done = run_export(str(tmp_path / "nope.pt"), "--torch-export", str(tmp_path / "p.pt2"))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: checkpoint not found: {tmp_path / 'nope.pt'}"
    ]
    no_runtime = (
        "import sys; sys.modules['onnxruntime'] = None\nfrom ppo_torchrl.export import main; sys.exit(main())"
    )
    done = run_export(str(checkpoint), "--onnx", str(tmp_path / "p.onnx"), code=no_runtime)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: onnx: needs onnxruntime, not installed: pip install 'ppo_torchrl[export]'"
    ]
    assert not (tmp_path / "p.onnx").exists()
    done = run_export(str(checkpoint))
    assert done.returncode == 2 and "nothing to write" in done.stderr
