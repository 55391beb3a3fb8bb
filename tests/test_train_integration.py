"""End to end: real CartPole training, tracked in a real MLflow store, read back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from ppo_torchrl import PPOConfig, train
from ppo_torchrl.cli.train import main as train_main
from ppo_torchrl.evaluate import main as evaluate_main
from tests.conftest import all_runs

# A uniformly random CartPole policy lasts about 22 steps on average.
RANDOM_CARTPOLE_RETURN = 22.0
BUDGET = 20480
DEFAULTS = PPOConfig()


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One short real training run through the CLI, tracked in a SQLite store."""
    folder = tmp_path_factory.mktemp("tracked")
    mp = pytest.MonkeyPatch()
    mp.chdir(folder)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    import contextlib
    import io

    out = io.StringIO()
    argv = [
        "--frames",
        str(BUDGET),
        "--summary-json",
        "summary.json",
        "--explain",
        "--seed",
        "1",
    ]
    with contextlib.redirect_stdout(out):
        code = train_main(argv)
    summary = json.loads((folder / "summary.json").read_text())
    yield {
        "code": code,
        "stdout": out.getvalue(),
        "summary": summary,
        "folder": folder,
        "uri": f"sqlite:///{folder / 'mlflow.db'}",
    }
    mp.undo()


def test_training_clearly_beats_a_random_policy(tracked_run: dict) -> None:
    s = tracked_run["summary"]
    assert tracked_run["code"] == 0
    assert set(s) == {
        "final_eval_mean",
        "final_eval_std",
        "frames",
        "train_seconds",
        "solved",
        "solved_at_frames",
        "stable_solved_at_frames",
        "stable_solved_at_seconds",
        "best_eval_mean",
        "best_eval_frames",
        "best_checkpoint",
        "run_id",
        "model_uri",
        "registered_model",
        "videos",
        "evals",
    }
    assert s["model_uri"] == f"runs:/{s['run_id']}/policy" and s["registered_model"] is None
    assert s["videos"] == []  # none unless asked for
    assert s["evals"][-1]["mean"] == s["final_eval_mean"] and s["evals"][-1]["frames"] == s["frames"]
    assert s["frames"] <= BUDGET and s["frames"] % DEFAULTS.frames_per_batch == 0
    assert s["final_eval_mean"] > 5 * RANDOM_CARTPOLE_RETURN
    assert s["train_seconds"] > 0


def test_progress_summary_and_explanation_are_printed(tracked_run: dict) -> None:
    out = tracked_run["stdout"]
    lines = re.findall(r"^Episode (\d+): Average Reward = (-?[\d.]+)", out, re.M)
    assert [int(n) for n, _ in lines][:3] == [10, 20, 30]
    assert "Average reward (first 10 episodes)" in out and "Improvement:" in out
    final = tracked_run["summary"]["final_eval_mean"]
    assert f"Final greedy evaluation: {final:.1f}" in out
    # --explain reports this run's measured numbers, not a canned text.
    assert "PPO EXPLAINED" in out
    assert f"lambda={DEFAULTS.lam}" in out and f"clip epsilon={DEFAULTS.clip_epsilon}" in out
    ratio = re.search(r"ranged over\s+\[([\d.]+), ([\d.]+)\]", out)
    assert ratio is not None
    low, high = map(float, ratio.groups())
    assert low < 1.0 < high and low != high


