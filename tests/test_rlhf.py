"""The RLHF pipeline (python -m ppo_torchrl.rlhf), end to end on tiny real models.

Real GPT-2 models from transformers, a real MLflow SQLite store, real subprocesses for the
command line; nothing is mocked. Every config passes explicit tiny values (the defaults
are sized for a real run and may change). One tracked PPO pipeline run is shared by the
tests of its results and of its MLflow record.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

from ppo_torchrl.core.update import PPOUpdate
from ppo_torchrl.rlhf.__main__ import main as rlhf_main
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.tokens import RefKLPenalty
from ppo_torchrl.rlhf.toy.lm import load_models, reward_model_from, sequence_scores, tiny_tokenizer
from ppo_torchrl.rlhf.toy.pipeline import run_pipeline
from ppo_torchrl.rlhf.toy.reward import bradley_terry_loss, encode_pairs, pair_accuracy, train_reward_model
from ppo_torchrl.rlhf.toy.sft import IGNORE, sft_batches, sft_loss, train_sft
from ppo_torchrl.rlhf.toy.stage import RLStage
from ppo_torchrl.rlhf.toy.task import make_examples, preference_pairs
from ppo_torchrl.rlhf.toy.text import prompt_ids
from ppo_torchrl.tracking.names import grouped_name
from tests.conftest import all_runs

# Three-digit prompts: a completion is at most 3 digits + EOS.
TINY: dict[str, Any] = {
    "seed": 0,
    "n_layer": 1,
    "n_embd": 16,
    "n_head": 2,
    "min_digits": 3,
    "max_digits": 3,
    "max_new_tokens": 4,
    "eval_size": 32,
    "sft_demos": 200,
    "sft_epochs": 2,
    "sft_batch": 16,
    "sft_lr": 3e-3,
    "rm_pairs": 200,
    "rm_epochs": 2,
    "rm_batch": 16,
    "rl_updates": 3,
    "prompts_per_update": 16,
    "group_size": 4,
    "epochs": 2,
    "minibatch_size": 8,
    "beta": 0.1,
}
PER_UPDATE = ("reward_model_score", "true_score", "kl_to_ref", "clip_fraction", "entropy", "response_length")
SUMMARY_KEYS = ("S0", "final_score", "final_kl_to_ref", "rm_heldout_accuracy", "total_seconds")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def tiny(**fields: Any) -> RLHFConfig:
    return RLHFConfig(**{**TINY, **fields})


def flags(**fields: Any) -> list[str]:
    return [t for k, v in {**TINY, **fields}.items() for t in ("--" + k.replace("_", "-"), str(v))]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rlhf_cli(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ppo_torchrl.rlhf", *argv],
        cwd=cwd,
        env={**os.environ, **OFFLINE, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- the shared tracked PPO run ----------------------------------------------------------------
@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Path]:
    """(store uri, summary, working folder) of one tracked tiny PPO pipeline run."""
    folder = tmp_path_factory.mktemp("rlhf_ppo")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)  # MLflow puts a SQLite store's artifacts under the working folder
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        summary = run_pipeline(tiny(algo="ppo", track=True, output_dir="out"), say=lambda _: None)
    return uri, summary, folder


def test_ppo_pipeline_writes_its_summary_artifacts_and_policy(ppo_run) -> None:
    _, summary, folder = ppo_run
    assert summary["algo"] == "ppo"
    for key in SUMMARY_KEYS:
        assert math.isfinite(summary[key]), key
    assert 0 <= summary["S0"] <= 100 and 0 <= summary["final_score"] <= 100
    assert 0.0 <= summary["rm_heldout_accuracy"] <= 1.0
    assert summary["total_seconds"] > 0
    out = folder / summary["output_dir"]
    assert out.parent == folder / "out" and out.name == summary["run_id"]
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    samples = (out / "samples.txt").read_text().splitlines()
    assert samples[0] == "Before RL (SFT reference):" and "After PPO:" in samples
    assert len([s for s in samples if s.startswith("sort ")]) == 24  # 12 before, 12 after
    written = json.loads((out / "summary.json").read_text())
    assert written == {k: v for k, v in summary.items() if k not in ("run_id", "output_dir")}

    # The final policy is a Hugging Face folder that --model-path can start from again.
    tokenizer, policy = load_models(str(out / "policy"), 9, 8, 1, seed=1)  # sizes: ignored
    assert policy.config.n_embd == TINY["n_embd"] and policy.config.n_layer == TINY["n_layer"]
    assert tokenizer.get_vocab() == tiny_tokenizer().get_vocab()


def test_mlflow_holds_a_parent_run_and_one_finished_nested_run_per_stage(ppo_run) -> None:
    uri, summary, _ = ppo_run
    client = MlflowClient(uri)
    runs = {r.info.run_name: r for r in all_runs(uri)}
    assert sorted(runs) == ["reward_model", "rl", "rlhf-ppo", "sft"]
    parent = runs["rlhf-ppo"]
    assert parent.info.run_id == summary["run_id"]
    assert "mlflow.parentRunId" not in parent.data.tags
    for name in ("sft", "reward_model", "rl"):
        assert runs[name].data.tags["mlflow.parentRunId"] == parent.info.run_id, name
        assert runs[name].info.experiment_id == parent.info.experiment_id
    assert {r.info.status for r in runs.values()} == {"FINISHED"}

    # Each nested run records its own stage's hyperparameters, the parent all of them.
    assert set(parent.data.params) == set(RLHFConfig.field_names())
    assert runs["sft"].data.params and all(k.startswith("sft_") for k in runs["sft"].data.params)
    assert runs["reward_model"].data.params and all(
        k.startswith("rm_") for k in runs["reward_model"].data.params
    )
    assert {"rl_updates", "beta", "clip_epsilon"} <= set(runs["rl"].data.params)
    assert not any(k.startswith(("sft_", "rm_")) for k in runs["rl"].data.params)

    rl_id = runs["rl"].info.run_id
    for key in PER_UPDATE:
        history = client.get_metric_history(rl_id, grouped_name(key))
        assert sorted(m.step for m in history) == [1, 2, 3], key  # one value per update
        assert all(math.isfinite(m.value) for m in history), key
    clip = [m.value for m in client.get_metric_history(rl_id, "train/clip_fraction")]
    assert all(0.0 <= c <= 1.0 for c in clip)
    lengths = [m.value for m in client.get_metric_history(rl_id, "train/response_length")]
    assert all(1.0 <= n <= TINY["max_new_tokens"] for n in lengths)
    assert {"curves.png", "samples.txt"} <= {a.path for a in client.list_artifacts(rl_id)}
    assert "summary.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}

    assert runs["reward_model"].data.metrics["eval/rm_heldout_accuracy"] == pytest.approx(
        summary["rm_heldout_accuracy"]
    )
    for key in SUMMARY_KEYS:
        assert parent.data.metrics[grouped_name(key)] == pytest.approx(summary[key]), key


# --- each stage on its own --------------------------------------------------------------------
def test_sft_lowers_the_loss_on_its_demonstrations() -> None:
    tokenizer, lm = load_models(None, 1, 32, 2, seed=0)
    examples = make_examples(200, random.Random(1), 3, 3)
    inputs, lengths, labels = sft_batches(tokenizer, examples, 0.5, random.Random(0))  # = train_sft's data
    prompt = len(prompt_ids(tokenizer, examples[0]))
    assert (labels[:, :prompt] == IGNORE).all() and (labels[:, prompt] != IGNORE).all()

    def loss() -> float:
        lm.eval()
        with torch.no_grad():
            return float(sft_loss(lm, inputs, lengths, labels))

    before = loss()
    logged: list[tuple[int, dict[str, float]]] = []
    result = train_sft(
        lm,
        tokenizer,
        examples,
        wrong_share=0.5,
        epochs=4,
        batch_size=16,
        lr=3e-3,
        seed=0,
        log=lambda m, s: logged.append((s, m)),
    )
    after = loss()
    assert result["sft_steps"] == 4 * math.ceil(200 / 16)
    assert math.isfinite(result["sft_final_loss"])
    assert after < 0.8 * before, (before, after)
    assert logged and all(math.isfinite(m["sft_loss"]) for _, m in logged)
    assert [s for s, _ in logged] == sorted({s for s, _ in logged})  # increasing steps


def test_reward_model_starts_from_the_lm_trains_and_scores_pairs() -> None:
    tokenizer, lm = load_models(None, 1, 32, 2, seed=0)
    reward_model = reward_model_from(lm, tokenizer, seed=0)
    body = reward_model.base_model.state_dict()
    assert all(torch.equal(v, body[k]) for k, v in lm.transformer.state_dict().items())

    rng = random.Random(2)
    pairs = preference_pairs(make_examples(300, rng, 3, 3), rng, label_noise=0.0)
    (chosen, chosen_len), (rejected, rejected_len) = encode_pairs(tokenizer, pairs)

    def loss() -> float:
        with torch.no_grad():
            both = torch.cat([chosen, rejected])
            scores = sequence_scores(reward_model, both, torch.cat([chosen_len, rejected_len]))
        return float(bradley_terry_loss(scores[: len(pairs)], scores[len(pairs) :]))

    reward_model.eval()
    before = loss()
    result = train_reward_model(
        reward_model, tokenizer, pairs, epochs=3, batch_size=16, lr=3e-3, seed=0, log=lambda m, s: None
    )
    after = loss()
    assert result["rm_steps"] == 3 * math.ceil(len(pairs) / 16)
    assert after < before, (before, after)

    held_out = preference_pairs(make_examples(64, rng, 3, 3), rng, label_noise=0.0)
    accuracy = pair_accuracy(reward_model, tokenizer, held_out)
    assert 0.0 <= accuracy <= 1.0
    swapped = [dataclasses.replace(p, chosen=p.rejected, rejected=p.chosen) for p in held_out]
    assert pair_accuracy(reward_model, tokenizer, swapped) == pytest.approx(1.0 - accuracy)
    assert pair_accuracy(reward_model, tokenizer, pairs) > 0.5  # it learned its training pairs


def stage(algo: str) -> tuple[RLStage, torch.nn.Module, torch.nn.Module]:
    tokenizer, lm = load_models(None, 1, 16, 2, seed=0)
    reward_model = reward_model_from(lm, tokenizer, seed=0)
    return RLStage(tiny(algo=algo, track=False), tokenizer, lm, reward_model), lm, reward_model


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(v, before[k]) for k, v in module.state_dict().items())


def test_one_ppo_update_runs_through_the_core_update_with_a_critic() -> None:
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    rl, lm, reward_model = stage("ppo")
    assert isinstance(rl.update, PPOUpdate)
    assert isinstance(rl.update.advantage_module, GAE)
    assert isinstance(rl.update.loss_module, ClipPPOLoss)
    assert rl.update.loss_module.critic_network is not None

    prompts = rl.prompts(make_examples(64, random.Random(3), 3, 3), 0)
    assert len(prompts) == TINY["prompts_per_update"]
    roll, rollout_metrics = rl.rollout(prompts)
    assert set(rollout_metrics) >= {"reward_model_score", "true_score", "kl_to_ref", "response_length"}
    assert rollout_metrics["kl_to_ref"] == pytest.approx(0.0, abs=1e-5)  # pi == pi_ref before any step

    policy, ref = snapshot(lm), snapshot(rl.ref_actor)
    rm, critic = snapshot(reward_model), snapshot(rl.update.loss_module.critic_network)
    metrics = rl.update(roll.batch)
    for key in ("loss_objective", "loss_critic", "clip_fraction", "kl_approx", "entropy", "grad_norm"):
        assert math.isfinite(metrics[key]), key
    assert 0.0 <= metrics["clip_fraction"] <= 1.0
    valid = int(roll.batch["collector", "mask"].sum())
    assert metrics["gradient_steps"] == TINY["epochs"] * (valid // TINY["minibatch_size"])
    assert changed(lm, policy)  # the policy LM itself is trained, in place
    assert changed(rl.update.loss_module.critic_network, critic)
    assert not changed(rl.ref_actor, ref) and not changed(reward_model, rm)
    _, later = rl.rollout(prompts)
    assert later["kl_to_ref"] != 0.0


def test_grpo_has_no_critic_and_adds_the_reference_kl_to_its_loss() -> None:
    rl, lm, _ = stage("grpo")
    assert rl.update.advantage_module is None
    assert isinstance(rl.update.loss_module, RefKLPenalty)
    assert rl.update.loss_module.clip_loss.critic_network is None
    trained = {id(p) for group in rl.update.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in lm.parameters()}  # the policy and nothing else

    prompts = rl.prompts(make_examples(64, random.Random(3), 3, 3), 0)
    g = TINY["group_size"]
    assert all(len({e.digits for e in prompts[i : i + g]}) == 1 for i in range(0, len(prompts), g))
    roll, _ = rl.rollout(prompts)
    per_completion = roll.batch["advantage"][:, 0, 0].reshape(-1, g)
    assert per_completion.mean(1) == pytest.approx(torch.zeros(len(prompts) // g), abs=1e-4)

    metrics = rl.update(roll.batch)
    assert "loss_critic" not in metrics
    for key in ("loss_objective", "loss_kl_ref", "kl_ref", "clip_fraction", "loss_total"):
        assert math.isfinite(metrics[key]), key
    assert metrics["kl_ref"] >= 0.0  # k3 is never negative
    assert metrics["loss_kl_ref"] == pytest.approx(TINY["beta"] * metrics["kl_ref"], rel=1e-4)
    terms = metrics["loss_objective"] + metrics["loss_entropy"] + metrics["loss_kl_ref"]
    assert metrics["loss_total"] == pytest.approx(terms, rel=1e-4, abs=1e-7)


def test_grpo_pipeline_runs_end_to_end(tmp_path: Path) -> None:
    # Groups of 8: the 12 sample prompts shown before and after RL are not a whole number
    # of groups, which must not matter (samples are not scored as groups).
    cfg = tiny(algo="grpo", group_size=8, track=False, output_dir=str(tmp_path / "out"))
    summary = run_pipeline(cfg, say=lambda _: None)
    assert summary["algo"] == "grpo" and summary["run_id"] is None
    for key in SUMMARY_KEYS:
        assert math.isfinite(summary[key]), key
    out = Path(summary["output_dir"])
    assert out.parent == tmp_path / "out" and out.name.startswith("grpo-seed0-")
    assert {"curves.png", "samples.txt", "summary.json", "policy"} <= {p.name for p in out.iterdir()}
    assert "After GRPO:" in (out / "samples.txt").read_text()
    again = run_pipeline(dataclasses.replace(cfg, output_dir=str(tmp_path / "again")), say=lambda _: None)
    timing = {"total_seconds", "rl_seconds", "output_dir"}
    assert {k: v for k, v in again.items() if k not in timing} == {
        k: v for k, v in summary.items() if k not in timing
    }  # same seed, same results


# --- --model-path -------------------------------------------------------------------------------
def test_model_path_starts_from_the_saved_model(tmp_path: Path) -> None:
    tokenizer, saved = load_models(None, 1, 24, 2, seed=5)  # wider than the flags below ask for
    folder = tmp_path / "tiny model"
    saved.save_pretrained(folder)
    tokenizer.save_pretrained(folder)

    loaded_tokenizer, loaded = load_models(str(folder), 1, 16, 2, seed=0)
    expected = saved.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert loaded_tokenizer.pad_token_id == tokenizer.pad_token_id

    proc = rlhf_cli(
        [*flags(output_dir="out"), "--model-path", str(folder), "--no-track", "--summary-json", "s.json"],
        tmp_path,
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["model"] == str(folder) and summary["run_id"] is None
    count = n_params(saved)
    assert count != n_params(load_models(None, 1, 16, 2, seed=0)[1])
    assert f"models: {folder}, {count:,} parameters" in proc.stdout
    assert (tmp_path / summary["output_dir"] / "policy" / "config.json").is_file()
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_model_path_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = rlhf_cli([*flags(), "--model-path", "no/such/model", "--no-track"], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model_path" in lines[0] and "no/such/model" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


# --- bad input ----------------------------------------------------------------------------------
def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main() as a process would end: argparse's exits, and an escaping exception as status 1
    with its traceback on stderr."""
    try:
        code = rlhf_main(argv)
    except SystemExit as stop:
        code = stop.code
    except Exception:
        print(traceback.format_exc(), file=sys.stderr)
        code = 1
    out, err = capsys.readouterr()
    return code, out, err


