"""Every gymnasium space kind trains end to end; normalisation is exact, kept and reused.

Real gymnasium envs where the registry has the space kind (FrozenLake: Discrete
observations; Blackjack: Tuple; InvertedPendulum: float64 Box observations and Box
actions), small registered envs from tests/toy_envs.py for the rest (MultiDiscrete,
MultiBinary, Dict, pixels). The toy tasks are learnable in a few thousand frames, so those
tests assert learning against the random policy's expected return, not only completion.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ppo_torchrl.cli.train import main as train_main
from ppo_torchrl.evaluate import main as evaluate_main
from ppo_torchrl.models.encoders import ObservationNorm
from ppo_torchrl.run.checkpoint import load_checkpoint
from ppo_torchrl.run.reward_norm import RewardNormalizer
from tests.conftest import all_runs

SMALL = ["--num-envs", "8", "--rollout-steps", "32", "--minibatch-size", "128", "--no-track"]
TOY = "tests.toy_envs:"


def norm_count(weights: dict) -> float:
    """Observations the network's ObservationNorm has seen (its ``count`` buffer)."""
    [count] = [v for k, v in weights.items() if k.endswith(".count")]
    return float(count)


def train(tmp_path: Path, *args: str) -> dict:
    summary = tmp_path / "summary.json"
    assert train_main([*SMALL, "--summary-json", str(summary), *args]) == 0
    return json.loads(summary.read_text())


# Toy tasks: 8 steps an episode; (random policy's expected return, a clear margin above it).
LEARNABLE = {
    "MatchMultiDiscrete-v0": 8 * (1 / 3 + 1 / 4 + 1 / 2) / 3,  # MultiDiscrete obs and actions
    "MatchBits-v0": 8 * 0.5,  # MultiBinary obs and actions
    "MatchDict-v0": 8 / 3,  # Dict obs (float64 Box + Discrete), Discrete actions
    "MatchPixels-v0": 8 * 0.5,  # uint8 image obs through the CNN
}


@pytest.mark.parametrize("env_id", sorted(LEARNABLE))
def test_each_space_kind_learns_its_toy_task(env_id: str, store: str, tmp_path: Path) -> None:
    s = train(tmp_path, "--env", TOY + env_id, "--frames", "4096", "--eval-episodes", "20")
    assert s["frames"] == 4096
    assert s["final_eval_mean"] >= LEARNABLE[env_id] + 2.5, s["final_eval_mean"]


@pytest.mark.parametrize(
    "env_id, extra",
    [
        ("FrozenLake-v1", []),  # Discrete observations (one-hot)
        ("Blackjack-v1", []),  # Tuple of Discretes
        ("InvertedPendulum-v5", ["--continuous-actions", "normal", "--normalize-observations"]),
        ("HalfCheetah-v5", ["--preset", "none"]),  # float64 observations: once "Double and Float"
    ],
)
def test_real_envs_of_other_space_kinds_train_end_to_end(env_id, extra, store, tmp_path) -> None:
    s = train(tmp_path, "--env", env_id, "--frames", "1024", "--eval-episodes", "5", *extra)
    assert s["frames"] == 1024 and s["final_eval_mean"] is not None
    assert Path(s["best_checkpoint"]).is_file()


def test_env_kwargs_reach_training_and_evaluation(store: str, tmp_path: Path, capsys) -> None:
    # 8x8 FrozenLake has 64 observations: an evaluation on the default 4x4 map would not fit.
    s = train(tmp_path, "--env", "FrozenLake-v1", "--env-kwargs", "map_name=8x8", "is_slippery=false",
              "--frames", "512", "--eval-episodes", "3")  # fmt: skip
    state = load_checkpoint(Path(s["best_checkpoint"]).with_name("final.pt"))
    assert state["config"]["env_kwargs"] == {"map_name": "8x8", "is_slippery": False}
    assert state["actor"]["module.0.module.0.weight"].shape[-1] == 64


