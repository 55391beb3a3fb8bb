"""``train --num-seeds N``: many seeds in one program, end to end, with the real CLI and files.

One real 3-seed CartPole run (torch-native env, gymnasium's env for the final evaluation)
is shared by the tests of what it leaves behind: a checkpoint holding every seed, from
which ``evaluate`` and ``export`` take one with ``--seed-index``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._pytree import tree_leaves

from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.seeds_trainer import SeedsTrainer

FRAMES = 6144


def cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"ppo_torchrl.{module}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("seeds")
    done = cli(
        "train", "--num-seeds", "3", "--seed", "4", "--frames", str(FRAMES), "--no-system-metrics",
        "--eval-episodes", "20", "--summary-json", "s.json", cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder, json.loads((folder / "s.json").read_text()), done


def test_a_run_trains_every_seed_and_reports_each(run: tuple) -> None:
    folder, summary, done = run
    assert summary["seeds"] == [4, 5, 6]
    assert summary["frames_per_seed"] == FRAMES // 512 * 512
    assert len(summary["final_eval_means"]) == 3 and len(summary["evals"]) == 3
    assert summary["final"]["runs"] == 3
    # learning happened (a random CartPole policy scores ~22), for every seed
    assert min(summary["final_eval_means"]) > 60, summary["final_eval_means"]
    assert "final greedy IQM" in done.stdout and "frames/s over all seeds" in done.stdout
    run_dir = Path(folder / summary["checkpoint"]).parent
    assert {"final.pt", "best.pt", "seeds.json", "seeds.md", "learning_curves.png"} <= {
        p.name for p in run_dir.iterdir()
    }


def test_the_run_is_one_mlflow_run_with_every_seed_and_the_aggregate(run: tuple) -> None:
    from mlflow.tracking import MlflowClient

    folder, summary, _ = run
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    [found] = client.search_runs([client.get_experiment_by_name("ppo_torchrl").experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == "CartPole-v1-seeds4-6"
    metrics = found.data.metrics
    for k, seed in enumerate(summary["seeds"]):
        assert metrics[f"eval/final_seed{seed}"] == pytest.approx(summary["final_eval_means"][k])
    assert metrics["eval/final_iqm"] == pytest.approx(summary["final"]["iqm"])
    assert metrics["eval/final_iqm_ci_low"] <= metrics["eval/final_iqm"] <= metrics["eval/final_iqm_ci_high"]
    assert "eval/return_iqm" in metrics and "loss/objective" in metrics
    assert found.data.params["num_seeds"] == "3"
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"seeds.json", "seeds.md", "learning_curves.png", "final.pt", "best.pt"} <= artifacts


def test_evaluate_takes_one_seed_and_repeats_its_final_evaluation(run: tuple) -> None:
    folder, summary, _ = run
    done = cli(
        "evaluate", summary["checkpoint"], "--seed-index", "1", "--seed", "5", "--episodes", "20", cwd=folder
    )
    assert done.returncode == 0, done.stderr
    assert f"greedy return {summary['final_eval_means'][1]:.1f}" in done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "holds 3 seeds (4..6) trained together: pick one with --seed-index K (0..2)"),
        (["--seed-index", "3"], "--seed-index 3 is out of range"),
    ],
)
def test_a_seeds_checkpoint_without_a_valid_index_is_one_line(run: tuple, args: list, says: str) -> None:
    folder, summary, _ = run
    done = cli("evaluate", summary["checkpoint"], *args, cwd=folder)
    assert done.returncode == 2 and says in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_best_pt_holds_each_seed_at_its_own_best_evaluation(run: tuple) -> None:
    folder, summary, _ = run
    best = Path(folder / summary["checkpoint"]).with_name("best.pt")
    state = torch.load(best, weights_only=True)
    assert state["kind"] == "best"
    for k, points in enumerate(summary["evals"]):
        assert state["best"]["means"][k] == pytest.approx(max(p[2] for p in points))
    done = cli("evaluate", str(best), "--seed-index", "0", "--episodes", "5", cwd=folder)
    assert done.returncode == 0 and "greedy return" in done.stdout, done.stderr


def test_export_takes_one_seed(run: tuple) -> None:
    folder, summary, _ = run
    done = cli("export", summary["checkpoint"], "--seed-index", "2", "--torch-export", "p.pt2", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "256/256 actions identical" in done.stdout and (folder / "p.pt2").is_file()


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path: Path) -> None:
    """Train 2 seeds for 4 iterations; train them for 2, then ``--resume`` the checkpoint to 4:
    every seed's weights, Adam moments and env states end bit-identical (the program's whole
    state, stream positions included, travels in final.pt). A best.pt is refused in one line."""
    common = ["--num-seeds", "2", "--no-track", "--no-anneal-lr", "--eval-every-frames", "0",
              "--eval-episodes", "2"]  # fmt: skip
    whole, half = tmp_path / "whole", tmp_path / "half"
    for folder, frames in ((whole, "2048"), (half, "1024")):
        folder.mkdir()
        done = cli("train", *common, "--frames", frames, "--summary-json", "s.json", cwd=folder)
        assert done.returncode == 0, done.stderr
    checkpoint = json.loads((half / "s.json").read_text())["checkpoint"]
    done = cli("train", "--resume", checkpoint, "--frames", "2048", cwd=half)
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout and "at 1,024 frames per seed" in done.stdout
    [a], [b] = (list((f / "checkpoints").glob("*/final.pt")) for f in (whole, half))
    ends = [torch.load(path, weights_only=True) for path in (a, b)]
    assert ends[0]["progress"]["frames"] == ends[1]["progress"]["frames"] == 2048
    for key in ("learners", "env", "episodes", "drawn"):
        mine, theirs = (tree_leaves(end["program"][key]) for end in ends)
        assert len(mine) == len(theirs) > 0
        assert all(
            torch.equal(torch.as_tensor(x), torch.as_tensor(y)) for x, y in zip(mine, theirs, strict=True)
        ), key
    best = cli("train", "--resume", str(Path(checkpoint).with_name("best.pt")), cwd=half)
    assert best.returncode == 2 and len(best.stderr.strip().splitlines()) == 1
    assert "final.pt" in best.stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--compile", "--cudagraphs", "--device", "cpu"], "need a CUDA device"),
        (["--cudagraphs"], "needs --compile"),
    ],
)
def test_cuda_graphs_on_a_cpu_or_uncompiled_are_refused_in_one_line(
    tmp_path: Path, flags: list, says: str
) -> None:
    done = cli("train", "--num-seeds", "2", "--no-track", *flags, cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert says in done.stderr and not (tmp_path / "checkpoints").exists()


def test_an_env_without_a_torch_native_copy_is_refused_with_the_envs_that_can(tmp_path: Path) -> None:
    done = cli("train", "--num-seeds", "4", "--env", "LunarLander-v3", "--no-track", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "CartPole-v1" in done.stderr and "LunarLander-v3" in done.stderr
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_seed_k_trains_the_same_alone_or_beside_others() -> None:
    """Per-seed streams and per-seed update state: seed 6 in a batch of seeds 4..7 ends two
    iterations with the weights seed 6 gets alone (up to float rounding of batched matmuls)."""
    weights = []
    for seed, n in ((4, 4), (6, 1)):
        trainer = SeedsTrainer(
            PPOConfig(seed=seed, num_seeds=n, track=False, frames=4096), torch.device("cpu")
        )
        for i in range(2):
            trainer.iterate(i)
        weights.append(trainer.actor_weights())
    together, alone = weights[0][2], weights[1][0]
    assert torch.allclose(together, alone, rtol=1e-4, atol=1e-5), float((together - alone).abs().max())
    assert not torch.allclose(weights[0][1], alone, atol=1e-3)  # and seeds do differ


@pytest.mark.slow
def test_the_compiled_program_trains_as_the_eager_one() -> None:
    """``--compile``: the rollout, GAE and update as torch.compile graphs (fullgraph, C++
    wrapper) end two iterations with the eager program's weights, episodes and stream
    positions. Small shapes keep the compilation to about a minute on a 2-core CPU."""
    cfg = dict(num_seeds=2, num_envs=2, rollout_steps=8, minibatch_size=8, epochs=2, frames=32, track=False)
    ends = []
    for compiled in (False, True):
        trainer = SeedsTrainer(PPOConfig(**cfg, compile=compiled), torch.device("cpu"))
        for i in range(2):
            trainer.iterate(i)
        ends.append(trainer.program.state_dict())
    eager, compiled_ = ends
    assert eager["drawn"] == compiled_["drawn"] and eager["drawn"]["mb"] > 0
    for x, y in zip(tree_leaves(eager["learners"]), tree_leaves(compiled_["learners"]), strict=True):
        assert torch.allclose(x, y, rtol=0, atol=1e-5), float((x - y).abs().max())
    assert torch.equal(eager["env"]["elapsed"], compiled_["env"]["elapsed"])


@pytest.mark.slow
def test_sigterm_keeps_every_seed_and_exits_143(tmp_path: Path) -> None:
    """A real SIGTERM mid-run: the program stops between iterations, writes final.pt with
    every seed, says where, and exits 128 + 15."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "ppo_torchrl.train", "--num-seeds", "2", "--frames", "2000000", "--no-track",
         "--eval-every-frames", "2048", "--eval-episodes", "5"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # wait for the first evaluation line: training is under way
        if "frames/seed]" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "every seed's state in" in err and "Traceback" not in err
    [final] = list((tmp_path / "checkpoints").glob("*/final.pt"))
    state = torch.load(final, weights_only=True)
    assert state["seeds"] == [0, 1] and 0 < state["progress"]["frames"] < 2_000_000
