"""One checkpoint schema, checked whole: every damaged or foreign checkpoint is refused by both
`--resume` and `ppo_torchrl.evaluate` with one line on stderr, exit status 2, and nothing
started (no MLflow run, no file written).

The good checkpoint each variant damages is a real one, written by a short training run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ppo_torchrl.cli.train import main as train_main
from ppo_torchrl.evaluate import main as evaluate_main
from ppo_torchrl.run.checkpoint import FIELDS, load_checkpoint
from tests.conftest import all_runs

Damage = Callable[[dict[str, Any]], Any]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """final.pt of a real (untracked) 1,024-frame CartPole run."""
    folder = tmp_path_factory.mktemp("good")
    argv = ["--no-track", "--frames", "1024", "--eval-episodes", "2", "--checkpoint-dir", str(folder)]
    assert train_main(argv) == 0
    (path,) = folder.glob("*/final.pt")
    return path


def raw(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def without(field: str) -> Damage:
    return lambda state: {k: v for k, v in state.items() if k != field}


def changed(update: Callable[[dict[str, Any]], None]) -> Damage:
    def damage(state: dict[str, Any]) -> dict[str, Any]:
        update(state)
        return state

    return damage


def first_weight(state: dict[str, Any]) -> str:
    return next(k for k in state["actor"] if k.endswith("weight"))


STATE_DAMAGE: dict[str, Damage] = {
    **{f"missing {field}": without(field) for field in ("format_version", *FIELDS)},
    "weights of the wrong shape": changed(
        lambda s: s["actor"].__setitem__(first_weight(s), torch.zeros(3, 3))
    ),
    "a weight missing": changed(lambda s: s["critic"].pop(next(iter(s["critic"])))),
    "a config that does not fit its weights": changed(
        lambda s: s["config"].__setitem__("hidden_sizes", [32, 32])
    ),
    "an invalid config": changed(lambda s: s["config"].__setitem__("clip_epsilon", 7.0)),
    "an unknown config field": changed(lambda s: s["config"].__setitem__("warp_drive", True)),
    "optimizer moments of the wrong shape": changed(
        lambda s: s["optimizer"]["state"][0].__setitem__("exp_avg", torch.zeros(2))
    ),
    "optimizer over other tensors": changed(lambda s: s["optimizer"]["param_groups"][0]["params"].pop()),
    "optimizer moments of a tensor that is not there": changed(
        lambda s: s["optimizer"]["state"].__setitem__(99, s["optimizer"]["state"][0])
    ),
    "progress of the wrong type": changed(lambda s: s.__setitem__("progress", [1, 2, 3])),
    "a progress counter that is text": changed(lambda s: s["progress"].__setitem__("frames", "1024")),
    "a torch RNG state that is not one": changed(lambda s: s["rng"].__setitem__("torch", torch.zeros(7))),
    "an env snapshot for other envs": changed(
        lambda s: s.__setitem__("env", {"state": torch.zeros(5, 4, dtype=torch.float64)})
    ),
    "program envs for other envs": changed(
        lambda s: s["program"]["env"].__setitem__("state", torch.zeros(1, 5, 4, dtype=torch.float64))
    ),
    "program moments that do not fit the networks": changed(
        lambda s: s["program"]["learners"].__setitem__("exp_avg", (torch.zeros(1, 3), torch.zeros(1, 3)))
    ),
    "program stream positions that are not counts": changed(
        lambda s: s["program"]["drawn"].__setitem__("act", -1)
    ),
    "episode returns for other envs": changed(
        lambda s: s.__setitem__("episode_carry", torch.zeros(5, dtype=torch.float64))
    ),
    "reward statistics the config does not use": changed(
        lambda s: s.__setitem__(
            "reward_norm", {"returns": torch.zeros(1), "count": 1.0, "mean": 0.0, "var": 1.0}
        )
    ),
    "a config normalising rewards without their statistics": changed(
        lambda s: s["config"].__setitem__("normalize_rewards", True)
    ),
    "a config normalising observations its weights lack": changed(
        lambda s: s["config"].__setitem__("normalize_observations", True)
    ),
    "tracking that is not a mapping": changed(lambda s: s.__setitem__("tracking", "run-123")),
    "an unknown field": changed(lambda s: s.__setitem__("notes", "hello")),
    "an unknown kind": changed(lambda s: s.__setitem__("kind", "nightly")),
    "evaluations without their seconds": changed(
        lambda s: s["progress"].__setitem__("eval_points", [[2048, 9.0, 0.0, 2]])
    ),
    "a future format": changed(lambda s: s.__setitem__("format_version", 99)),
}
FILE_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda data: data[: len(data) // 2],
    "random bytes": lambda data: random.Random(0).randbytes(len(data)),
    "empty": lambda data: b"",
}


def write_variant(name: str, good: Path, folder: Path) -> Path:
    path = folder / "run" / "last.pt"
    path.parent.mkdir(parents=True)
    if name in STATE_DAMAGE:
        torch.save(STATE_DAMAGE[name](raw(good)), path)
    elif name == "a pickled list":
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(FILE_DAMAGE[name](good.read_bytes()))
    return path


VARIANTS = [*STATE_DAMAGE, *FILE_DAMAGE, "a pickled list"]


def test_the_good_checkpoint_passes_and_holds_exactly_the_schema(good: Path) -> None:
    assert set(raw(good)) == {"format_version", *FIELDS}
    # CartPole learns on the program route: its envs, streams and Adam are the program's state.
    assert raw(good)["program"] is not None and raw(good)["env"] is None
    assert evaluate_main([str(good), "--episodes", "2"]) == 0


@pytest.mark.parametrize("tool", ["resume", "evaluate"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_damaged_checkpoint_is_one_line_exit_2_nothing_started(
    variant: str, tool: str, good: Path, store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_variant(variant, good, tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    if tool == "resume":
        code = train_main(["--resume", str(path)])  # tracking on: a started run would show
    else:
        code = evaluate_main([str(path), "--episodes", "2"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (variant, tool, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "last.pt" in lines[0], err
    assert "Traceback" not in err and out == ""
    assert all_runs(store) == []
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_resume_accepts_the_run_folder_and_format_1(good: Path, tmp_path: Path, store: str) -> None:
    """A run folder stands for its last.pt; a format-1 checkpoint (which also held a copy of
    three progress fields under ``counters``) resumes as well."""
    state = raw(good)
    progress = state["progress"]
    frames = progress["frames"]
    # Format 1 as it was written: no kind, no best evaluation, evaluations without seconds,
    # no reward normalisation.
    del state["kind"], progress["best_frames"], progress["best_mean"], state["reward_norm"]
    progress["eval_points"] = [[p[0], *p[2:]] for p in progress["eval_points"]]
    state.update(format_version=1, counters={k: progress[k] for k in ("frames", "episodes", "updates")})
    run = tmp_path / "old-run"
    run.mkdir()
    torch.save(state, run / "last.pt")
    migrated = load_checkpoint(run)
    assert migrated["progress"]["frames"] == frames and migrated["kind"] == "latest"
    assert "counters" not in migrated and all(p[1] is None for p in migrated["progress"]["eval_points"])
    argv = ["--resume", str(run), "--frames", str(frames + 1024), "--eval-episodes", "2", "--track"]
    assert train_main(argv) == 0
    assert load_checkpoint(run / "final.pt")["progress"]["frames"] == frames + 1024
    assert [r.info.status for r in all_runs(store)] == ["FINISHED"]


def test_a_format_2_checkpoint_loads_without_reward_norm(good: Path, tmp_path: Path) -> None:
    state = raw(good)
    del state["reward_norm"]
    state["format_version"] = 2
    torch.save(state, tmp_path / "f2.pt")
    assert load_checkpoint(tmp_path / "f2.pt")["reward_norm"] is None
    assert evaluate_main([str(tmp_path / "f2.pt"), "--episodes", "2"]) == 0


def test_a_checkpoint_loads_whatever_device_it_was_saved_from(good: Path) -> None:
    """Tensors are read onto the CPU first (map_location) and then copied into the run's own
    networks, so where they were saved does not matter; on a GPU machine the same file
    resumes on CUDA (checked by hand, see the README)."""
    state = raw(good)
    assert all(t.device.type == "cpu" for t in state["actor"].values())
    assert evaluate_main([str(good), "--episodes", "2", "--device", "cpu"]) == 0