BAD_INPUTS = {
    "unknown algo": (["--algo", "foo"], "algo: must be one of 'ppo', 'grpo'"),
    "negative beta": (["--beta", "-1"], "beta: must be >= 0.0"),
    "nan beta": (["--beta", "nan"], "beta: must be a finite number"),
    "unknown kl estimator": (["--kl-estimator", "k4"], "kl_estimator: must be one of"),
    "zero updates": (["--rl-updates", "0"], "rl_updates: must be >= 1"),
    "group size not dividing the batch": (
        ["--algo", "grpo", "--group-size", "3", "--prompts-per-update", "16"],
        "prompts_per_update: must be a multiple of group_size = 3",
    ),
    "no room for the answer": (["--max-digits", "6", "--max-new-tokens", "3"], "max_new_tokens: must"),
    "min digits above max": (["--min-digits", "5", "--max-digits", "4"], "min_digits: must be at most"),
    "unknown flag": (["--learning-rate", "0.1"], "unrecognized arguments: --learning-rate"),
    "missing model path": (["--model-path", "nowhere"], "model_path: not a folder: nowhere"),
    "model path is a file": (["--model-path", "afile"], "model_path: not a folder: afile"),
    "model path holds no model": (["--model-path", "empty"], "model_path"),
    "width not divisible by heads": (["--n-embd", "30", "--n-head", "4"], "n_head"),
    "minibatch larger than a rollout": (
        ["--prompts-per-update", "4", "--minibatch-size", "1000"],
        "minibatch_size",
    ),
    "unknown device": (["--device", "tpu"], "device: must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "a GPU that is not there": (["--device", "cuda:99"], "device: 'cuda:99' asked for, but torch sees"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_nothing_started(
    case: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("afile").write_text("not a model\n")
    Path("empty").mkdir()
    argv, expected = BAD_INPUTS[case]
    # Tiny budgets first, so that an input wrongly accepted costs seconds, not hours.
    code, out, err = run_main([*flags(output_dir="out"), *argv], capsys)
    assert "Traceback" not in out + err, err[-3000:]
    assert code == 2, (code, err)
    started = [(r.info.run_name, r.info.status) for r in all_runs(store)]
    assert started == [], f"refused only after these runs: {started}; stderr: {err}"
    assert not Path("out").exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]


def test_a_minibatch_size_the_config_accepts_never_crashes_the_rl_stage(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """64 = prompts_per_update * max_new_tokens, the largest minibatch the config accepts; a
    rollout whose completions stop early holds fewer valid token steps than that."""
    code, out, err = run_main([*flags(output_dir="out"), "--minibatch-size", "64"], capsys)
    assert "Traceback" not in out + err, err[-3000:]
    assert code in (0, 2), (code, err)
    if code == 2:  # refused: then before anything started
        assert all_runs(store) == [] and len(err.strip().splitlines()) == 1, err


def test_help_lists_every_config_field(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    for f in dataclasses.fields(RLHFConfig):
        assert "--" + f.name.replace("_", "-") in flat, f.name
        assert " ".join(f.metadata["help"].split()) in flat, f.name
    assert "--no-track" in flat and "--summary-json" in flat and "--model-path" in flat
