"""RL on a user's own task: prompts from a file, TRL-style reward functions, any causal LM.

Everything runs on tiny random models the tests save to disk (`tests/tiny_lms.py`): the
point is the plumbing a user meets — what their reward functions receive, what a run
records, which bad input is one line and exit 2 with nothing trained or written — not
learning. Learning on a real model is measured in experiments/rlhf_new_task.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import all_runs
from tests.test_rlhf import run_main
from tests.tiny_lms import ARCHITECTURES, save_tiny_lm

pytest.importorskip("peft")

REWARDS = '''
import json, os

def has_blue(prompts, completions, colour, **kwargs):
    """1 where the completion names the row's colour."""
    return [float(c in (x if isinstance(x, str) else x[0]["content"])) for c, x in zip(colour, completions)]

def length(completions, **kwargs):
    return [len(c if isinstance(c, str) else c[0]["content"]) / 100 for c in completions]

def record(prompts, completions, completion_ids, colour, index, **kwargs):
    """Writes what it was given, then scores nothing (None): to be read back by a test."""
    with open(os.environ["RECORD_TO"], "a") as f:
        f.write(json.dumps({"prompts": prompts, "completions": completions, "completion_ids": completion_ids,
                            "colour": colour, "index": index, "kwargs": sorted(kwargs)}) + "\\n")
    return [None] * len(prompts)

def constant(completions, **kwargs):
    return [0.5] * len(completions)

def too_few(completions, **kwargs):
    return [0.0] * (len(completions) - 1)

def a_string(completions, **kwargs):
    return ["good"] * len(completions)

def not_a_number(completions, **kwargs):
    return [float("nan")] * len(completions)

def raises(completions, **kwargs):
    raise ValueError("the grader is down")

def flat_on_even(completions, index, **kwargs):
    """Every completion of an even row scores 1 (a flat GRPO group); odd rows by length."""
    return [1.0 if i % 2 == 0 else len(c) / 10 for c, i in zip(completions, index)]

CALLS = {"n": 0}

def raises_later(completions, **kwargs):
    """Fine for the check before training and the base evaluation, then fails."""
    CALLS["n"] += 1
    if CALLS["n"] > 3:
        raise RuntimeError("grader timed out")
    return [0.5] * len(completions)