# --- normalisation ---------------------------------------------------------------------------------
def test_observation_norm_equals_the_statistics_of_everything_seen() -> None:
    norm, rng = ObservationNorm(3), np.random.default_rng(0)
    batches = [rng.normal(5.0, 3.0, (n, 3)) for n in (7, 1, 40)]
    for batch in batches:
        norm.update(torch.as_tensor(batch, dtype=torch.float32))
    seen = np.concatenate(batches)
    assert np.allclose(norm.mean.numpy(), seen.mean(0), atol=1e-5)
    assert np.allclose(norm.var.numpy(), seen.var(0), atol=1e-4)
    x = torch.tensor([[5.0, 5.0, 100.0]])
    expected = np.clip((x.numpy() - seen.mean(0)) / np.sqrt(seen.var(0) + 1e-8), -10, 10)
    assert np.allclose(norm(x).numpy(), expected, atol=1e-4)


def test_reward_norm_divides_by_the_std_of_the_discounted_returns() -> None:
    """Against VecNormalize's recipe written out by hand: R <- gamma R + r, reset at done."""
    from tensordict import TensorDict

    gamma, rng = 0.9, np.random.default_rng(1)
    norm = RewardNormalizer(2, gamma)
    running, seen = np.zeros(2), []
    for _ in range(3):
        r = rng.normal(2.0, 1.0, (2, 5))
        done = rng.random((2, 5)) < 0.3
        batch = TensorDict(
            {"next": {"reward": torch.tensor(r[..., None]), "done": torch.tensor(done[..., None])}}, [2, 5]
        )
        norm(batch)
        for t in range(5):
            running = running * gamma + r[:, t]
            seen += list(running)
            running = np.where(done[:, t], 0.0, running)
        std = np.sqrt(np.var(seen) + 1e-8)
        assert np.allclose(batch["next", "reward"].squeeze(-1).numpy(), np.clip(r / std, -10, 10))
    assert np.allclose(norm.returns.numpy(), running)


