"""Collection in worker processes and on Ray (run/collection.py), on this machine's real
TorchRL collectors and a real local Ray instance with 2 CPUs.

What must hold whatever the backend: batches of exactly ``[num_envs, rollout_steps]``,
collected with the learner's current weights (and observation statistics), an exact frame
count through a checkpoint and resume, and CartPole solved from the command line.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.checkpoint import load_checkpoint
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("processes", "ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs, as this machine) for the in-process tests."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield
    ray.shutdown()


def small_config(collector: str, tmp_path: Path, **overrides) -> PPOConfig:
    values = dict(
        collector=collector,
        collectors=2,
        env_backend="gymnasium",
        num_envs=8,
        rollout_steps=32,
        minibatch_size=128,
        frames=2048,
        eval_every_frames=0,
        eval_episodes=5,
        checkpoint_every_frames=0,
        normalize_observations=True,  # its statistics change every update: they must reach workers too
        track=False,
        checkpoint_dir=str(tmp_path),
    )
    return PPOConfig(**{**values, **overrides})


@pytest.mark.parametrize("collector", BACKENDS)
@pytest.mark.slow
def test_workers_act_with_the_learners_current_weights(collector, tmp_path, request):
    """After every update the workers' policy is the learner's: the log-probabilities they
    recorded for their actions equal the learner's on the same observations."""
    if collector == "ray":
        request.getfixturevalue("local_ray")
    trainer = Trainer(small_config(collector, tmp_path))
    learner = trainer.learner
    try:
        for update in range(3):
            before = copy.deepcopy(trainer.actor)  # the weights the workers should act with
            trainer._learn()
            batch = learner.last_batch
            assert batch.batch_size == (8, 32)
            with torch.no_grad():
                mine = before.get_dist(batch.select("observation").clone()).log_prob(batch["action"])
            stale = f"stale weights after {update} updates"
            torch.testing.assert_close(mine, batch["action_log_prob"], msg=stale)
        # The workers' envs were seeded apart (seed + i * envs_per_worker): no two start alike.
        first = next(learner._batches)["observation"][:, 0]
        assert len({tuple(row.tolist()) for row in first}) == 8
    finally:
        learner.shutdown()


@pytest.mark.slow
def test_frames_stay_exact_through_a_checkpoint_on_worker_processes(tmp_path):
    """Interrupted after its second update and resumed in a new trainer, the run spends its
    budget exactly; the episodes in flight restart (workers cannot hand over env state)."""
    cfg = small_config("processes", tmp_path, frames=4096)
    asked = iter([False, True])
    first = Trainer(cfg, run_dir=tmp_path / "run")
    interrupted = first.run(should_stop=lambda: next(asked, True))
    assert interrupted.interrupted and interrupted.frames == 2 * 256
    state = load_checkpoint(interrupted.checkpoint)
    assert state["env"] is None  # no env state to restore on this backend
    second = Trainer(cfg, run_dir=tmp_path / "run")
    second.load_state_dict(state, interrupted.checkpoint)
    assert second.learner.episode_returns.carry is None  # the partial returns in flight are dropped
    result = second.run()
    assert result.frames == 4096 and result.updates == 16


@pytest.mark.parametrize("collector", BACKENDS)
@pytest.mark.slow
def test_cartpole_solved_from_the_command_line(collector, tmp_path):
    """The issue's command (short budget): CartPole on the gymnasium backend, two workers."""
    summary = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "ppo_torchrl.train", "--env", "CartPole-v1", "--env-backend", "gymnasium",
           "--collector", collector, "--collectors", "2", "--frames", "20480", "--eval-every-frames", "4096",
           "--eval-episodes", "20", "--no-track", "--checkpoint-dir", str(tmp_path),
           "--summary-json", str(summary)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(summary.read_text())
    assert result["solved"] and result["final_eval_mean"] >= 475, result
    assert result["frames"] % 512 == 0 and result["frames"] <= 20480


RUN_TRAIN = "import sys; from ppo_torchrl.cli.train import main; sys.exit(main(sys.argv[1:]))"


def run_train(*flags: str, env: dict[str, str] | None = None, code: str = RUN_TRAIN):
    return subprocess.run(
        [sys.executable, "-c", code, "--no-track", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_ray_without_ray_installed_names_the_extra():
    no_ray = "import sys; sys.modules['ray'] = None\n" + RUN_TRAIN
    done = run_train("--collector", "ray", "--collectors", "2", code=no_ray)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: collector: 'ray' needs Ray, which is not installed: pip install 'ppo_torchrl[distributed]'"
    ]


@pytest.mark.slow
def test_an_unreachable_ray_cluster_is_one_line():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for flags, env in (
        (["--ray-address", f"127.0.0.1:{port}"], {}),
        ([], {"RAY_ADDRESS": f"127.0.0.1:{port}"}),
    ):
        done = run_train("--collector", "ray", "--collectors", "2", *flags, env=env)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"no Ray cluster answers at 127.0.0.1:{port}" in lines[0], lines


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"collectors": 2}, "collectors: 2 workers need --collector processes or ray"),
        ({"collector": "processes", "collectors": 3}, "num_envs (16) must split evenly between 3"),
        ({"ray_address": "10.0.0.1:6379"}, "ray_address: only used with --collector ray"),
        ({"collector": "threads"}, "collector: must be one of 'single', 'processes', 'ray'"),
    ],
)
def test_collector_settings_that_cannot_work_are_refused(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        PPOConfig(**values)