'''


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def task_rows(n: int = 24, chat: bool = False) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        question = f"Name a colour, {i}"
        prompt: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]
        rows.append({"prompt": prompt if chat else question, "colour": "blue", "index": i})
    return rows


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random models of every supported architecture, saved once per module."""
    root = tmp_path_factory.mktemp("tiny_lms")
    for arch in ARCHITECTURES:
        save_tiny_lm(root / arch, arch)
    save_tiny_lm(root / "no_template", "llama", chat_template=False)
    return root


@pytest.fixture
def task(tmp_path: Path) -> Path:
    write_rows(tmp_path / "prompts.jsonl", task_rows())
    (tmp_path / "rewards.py").write_text(REWARDS)
    return tmp_path


SMALL = ["--rl-updates", "2", "--prompts-per-update", "8", "--max-new-tokens", "6", "--minibatch-size", "16"]


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(models: Path, task: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """``python -m ppo_torchrl.rlhf`` on the tiny models, run in this process (its exit status,
    stdout, stderr) from the task folder, with ``env`` set."""

    def run(*extra: str, arch: str = "llama", **env: str) -> Done:
        monkeypatch.chdir(task)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        argv = ["--model-path", str(models / arch), "--prompts", "prompts.jsonl", *SMALL, *extra]
        if "--track" not in extra:
            argv.append("--no-track")
        return Done(*run_main(argv, capsys))

    return run


def one_error_line(done: Done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip() and "Warning" not in line]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return errors[0]


# --- a run from files --------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_trains_from_a_prompts_file(cli, models: Path, task: Path, arch: str) -> None:
    done = cli(
        "--reward", "rewards.py:has_blue", "--reward", "rewards.py:length",
        "--reward-weights", "1", "0.5", "--summary-json", "s.json", arch=arch,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    s = json.loads((task / "s.json").read_text())
    assert s["updates"] == 2 and s["task"] == "files"
    assert set(s["final_eval_rewards"]) == {"has_blue", "length"}
    assert s["rewards"] == {"has_blue": 1.0, "length": 0.5}
    # the total is the weighted sum of each function's held-out mean
    for when in ("base", "final"):
        each = s[f"{when}_eval_rewards"]
        assert s[f"{when}_eval_reward"] == pytest.approx(each["has_blue"] + 0.5 * each["length"], abs=1e-5)
    assert s["held_out_prompts"] == 2 and s["training_prompts"] == 22  # the default --eval-fraction 0.1
    out = Path(s["output_dir"])
    assert (out / "adapter" / "adapter_config.json").is_file() and (
        out / "tables" / "held_out.json"
    ).is_file()


def test_rewards_get_trl_arguments_and_chat_completions_as_messages(cli, models: Path, task: Path) -> None:
    """Each function is called as GRPOTrainer calls its reward_funcs: keyword prompts,
    completions (a list of one assistant message where the prompt is chat messages),
    completion_ids, and every other field as a keyword list in row order."""
    write_rows(task / "prompts.jsonl", task_rows(chat=True))
    record = task / "record.jsonl"
    done = cli(
        "--reward", "rewards.py:has_blue", "--reward", "rewards.py:record",
        "--reward-weights", "1", "1", RECORD_TO=str(record),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(calls) >= 4  # the check before training, base evaluation, 2 updates, final evaluation
    for call in calls:
        n = len(call["prompts"])
        assert call["kwargs"] == []  # nothing beyond the columns and TRL's three
        assert all(p[0] == {"role": "system", "content": "Be brief."} for p in call["prompts"])
        assert all(isinstance(c, list) and c[0]["role"] == "assistant" for c in call["completions"])
        assert len(call["completion_ids"]) == len(call["colour"]) == len(call["index"]) == n
        assert all(isinstance(i, int) for ids in call["completion_ids"] for i in ids)
        # the columns line up with the prompts: row i's index is in its question
        assert all(
            p[1]["content"].endswith(f", {i}") for p, i in zip(call["prompts"], call["index"], strict=True)
        )


def test_trl_reward_function_runs_unchanged(cli, models: Path, task: Path) -> None:
    """TRL's own `think_format_reward` (trl.rewards), a function written for GRPOTrainer's
    conversational data with its **kwargs signature, passed by its module path."""
    pytest.importorskip("trl")
    write_rows(task / "prompts.jsonl", task_rows(chat=True))
    done = cli("--reward", "trl.rewards:think_format_reward", "--summary-json", "s.json")
    assert done.returncode == 0, done.stderr[-2000:]
    s = json.loads((task / "s.json").read_text())
    assert s["final_eval_rewards"]["think_format_reward"] == 0.0  # a random model writes no <think> tags


def test_metrics_per_function_and_held_out_table_in_mlflow(cli, models: Path, task: Path, store: str) -> None:
    argv = ["--reward", "rewards.py:has_blue", "--reward", "rewards.py:length", "--track"]
    done = cli(*argv, MLFLOW_TRACKING_URI=store)
    assert done.returncode == 0, done.stderr[-2000:]
    (only,) = all_runs(store)
    assert only.info.status == "FINISHED"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    for name in ("reward/has_blue", "reward/length", "train/reward", "train/beta"):
        assert len(client.get_metric_history(only.info.run_id, name)) == 2, name
    assert "eval/final_eval_reward" in only.data.metrics
    tables = [a.path for a in client.list_artifacts(only.info.run_id, "tables")]
    assert "tables/held_out.json" in tables
    held = json.loads(Path(client.download_artifacts(only.info.run_id, "tables/held_out.json")).read_text())
    assert held["columns"][:3] == ["prompt", "base response", "base reward"] and len(held["data"]) == 2


def test_a_saved_dataset_folder_and_an_eval_file(cli, models: Path, task: Path) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(task_rows(16)).save_to_disk(str(task / "train_ds"))
    write_rows(task / "eval.jsonl", task_rows(5))
    argv = ["--prompts", "train_ds", "--eval-prompts", "eval.jsonl", "--reward", "rewards.py:has_blue"]
    done = cli(*argv, "--summary-json", "s.json")
    assert done.returncode == 0, done.stderr[-2000:]
    s = json.loads((task / "s.json").read_text())
    assert (s["training_prompts"], s["held_out_prompts"]) == (16, 5)


def test_two_functions_of_one_file_share_its_module(task: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file runs once: module-level state (a client, a cache, a counter) is one."""
    from ppo_torchrl.rlhf.real.rewards import build_rewards

    monkeypatch.chdir(task)
    first, second = build_rewards(["rewards.py:has_blue", "rewards.py:length"], [], None)
    assert first.fn.__globals__ is second.fn.__globals__


# --- the knobs ----------------------------------------------------------------------------------
def history_of(task: Path) -> list[dict[str, Any]]:
    (folder,) = (task / "rlhf_runs").iterdir()
    return json.loads((folder / "history.json").read_text())


def test_dynamic_sampling_drops_flat_groups_and_refills(cli, models: Path, task: Path) -> None:
    argv = ["--reward", "rewards.py:flat_on_even", "--algo", "grpo", "--group-size", "2"]
    done = cli(*argv, "--dynamic-sampling", "3", "--rl-updates", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    history = history_of(task)
    assert sum(h["groups_dropped"] for h in history) >= 3  # 2 of 4 groups a batch are flat
    assert all(h["sampling_rounds"] >= 2 for h in history)
    # the kept batch holds no flat group: rewards vary within every group it trained on
    assert all(h["completions"] <= 8 for h in history)


def test_dynamic_sampling_with_every_group_flat_trains_on_the_batch_it_has(cli, task: Path) -> None:
    argv = [
        "--reward",
        "rewards.py:constant",
        "--algo",
        "grpo",
        "--group-size",
        "2",
        "--dynamic-sampling",
        "2",
    ]
    done = cli(*argv, "--rl-updates", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    history = history_of(task)
    assert all(h["groups_dropped"] == 3 * 4 and h["completions"] == 8 for h in history)  # 3 rounds, 4 groups


def test_adaptive_kl_moves_beta_by_the_controllers_rule(cli, models: Path, task: Path) -> None:
    argv = ["--reward", "rewards.py:length", "--kl-target", "0.05", "--kl-horizon", "16", "--beta", "0.1"]
    done = cli(*argv, "--rl-updates", "3", "--rl-lr", "1e-2")
    assert done.returncode == 0, done.stderr[-2000:]
    history = history_of(task)
    beta = 0.1
    for h in history:  # beta of update k+1 from update k's KL: beta * (1 + clip(kl / target - 1) * n / H)
        assert h["beta"] == pytest.approx(beta, rel=1e-6)
        beta *= 1 + min(max(h["kl_to_ref"] / 0.05 - 1, -0.2), 0.2) * h["completions"] / 16
    assert len({round(h["beta"], 9) for h in history}) == 3, "beta never moved"
    import torch

    (folder,) = (task / "rlhf_runs").iterdir()
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert state["beta"] == pytest.approx(beta, rel=1e-6) and state["cursor"] == 3 * 8


def test_clip_epsilon_high_reaches_clip_ppo_loss(models: Path) -> None:
    from ppo_torchrl.rlhf.config import RLHFConfig

    cfg = RLHFConfig(model_path=str(models / "llama"), prompts="p", reward=["r.py:f"], clip_epsilon_high=0.28)
    from ppo_torchrl.core.loss import make_loss
    from ppo_torchrl.core.params import LossParams

    params = cfg.params(LossParams)
    assert (params.clip_epsilon, params.clip_epsilon_high) == (0.2, 0.28)
    loss = make_loss(params, _tiny_actor(), None)
    assert float(loss.clip_epsilon_low) == pytest.approx(0.2) and float(
        loss.clip_epsilon_high
    ) == pytest.approx(0.28)


def _tiny_actor():
    import torch
    from tensordict.nn import TensorDictModule
    from torchrl.modules import ProbabilisticActor

    net = TensorDictModule(torch.nn.Linear(2, 3), in_keys=["observation"], out_keys=["logits"])
    return ProbabilisticActor(net, in_keys=["logits"], distribution_class=torch.distributions.Categorical)


# --- bad input: one line, exit 2, nothing trained or written ------------------------------------
def bad(cli, folder: Path, *extra: str) -> str:
    done = cli(*extra)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert not (folder / "rlhf_runs").exists(), "a run folder was made for a run that never started"
    return one_error_line(done)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ('{"prompt": "a"}\n{"question": "b"}\n', "line 2 has no 'prompt' field"),
        ("", "is empty"),
        ("\n\n", "is empty"),
        ('{"prompt": "a"}\n{"prompt": "b"\n', "line 2 is not JSON"),
        ('{"prompt": "a"}\n["b"]\n', "line 2 is not a JSON object"),
        ('{"prompt": ""}\n', "'prompt' is empty"),
        ('{"prompt": [{"role": "user"}]}\n', "messages must be objects with"),
    ],
)
def test_bad_prompt_files(cli, models: Path, task: Path, rows: str, expected: str) -> None:
    (task / "prompts.jsonl").write_text(rows)
    assert expected in bad(cli, task, "--reward", "rewards.py:has_blue")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("missing.py:f", "no such file: missing.py"),
        ("rewards.py:nope", "has no function 'nope'"),
        ("rewards.py", "expected PATH.py:FUNC"),
        ("rewards.py:too_few", "returned 3 values for 4 completions"),  # checked on 4 rows
        ("rewards.py:a_string", "returned 'good', not a number"),
        ("rewards.py:not_a_number", "returned nan"),
        ("rewards.py:raises", "raised ValueError: the grader is down"),
        ("no_such_module:f", "cannot import module no_such_module"),
    ],
)
def test_bad_reward_functions(cli, models: Path, task: Path, spec: str, expected: str) -> None:
    line = bad(cli, task, "--reward", spec)
    assert expected.split(" for ")[0] in line, line


def test_other_bad_input(cli, models: Path, task: Path) -> None:
    assert "reward_weights: 1 weights for 2 rewards" in bad(
        cli,
        task,
        "--reward",
        "rewards.py:has_blue",
        "--reward",
        "rewards.py:length",
        "--reward-weights",
        "1",
    )
    assert "needs --reward PATH.py:FUNC or --reward-model DIR" in bad(cli, task)
    assert "no such file or folder: nowhere.jsonl" in bad(
        cli, task, "--reward", "rewards.py:has_blue", "--eval-prompts", "nowhere.jsonl"
    )
    # a causal LM is not a reward model
    line = bad(cli, task, "--reward-model", str(models / "llama"))
    assert "reward_model" in line and "sequence-classification" in line, line
    # chat messages need a chat template
    write_rows(task / "prompts.jsonl", task_rows(chat=True))
    line = bad(cli, task, "--reward", "rewards.py:has_blue", "--model-path", str(models / "no_template"))
    assert "chat template" in line


def test_a_reward_that_fails_mid_run_stops_with_its_checkpoint(
    cli, models: Path, task: Path, store: str
) -> None:
    done = cli(
        "--reward", "rewards.py:raises_later", "--rl-updates", "4", "--track",
        MLFLOW_TRACKING_URI=store,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    line = one_error_line(done)
    assert "grader timed out" in line and "in update 2" in line and "after update 1" in line, line
    (only,) = all_runs(store)
    assert only.info.status == "FAILED"
    (folder,) = (task / "rlhf_runs").iterdir()
    assert (folder / "checkpoint.pt").is_file()
    assert "resume with: python -m ppo_torchrl.rlhf --resume" in line