@pytest.mark.slow
def test_normalisation_statistics_survive_a_kill_and_resume_exactly(tmp_path: Path) -> None:
    """CartPole's torch backend resumes bit for bit, so a run killed (SIGKILL) after a
    checkpoint and resumed must end with the very statistics of an uninterrupted run."""
    run = [sys.executable, "-m", "ppo_torchrl.train", "--no-track", "--frames", "20480",
           "--no-stop-when-solved", "--normalize-observations", "--normalize-rewards",
           "--checkpoint-every-frames", "1024",
           "--eval-every-frames", "0", "--num-envs", "8", "--rollout-steps", "64"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("whole", "killed"):
        (tmp_path / name).mkdir()
    subprocess.run(run, cwd=tmp_path / "whole", env=env, check=True, capture_output=True)
    proc = subprocess.Popen(run, cwd=tmp_path / "killed", env=env, stdout=subprocess.DEVNULL)
    while not list((tmp_path / "killed").glob("checkpoints/*/last.pt")):  # the first checkpoint
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [last] = (tmp_path / "killed").glob("checkpoints/*/last.pt")
    assert load_checkpoint(last)["progress"]["frames"] < 20480
    resume = [sys.executable, "-m", "ppo_torchrl.train", "--resume", str(last), "--no-track"]
    subprocess.run(resume, cwd=tmp_path / "killed", env=env, check=True, capture_output=True)
    [a] = (tmp_path / "whole").glob("checkpoints/*/final.pt")
    [b] = (tmp_path / "killed").glob("checkpoints/*/final.pt")
    whole, resumed = load_checkpoint(a), load_checkpoint(b)
    assert whole["progress"]["frames"] == resumed["progress"]["frames"] == 20480
    assert (
        whole["reward_norm"]["count"] == 20480
        and norm_count(whole["actor"]) == norm_count(whole["critic"]) == 20480
    )
    for key in ("count", "mean", "var"):
        assert whole["reward_norm"][key] == resumed["reward_norm"][key]
    assert torch.equal(whole["reward_norm"]["returns"], resumed["reward_norm"]["returns"])
    for net in ("actor", "critic"):
        assert all(torch.equal(whole[net][k], resumed[net][k]) for k in whole[net])


def test_evaluate_reproduces_the_runs_final_evaluation_with_its_statistics(
    store: str, tmp_path: Path, capsys
) -> None:
    s = train(tmp_path, "--env", "InvertedPendulum-v5", "--frames", "2048", "--eval-episodes", "5",
              "--normalize-observations", "--normalize-rewards", "--seed", "3")  # fmt: skip
    final = Path(s["best_checkpoint"]).with_name("final.pt")
    assert norm_count(load_checkpoint(final)["actor"]) == 2048  # the statistics are in the weights
    capsys.readouterr()
    assert evaluate_main([str(final), "--episodes", "5", "--seed", "3"]) == 0
    assert f"greedy return {s['final_eval_mean']:.1f} ± {s['final_eval_std']:.1f}" in capsys.readouterr().out


def test_a_pixel_policys_checkpoint_evaluates_and_resumes(store: str, tmp_path: Path, capsys) -> None:
    """Policy and critic share the CNN and the optimizer holds its tensors once: the checkpoint
    check must count them once too (it refused every Atari checkpoint, found on Pong)."""
    s = train(tmp_path, "--env", TOY + "MatchPixels-v0", "--frames", "512", "--eval-episodes", "2",
              "--no-stop-when-solved", "--checkpoint-dir", str(tmp_path / "checkpoints"))  # fmt: skip
    run = Path(s["best_checkpoint"]).parent
    assert evaluate_main([str(run / "final.pt"), "--episodes", "2"]) == 0
    assert "greedy return" in capsys.readouterr().out
    assert train_main(["--resume", str(run), "--frames", "1024", "--no-track"]) == 0
    assert load_checkpoint(run / "final.pt")["progress"]["frames"] == 1024


# --- what cannot be trained: one line, exit 2, nothing started ----------------------------------------
@pytest.mark.parametrize(
    "args, words",
    [
        (["--env", "Taxi-v3"], ["deprecated", "Taxi-v4"]),
        (["--env", "NoSuchEnv-v0"], ["unknown gymnasium environment id"]),
        (["--env", "FrozenLake-v1", "--env-kwargs", "no_such_arg=1"], ["env_kwargs", "no_such_arg"]),
        (["--env", "FrozenLake-v1", "--env-kwargs", "oops"], ["env_kwargs", "key=value"]),
        (["--env", "no_such_module:Foo-v0"], ["cannot import module"]),
        (["--preset", "NoSuchEnv-v0"], ["preset", "available"]),
    ],
)
def test_bad_env_input_is_one_line_exit_2(args, words, store: str, capsys) -> None:
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err
    assert all_runs(store) == []


def test_a_missing_optional_dependency_names_the_extra(tmp_path: Path) -> None:
    """Box2D really absent: the import is blocked before gymnasium looks for it."""
    code = (
        "import sys; sys.modules['Box2D'] = None\n"
        "from ppo_torchrl.cli.train import main\n"
        "sys.exit(main(['--env', 'LunarLander-v3', '--no-track']))"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "LunarLander-v3" in line and "pip install -e '.[box2d]'" in line
    assert not (tmp_path / "checkpoints").exists()


# --- presets ---------------------------------------------------------------------------------------
def test_a_preset_sits_under_the_config_file_and_the_flags(tmp_path: Path, capsys) -> None:
    def dry(*args: str) -> dict[str, str]:
        assert train_main([*args, "--dry-run"]) == 0
        return dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())

    preset = dry("--env", "Hopper-v5")
    assert preset["preset"] == "Hopper-v5" and preset["num_envs"] == "16" and preset["frames"] == "1000000"
    plain = dry("--env", "Hopper-v5", "--preset", "none")
    assert plain["preset"] == "none" and plain["frames"] == "100000"
    assert dry("--env", "Hopper-v5", "--lr", "1e-4")["lr"] == "0.0001"
    (tmp_path / "c.yaml").write_text("env: Hopper-v5\nepochs: 3\n")
    from_file = dry("--config", str(tmp_path / "c.yaml"))
    assert from_file["preset"] == "Hopper-v5" and from_file["epochs"] == "3" and from_file["lr"] == "0.0003"
