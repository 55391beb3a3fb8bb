"""What a finished run leaves for use elsewhere: its MLflow model, its videos, its system metrics.

Real short runs into a real SQLite store (and one into a real `mlflow server`); the model is
loaded back in a fresh Python process that imports gymnasium, numpy and MLflow only — not this
package — and replays the run's final evaluation with the same seeds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import mlflow
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image, ImageSequence

from ppo_torchrl.cli.train import main as train_main
from ppo_torchrl.evaluate import main as evaluate_main
from tests.conftest import all_runs

ROOT = Path(__file__).resolve().parents[1]
EVAL_SEED_OFFSET = 1_000_000  # evaluation.py's: the fresh process must not import the package

# Plays a model's first episodes of each sub-env as evaluation.py does (gymnasium's own vector
# env where the env ships one, else one env per episode seeded seed+i), then one episode from
# the first evaluation seed alone, as the videos are recorded. Prints both as JSON.
REPLAY = """
import json, sys
import gymnasium as gym, mlflow, numpy as np
uri, model_uri, env_id, episodes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
mlflow.set_tracking_uri(uri)
model = mlflow.pyfunc.load_model(model_uri)
mode = "vector_entry_point" if gym.spec(env_id).vector_entry_point else "sync"
envs = gym.make_vec(env_id, num_envs=episodes, vectorization_mode=mode)
obs, _ = envs.reset(seed=OFFSET)
totals, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
while running.any():
    obs, reward, terminated, truncated, _ = envs.step(model.predict(obs))
    totals += np.where(running, reward, 0.0)
    running &= ~(terminated | truncated)
env = gym.make(env_id)
obs, _ = env.reset(seed=OFFSET)
steps, done = 0, False
while not done:
    obs, _, terminated, truncated, _ = env.step(model.predict(obs[None])[0])
    steps, done = steps + 1, terminated or truncated
print(json.dumps({"returns": totals.tolist(), "video_episode_steps": steps,
                  "package_imported": "ppo_torchrl" in sys.modules}))
