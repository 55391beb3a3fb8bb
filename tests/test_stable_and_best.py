"""Solved and stays solved: the evaluation history, the stable-solve point, best.pt, target_kl.

Stable solve = the first evaluation of the final unbroken run of evaluations at or above
the threshold, reported only when the whole budget was spent. best.pt = the run at its best
greedy evaluation (strictly better than every earlier one).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ppo_torchrl import PPOConfig, make_actor_critic, make_advantage, make_env, make_loss, make_update
from ppo_torchrl.cli.train import main as train_main
from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams
from ppo_torchrl.evaluate import main as evaluate_main
from ppo_torchrl.run.checkpoint import load_checkpoint
from ppo_torchrl.run.results import EvalPoint, stable_solve
from tests.conftest import all_runs

FAST = ["--frames", "8192", "--eval-every-frames", "2048", "--eval-episodes", "5"]


def points(*means: float) -> list[EvalPoint]:
    return [EvalPoint(1000 * (i + 1), 0.5 * (i + 1), m, 0.0, 100) for i, m in enumerate(means)]


@pytest.mark.parametrize(
    ("means", "expected"),
    [
        ((500, 500, 500), 1000),  # solved from the first evaluation on
        ((100, 480, 200, 475, 500), 4000),  # a dip after the first crossing: stability restarts
        ((100, 480, 500, 300), None),  # collapses at the end
        ((475,), 1000),  # the threshold itself counts
        ((), None),
    ],
)
def test_stable_solve_is_the_start_of_the_final_run_above_the_threshold(means, expected) -> None:
    found = stable_solve(points(*means), 475.0)
    assert (found.frames if found else None) == expected
    if found:
        assert found.train_seconds == 0.5 * found.frames / 1000
    assert stable_solve(points(*means), None) is None


def run_json(argv: list[str], tmp_path: Path) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    summary = tmp_path / "summary.json"
    assert train_main([*argv, "--summary-json", str(summary), "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    return json.loads(summary.read_text())


def test_the_summary_holds_the_evaluation_history_and_the_stable_point(tmp_path: Path, store: str) -> None:
    summary = run_json([*FAST, "--no-stop-when-solved", "--solved-threshold", "15", "--no-track"], tmp_path)
    evals = summary["evals"]
    assert [e["frames"] for e in evals] == [2048, 4096, 6144, 8192]
    assert all(set(e) == {"frames", "train_seconds", "mean", "std"} for e in evals)
    seconds = [e["train_seconds"] for e in evals]
    assert seconds == sorted(seconds) and seconds[-1] <= summary["train_seconds"]
    assert summary["final_eval_mean"] == evals[-1]["mean"]
    # The stable point is recomputed here from the history the summary itself gives.
    expected = stable_solve(
        [EvalPoint(e["frames"], e["train_seconds"], e["mean"], e["std"], 5) for e in evals], 15
    )
    assert expected is not None, "a greedy CartPole policy balances 15 steps after 8k frames"
    assert summary["stable_solved_at_frames"] == expected.frames
    assert summary["stable_solved_at_seconds"] == expected.train_seconds
    # best.pt holds the best evaluation, the first one reaching the maximum mean.
    means = [e["mean"] for e in evals]
    best = means.index(max(means))
    assert summary["best_eval_mean"] == means[best] and summary["best_eval_frames"] == evals[best]["frames"]
    state = load_checkpoint(summary["best_checkpoint"])
    assert state["kind"] == "best" and state["progress"]["frames"] == evals[best]["frames"]
    assert state["progress"]["best_mean"] == means[best]


def test_no_stable_point_when_the_run_stops_at_its_first_crossing_or_never_gets_there(
    tmp_path: Path, store: str
) -> None:
    stopped = run_json([*FAST, "--solved-threshold", "15", "--no-track"], tmp_path / "a")
    assert (
        stopped["solved"]
        and stopped["frames"] == stopped["solved_at_frames"] == stopped["evals"][-1]["frames"]
    )
    assert stopped["stable_solved_at_frames"] is None and stopped["stable_solved_at_seconds"] is None
    never = run_json(
        [*FAST, "--no-stop-when-solved", "--solved-threshold", "1e6", "--no-track"], tmp_path / "b"
    )
    assert not never["solved"] and never["stable_solved_at_frames"] is None


def test_best_checkpoint_is_logged_evaluated_and_not_resumed(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_json([*FAST, "--no-stop-when-solved"], tmp_path)
    out = capsys.readouterr().out
    assert (
        f"Best greedy evaluation: {summary['best_eval_mean']:.1f} at {summary['best_eval_frames']:,} frames"
        in out
    )
    (run,) = all_runs(store)
    from mlflow.tracking import MlflowClient

    logged = [a.path for a in MlflowClient(store).list_artifacts(run.info.run_id, "checkpoints")]
    assert sorted(logged) == ["checkpoints/best.pt", "checkpoints/final.pt"]
    best = Path(summary["best_checkpoint"])
    assert evaluate_main([str(best), "--episodes", "3"]) == 0
    capsys.readouterr()
    assert train_main(["--resume", str(best)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best evaluation" in err[0] and "last.pt" in err[0]
    assert len(all_runs(store)) == 1  # nothing started


def test_target_kl_stops_the_epochs_early_and_says_how_many_ran() -> None:
    env = make_env("CartPole-v1", 8, seed=0)
    torch.manual_seed(0)
    actor, critic = make_actor_critic(env)
    with torch.no_grad():
        batch = env.rollout(64, actor, break_when_any_done=False)

    def update(target_kl: float | None) -> dict[str, float]:
        torch.manual_seed(0)
        a, c = make_actor_critic(env)
        a.load_state_dict(actor.state_dict())
        c.load_state_dict(critic.state_dict())
        loss = make_loss(LossParams(clip_epsilon=0.2), a, c)
        params = UpdateParams(epochs=10, minibatch_size=64, max_grad_norm=0.5, lr=3e-3, target_kl=target_kl)
        return make_update(params, loss, make_advantage(GAEParams(gamma=0.99), c), seed=0)(batch.clone())

    full, early = update(None), update(1e-4)
    assert full["epochs_run"] == 10 and full["gradient_steps"] == 10 * 512 / 64
    assert 1 <= early["epochs_run"] < 10 and 1 <= early["gradient_steps"] < full["gradient_steps"]
    # k3 of every step taken (measured before it) stayed within 1.5 x target; the full run's did not.
    assert early["kl_k3"] <= 1.5e-4 < full["kl_k3"]
    assert full["kl_k3"] >= 0.0


def test_target_kl_is_a_config_field_that_reaches_the_update() -> None:
    cfg = PPOConfig(target_kl=0.02)
    assert cfg.params(UpdateParams).target_kl == 0.02
    assert PPOConfig(target_kl=None).params(UpdateParams).target_kl is None  # null in YAML: no early stop