def test_run_is_complete_in_the_store(tracked_run: dict) -> None:
    client = MlflowClient(tracked_run["uri"])
    run = client.get_run(tracked_run["summary"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params == {k: str(v) for k, v in PPOConfig(frames=BUDGET, seed=1).to_dict().items()}
    for key in (
        "train/episode_return",
        "loss/objective",
        "loss/critic",
        "train/entropy",
        "train/clip_fraction",
        "train/kl_approx",
        "train/explained_variance",
        "train/lr",
        "perf/frames_per_second",
        "eval/return",
        "eval/return_std",
    ):
        assert key in run.data.metrics, key
    # every name has its group's prefix (MLflow's UI draws one section per prefix)
    assert {k.split("/")[0] for k in run.data.metrics} <= {"train", "loss", "eval", "perf", "system"}
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/objective")]
    batch = DEFAULTS.frames_per_batch
    frames = tracked_run["summary"]["frames"]
    assert steps == list(range(batch, frames + 1, batch))
    evals = client.get_metric_history(run.info.run_id, "eval/return")
    every = DEFAULTS.eval_every_frames
    assert [m.step for m in evals] == list(range(every, frames + 1, every))
    assert evals[-1].value == pytest.approx(tracked_run["summary"]["final_eval_mean"])
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "learning_curve.png", "checkpoints"} <= top
    logged = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert logged == ["checkpoints/best.pt", "checkpoints/final.pt"]
    config = client.download_artifacts(run.info.run_id, "config.yaml", str(tracked_run["folder"]))
    assert f"clip_epsilon: {DEFAULTS.clip_epsilon}" in Path(config).read_text()


def test_checkpoint_evaluates_to_the_same_greedy_return(
    tracked_run: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tracked_run["folder"] / "checkpoints" / tracked_run["summary"]["run_id"] / "final.pt"
    state = torch.load(ckpt, weights_only=True)
    assert {"actor", "critic", "optimizer", "config", "progress"} <= state.keys()
    assert state["progress"]["frames"] == tracked_run["summary"]["frames"]
    assert evaluate_main([str(ckpt), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert f"greedy return {tracked_run['summary']['final_eval_mean']:.1f}" in out


def test_corrupt_checkpoint_is_one_line_exit_2(
    tmp_path: Path, tracked_run: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tracked_run["folder"] / "checkpoints" / tracked_run["summary"]["run_id"] / "final.pt"
    torn = tmp_path / "torn.pt"
    torn.write_bytes(ckpt.read_bytes()[:1000])
    for path in (torn, tmp_path / "missing.pt"):
        assert evaluate_main([str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "checkpoint" in err[0]


def test_episode_budget_stops_training(tmp_path: Path) -> None:
    cfg = PPOConfig(
        episodes=30,
        track=False,
        checkpoint_dir=str(tmp_path),
        eval_every_frames=0,
        num_envs=4,
        rollout_steps=32,
        minibatch_size=64,
    )
    result = train(cfg)
    assert result.episodes >= 30
    # Stops at the first batch that completes the 30th episode.
    assert result.frames <= 30 * 500 and result.frames % cfg.frames_per_batch == 0


def test_continuous_env_runs_end_to_end(tmp_path: Path) -> None:
    cfg = PPOConfig(
        env="Pendulum-v1",
        frames=2048,
        num_envs=4,
        rollout_steps=256,
        track=False,
        checkpoint_dir=str(tmp_path),
        eval_episodes=4,
    )
    result = train(cfg)
    assert result.frames == 2048 and not result.solved  # Pendulum has no reward threshold
    assert -2000 < result.final_eval_mean <= 0


def test_failed_training_ends_the_run_failed(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import ppo_torchrl.run.learners as learners

    def broken(self, frames_before):
        raise RuntimeError("simulated failure inside the update")

    for route in (learners.ProgramLearner, learners.CollectorLearner):
        monkeypatch.setattr(route, "learn", broken)
    with pytest.raises(RuntimeError, match="simulated failure"):
        train_main(["--frames", "1024"])
    assert [r.info.status for r in all_runs(store)] == ["FAILED"]


def test_interrupted_training_ends_the_run_killed(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import ppo_torchrl.run.learners as learners

    def interrupted(self, frames_before):
        raise KeyboardInterrupt

    for route in (learners.ProgramLearner, learners.CollectorLearner):
        monkeypatch.setattr(route, "learn", interrupted)
    assert train_main(["--frames", "1024"]) == 130
    assert [r.info.status for r in all_runs(store)] == ["KILLED"]


@pytest.mark.slow
def test_real_mlflow_server(mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    assert train_main(["--frames", "2048", "--summary-json", "s.json", "--eval-episodes", "10"]) == 0
    run_id = json.loads(Path("s.json").read_text())["run_id"]
    client = MlflowClient(mlflow_server)  # read back over HTTP
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["env"] == "CartPole-v1"
    assert len(client.get_metric_history(run_id, "loss/objective")) == 2048 // PPOConfig().frames_per_batch
    assert {"config.yaml", "learning_curve.png", "checkpoints"} <= {
        a.path for a in client.list_artifacts(run_id)
    }


def test_unreachable_server_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import free_port

    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert train_main(["--frames", "1024"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and uri in err[0] and "--no-track" in err[0]
    assert not Path("checkpoints").exists()