""".replace("OFFSET", str(EVAL_SEED_OFFSET))


def tensor_spec(schema) -> tuple[str, tuple[int, ...]]:
    [spec] = schema.inputs
    return str(spec.type), tuple(spec.shape)


def replay(uri: str, model_uri: str, env_id: str, episodes: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", REPLAY, uri, model_uri, env_id, str(episodes)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",  # not the repository: the package is not on the path by accident
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """CartPole, tracked: model registered, an MP4 of the final evaluation, system metrics
    sampled every second."""
    folder = tmp_path_factory.mktemp("cartpole_run")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    args = ["--frames", "4096", "--eval-every-frames", "0", "--eval-episodes", "20"]
    args += ["--register-model", "cartpole-policy", "--video", "--video-format", "mp4"]
    args += ["--system-metrics-interval", "1", "--summary-json", "s.json"]
    done = subprocess.run(
        [sys.executable, "-m", "ppo_torchrl.train", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=folder,
        env={**__import__("os").environ, "MLFLOW_TRACKING_URI": uri},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {"uri": uri, "folder": folder, "summary": json.loads((folder / "s.json").read_text())}


@pytest.mark.slow
def test_the_model_replays_the_final_evaluation_in_a_fresh_process(
    cartpole_run: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, uri = cartpole_run["summary"], cartpole_run["uri"]
    assert summary["model_uri"] == f"runs:/{summary['run_id']}/policy"
    for model_uri in (summary["model_uri"], "models:/cartpole-policy@newest"):
        played = replay(uri, model_uri, "CartPole-v1", 20)
        cartpole_run.setdefault("replayed", played)  # the video test reuses the episode length
        assert not played["package_imported"]
        mean = sum(played["returns"]) / len(played["returns"])
        assert mean == pytest.approx(summary["final_eval_mean"], abs=1e-9), model_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    info = mlflow.models.get_model_info(summary["model_uri"])
    assert tensor_spec(info.signature.inputs) == ("float32", (-1, 4))  # a batch of observations
    assert tensor_spec(info.signature.outputs) == ("int64", (-1,))  # a batch of actions
    assert info.saved_input_example_info is not None
    version = MlflowClient(uri).get_model_version_by_alias("cartpole-policy", "newest")
    assert version.run_id == summary["run_id"]
    assert summary["registered_model"] == f"cartpole-policy version {version.version} (alias newest)"


def test_observation_normalisation_travels_with_the_model(store: str, tmp_path: Path) -> None:
    """Pendulum with normalised observations and a Gaussian head: the statistics and the clamp
    to the action bounds are inside the logged model."""
    args = [
        "--env",
        "Pendulum-v1",
        "--frames",
        "2048",
        "--normalize-observations",
        "--eval-every-frames",
        "0",
    ]
    args += ["--continuous-actions", "normal", "--eval-episodes", "5", "--no-system-metrics"]
    assert train_main([*args, "--summary-json", "s.json"]) == 0
    summary = json.loads(Path("s.json").read_text())
    played = replay(store, summary["model_uri"], "Pendulum-v1", 5)
    mean = sum(played["returns"]) / len(played["returns"])
    assert mean == pytest.approx(summary["final_eval_mean"], rel=1e-4)
    info = mlflow.models.get_model_info(summary["model_uri"])
    assert tensor_spec(info.signature.outputs) == ("float32", (-1, 1))


def test_the_final_video_holds_the_episode_frame_by_frame(cartpole_run: dict) -> None:
    summary = cartpole_run["summary"]
    [video] = summary["videos"]
    path = cartpole_run["folder"] / video
    assert path.name == "final.mp4"
    played = cartpole_run.get("replayed") or replay(
        cartpole_run["uri"], summary["model_uri"], "CartPole-v1", 1
    )
    steps = played["video_episode_steps"]
    reader = imageio.get_reader(path)
    assert reader.count_frames() == steps + 1  # the reset frame, then one per step
    assert reader.get_data(0).shape == (400, 600, 3)
    client = MlflowClient(cartpole_run["uri"])
    assert [a.path for a in client.list_artifacts(summary["run_id"], "videos")] == ["videos/final.mp4"]


def test_evaluate_records_a_gif_of_any_checkpoint(cartpole_run: dict, tmp_path: Path) -> None:
    checkpoint = Path(cartpole_run["folder"]) / Path(cartpole_run["summary"]["best_checkpoint"])
    out = tmp_path / "agent.gif"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ppo_torchrl.evaluate",
            str(checkpoint),
            "--episodes",
            "3",
            "--video",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]  # "video: PATH (N frames, 600x400; return R)"
    frames = int(line.split("(")[1].split()[0])
    episode_return = float(line.rsplit("return ", 1)[1].rstrip(")"))
    assert frames == episode_return + 1  # CartPole pays 1 per step
    gif = Image.open(out)
    assert gif.size == (600, 400)
    # Pillow stores a frame identical to the one before as a longer display of that one: the
    # durations add up to every frame at CartPole's 50 frames per second.
    assert sum(f.info["duration"] for f in ImageSequence.Iterator(gif)) == frames * 20


def test_system_metrics_are_logged_and_can_be_turned_off(cartpole_run: dict, store: str) -> None:
    metrics = MlflowClient(cartpole_run["uri"]).get_run(cartpole_run["summary"]["run_id"]).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= metrics.keys()
    assert (
        train_main(["--frames", "1024", "--eval-episodes", "2", "--no-system-metrics", "--no-log-model"]) == 0
    )
    [run] = all_runs(store)
    assert not [k for k in run.data.metrics if k.startswith("system/")]


@pytest.mark.slow
def test_a_real_server_shows_model_signature_video_and_system_metrics(
    mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    args = ["--frames", "2048", "--eval-episodes", "5", "--video", "--register-model", "served-policy"]
    assert train_main([*args, "--system-metrics-interval", "1", "--summary-json", "s.json"]) == 0
    run_id = json.loads(Path("s.json").read_text())["run_id"]
    client = MlflowClient(mlflow_server)  # everything read back over HTTP
    assert client.get_run(run_id).info.status == "FINISHED"
    info = mlflow.models.get_model_info(f"runs:/{run_id}/policy")
    assert tensor_spec(info.signature.inputs) == ("float32", (-1, 4))
    assert [a.path for a in client.list_artifacts(run_id, "videos")] == ["videos/final.gif"]
    assert any(k.startswith("system/cpu") for k in client.get_run(run_id).data.metrics)
    assert client.get_model_version_by_alias("served-policy", "newest").run_id == run_id
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/policy")
    assert model.predict(model.input_example).shape == (5,)  # the logged example, five observations


def run_cli(main, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as stop:  # argparse's own exits
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "missing", "message"),
    [
        (["--register-model", "team/x"], None, "register_model: the MLflow model registry refuses 'team/x'"),
        (["--model-alias", "latest"], None, "model_alias: the MLflow model registry refuses 'latest'"),
        (["--register-model", "p", "--no-track"], None, "register_model: needs a tracked run"),
        (["--video-every-eval"], None, "video_every_eval: needs --video"),
        (["--video"], "pygame", "pip install 'ppo_torchrl[video]'"),
        (["--video"], "imageio", "video: needs imageio, not installed"),
        (["--video", "--video-format", "mp4"], "imageio_ffmpeg", "needs imageio-ffmpeg"),
        ([], "psutil", "system_metrics: needs psutil"),
        (["--video", "--checkpoint-dir", "/proc/runs"], None, "checkpoint_dir: cannot write under /proc"),
    ],
)
def test_bad_train_flags_are_one_line_before_anything_starts(
    args, missing, message, store, tmp_path, monkeypatch, capsys
) -> None:
    if missing:  # an import of it now fails, as when it is not installed
        monkeypatch.setitem(sys.modules, missing, None)
    code, _, err = run_cli(train_main, args, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert all_runs(store) == [] and not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing-folder/agent.gif", "output: folder does not exist"),
        ("/proc/agent.gif", "output: cannot write /proc/agent.gif"),
        ("agent.avi", "video: agent.avi: give a .gif or .mp4 file name"),
    ],
)
def test_bad_video_paths_are_one_line(target, message, cartpole_run, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    checkpoint = Path(cartpole_run["folder"]) / cartpole_run["summary"]["best_checkpoint"]
    code, out, err = run_cli(evaluate_main, [str(checkpoint), "--video", target], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_evaluate_with_a_missing_checkpoint_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(evaluate_main, [str(tmp_path / "nope.pt"), "--video", "agent.gif"], capsys)
    assert code == 2 and not (tmp_path / "agent.gif").exists()
    assert err.strip().splitlines() == [f"error: checkpoint not found: {tmp_path / 'nope.pt'}"]


def test_a_model_that_cannot_be_made_costs_the_run_nothing(store, monkeypatch, capsys) -> None:
    import ppo_torchrl.tracking.model as mlflow_model

    def broken(*args, **kwargs):
        raise RuntimeError("export failed")

    monkeypatch.setattr(mlflow_model, "log_policy", broken)
    assert train_main(["--frames", "1024", "--eval-episodes", "2", "--no-system-metrics"]) == 0
    err = capsys.readouterr().err
    assert "warning: the MLflow model was not logged (RuntimeError: export failed)" in err
    [run] = all_runs(store)
    assert run.info.status == "FINISHED"  # the status after it still went


def test_a_run_explains_itself_in_mlflow(cartpole_run: dict) -> None:
    """Source, git commit, user, description and filter tags, read back through the client."""
    client = MlflowClient(cartpole_run["uri"])
    summary = cartpole_run["summary"]
    run = client.get_run(summary["run_id"])
    tags = run.data.tags
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    if head:  # a git checkout (CI's clean clone is one)
        assert tags["mlflow.source.git.commit"] == head
    assert tags["mlflow.source.name"].endswith("ppo_torchrl/train.py")
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]
    assert {"env": "CartPole-v1", "algorithm": "PPO", "preset": "CartPole-v1"}.items() <= tags.items()
    assert tags["solved"] == str(summary["solved"]).lower()
    note = tags["mlflow.note.content"]
    assert "**PPO on CartPole-v1**" in note and f"{summary['final_eval_mean']:.1f}" in note
    assert "python -m ppo_torchrl.evaluate" in note and "python -m ppo_torchrl.train --resume" in note
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # metric names grouped by prefix: one section each in MLflow's UI
    groups = {name.partition("/")[0] for name in run.data.metrics}
    assert groups == {"train", "loss", "eval", "perf", "system"}, sorted(run.data.metrics)
    assert {"loss/objective", "train/clip_fraction", "eval/return", "perf/frames_per_second"} <= set(
        run.data.metrics
    )
