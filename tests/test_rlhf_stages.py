"""The SFT and reward-model stages on real (tiny, random) Hugging Face models, from files.

`tests.tiny_lms` writes a few-tens-of-thousands-parameter Llama, Qwen2, GPT-2 or SmolLM2
shape with a byte-level tokenizer whose pad is its EOS and a ChatML template: the case where
masks or pooling built from the pad id would go wrong. Each stage runs through its real
command line (`stages.main`, as ``python -m ppo_torchrl.rlhf sft ...`` calls it).
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch

from ppo_torchrl.fields import ConfigError
from ppo_torchrl.rlhf import stages
from ppo_torchrl.rlhf.data import read_rows
from ppo_torchrl.rlhf.real import finetune
from ppo_torchrl.rlhf.real.prompts import completion_ids, prompt_ids
from ppo_torchrl.rlhf.real.reward_model import (
    from_causal_lm,
    load_reward_model,
    rewards,
    score_completions,
)
from ppo_torchrl.rlhf.real.sft import IGNORE, batch, demonstrations, encode, token_nll
from ppo_torchrl.rlhf.stage_config import RewardModelConfig, SFTConfig
from tests.conftest import all_runs
from tests.tiny_lms import save_tiny_lm

pytest.importorskip("peft")

QUESTIONS = [f"What is {a} + {b}?" for a in range(1, 8) for b in range(1, 5)]  # 28 prompts


@pytest.fixture(scope="module")
def lms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lms")
    return {arch: save_tiny_lm(root / arch, arch) for arch in ("llama", "qwen2", "gpt2", "smollm")}


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def demos(path: Path, chat: bool = False) -> str:
    """Demonstrations a tiny model learns in a few steps: every answer is "yes"."""
    if chat:
        rows = [
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "yes"}]}
            for q in QUESTIONS
        ]
    else:
        rows = [{"prompt": q, "completion": "yes"} for q in QUESTIONS]
    return write_jsonl(path, rows)


def preferences(path: Path) -> str:
    """Trivially separable pairs: "yes" is always preferred to "no"."""
    return write_jsonl(path, [{"prompt": q, "chosen": "yes", "rejected": "no"} for q in QUESTIONS])


def run(stage: str, data: str, model: Path, out: Path, *flags: str) -> tuple[int, dict]:
    """Run the stage's command line; (exit status, its summary.json or {})."""
    argv = ["--data", data, "--model-path", str(model), "--output-dir", str(out), "--no-track"]
    argv += ["--eval-fraction", "0.25", "--batch-size", "7", "--log-every", "100", *flags]
    code = stages.main(stage, argv)
    found = list(out.glob("*/summary.json"))
    return code, json.loads(found[0].read_text()) if found else {}


def tokenizer_of(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def test_sft_labels_only_completion_tokens_and_keep_the_eos(lms: dict[str, Path]) -> None:
    tok = tokenizer_of(lms["llama"])
    rows = read_rows(demos(lms["llama"].parent / "labels.jsonl"), "data")
    encoded = encode(tok, demonstrations(rows, "data")[:3], max_length=512)
    inputs, mask, labels = batch(encoded, [0, 1, 2], tok.pad_token_id, torch.device("cpu"))
    for b in range(3):
        prompt = prompt_ids(tok, QUESTIONS[b])
        answer = completion_ids(tok, "yes", eos=True)
        n = len(prompt) + len(answer)
        assert inputs[b, :n].tolist() == prompt + answer
        assert labels[b, : len(prompt)].eq(IGNORE).all()
        assert labels[b, len(prompt) : n].tolist() == answer and answer[-1] == tok.eos_token_id
        assert labels[b, n:].eq(IGNORE).all() and mask[b].sum() == n  # pad (= eos) is no label
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(lms["llama"])
    assert token_nll(lm, inputs, mask, labels).numel() == int(labels.ne(IGNORE).sum())


@pytest.mark.parametrize(("arch", "chat"), [("llama", False), ("qwen2", True), ("gpt2", False)])
def test_sft_with_lora_lowers_held_out_loss_and_saves_a_plain_folder(
    lms: dict[str, Path], tmp_path: Path, arch: str, chat: bool
) -> None:
    from transformers import AutoModelForCausalLM

    code, s = run("sft", demos(tmp_path / "d.jsonl", chat), lms[arch], tmp_path / "out", "--lr", "1e-2")
    assert code == 0
    assert s["held_out_loss_after"] < s["held_out_loss_before"] - 0.5
    assert s["held_out_rows"] == 7 and s["training_rows"] == 21
    saved = Path(s["model_dir"])
    assert (saved / "model.safetensors").is_file() and not (saved / "adapter_config.json").exists()
    trained = AutoModelForCausalLM.from_pretrained(saved)
    start = AutoModelForCausalLM.from_pretrained(lms[arch])
    changed = [n for n, p in trained.state_dict().items() if not torch.equal(p, start.state_dict()[n])]
    assert changed and all("lora" not in n for n in trained.state_dict())
    assert tokenizer_of(saved).chat_template  # the folder is complete: the RL stage reads it as is


def test_sft_full_fine_tuning(lms: dict[str, Path], tmp_path: Path) -> None:
    code, s = run(
        "sft",
        demos(tmp_path / "d.jsonl"),
        lms["smollm"],
        tmp_path / "out",
        "--lora-rank",
        "0",
        "--lr",
        "1e-2",
    )
    assert code == 0 and s["held_out_loss_after"] < s["held_out_loss_before"] - 0.5
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(s["model_dir"])
    assert lm.get_input_embeddings().weight is lm.get_output_embeddings().weight  # still tied


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_reward_model_learns_separable_pairs(lms: dict[str, Path], tmp_path: Path, arch: str) -> None:
    data = preferences(tmp_path / "p.jsonl")
    code, s = run("reward-model", data, lms[arch], tmp_path / "out", "--lr", "3e-3", "--epochs", "3")
    assert code == 0 and s["held_out_accuracy_after"] == 1.0
    tok, model = load_reward_model(s["model_dir"], torch.device("cpu"))
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    scores = score_completions(tok, model, QUESTIONS[:4] * 2, ["yes"] * 4 + ["no"] * 4, batch_size=3)
    assert scores.dtype == torch.float32 and scores.device.type == "cpu" and scores.shape == (8,)
    assert (scores[:4] > scores[4:]).all()


def test_reward_is_read_at_the_last_real_token(lms: dict[str, Path]) -> None:
    """A row scored alone equals the same row right-padded (pad = eos) beside a longer one;
    Hugging Face's pad-id pooling would read the short row at its first EOS-looking token."""
    from transformers import AutoModelForCausalLM

    tok = tokenizer_of(lms["llama"])
    torch.manual_seed(0)
    model = from_causal_lm(AutoModelForCausalLM.from_pretrained(lms["llama"]), tok).eval()
    torch.nn.init.normal_(model.score.weight)
    short = prompt_ids(tok, "What is 1 + 2?") + completion_ids(tok, "3", eos=True)
    long = prompt_ids(tok, "Write a short poem about the sea.") + completion_ids(tok, "Waves come and go.")
    with torch.no_grad():
        alone = rewards(model, torch.tensor([short]), torch.tensor([len(short)]))
        both = rewards(
            model, finetune.pad([short, long], tok.pad_token_id), torch.tensor([len(short), len(long)])
        )
        cut = rewards(model, torch.tensor([short[:-1]]), torch.tensor([len(short) - 1]))
    torch.testing.assert_close(both[0], alone[0])
    assert not torch.allclose(cut[0], alone[0])  # the EOS itself is what the score reads


def test_a_saved_dataset_folder_in_place_of_jsonl(lms: dict[str, Path], tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [
        {"prompt": q, "chosen": [{"role": "assistant", "content": "yes"}], "rejected": "no"}
        for q in QUESTIONS
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "prefs"))
    code, s = run("reward-model", str(tmp_path / "prefs"), lms["qwen2"], tmp_path / "out", "--lr", "3e-3")
    assert code == 0 and s["held_out_rows"] == 7 and s["held_out_accuracy_after"] == 1.0


def test_long_rows_are_cut_and_counted(lms: dict[str, Path], tmp_path: Path) -> None:
    """SFT keeps a row's first max_length tokens (a row whose prompt fills them is dropped);
    the reward model keeps the last ones, where its score is read."""
    from ppo_torchrl.rlhf.real import reward_model, sft

    tok = tokenizer_of(lms["llama"])
    prompt = prompt_ids(tok, QUESTIONS[0])
    demo = [sft.Demo(QUESTIONS[0], "yes " * 40), sft.Demo(QUESTIONS[0] + " and more words", "yes")]
    encoded = sft.encode(tok, demo, max_length=len(prompt) + 3)
    assert (encoded.truncated, encoded.dropped, len(encoded)) == (2, 1, 1)
    assert encoded.ids[0] == (prompt + completion_ids(tok, "yes " * 40))[: len(prompt) + 3]
    pair = reward_model.Pair(QUESTIONS[0], "yes " * 40, "no")
    pairs = reward_model.encode(tok, [pair], max_length=len(prompt) + 3)
    assert pairs.truncated == 1 and pairs.chosen[0][-1] == tok.eos_token_id
    assert len(pairs.chosen[0]) == len(prompt) + 3 and pairs.rejected[0][: len(prompt)] == prompt
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": q, "completion": "yes " * 40} for q in QUESTIONS])
    code, s = run("sft", data, lms["llama"], tmp_path / "out", "--max-length", "30", "--epochs", "1")
    assert code == 0 and s["truncated_rows"] == len(QUESTIONS) and s["held_out_tokens_after"] < 7 * 30


def test_config_defaults_and_rules() -> None:
    assert SFTConfig(data="d", model_path="m").lr == 2e-4
    assert SFTConfig(data="d", model_path="m", lora_rank=0).lr == 2e-5
    assert RewardModelConfig(data="d", model_path="m").lr == 1e-4
    with pytest.raises(ConfigError, match=r"^data: "):
        SFTConfig(model_path="m")
    with pytest.raises(ConfigError, match=r"^model: "):
        RewardModelConfig(data="d")


BAD = {
    "no chosen": ('{"prompt": "a", "rejected": "b"}\n', r"line 1 has no 'chosen' field"),
    "empty": ("\n\n", r"is empty \(no rows\)"),
    "not JSON": ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{oops\n', r"line 2 is not JSON"),
    "bad completion": (
        '{"prompt": "a", "chosen": ["b", "c"], "rejected": "c"}\n',
        r"line 1: 'chosen' must be",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_preference_files_are_one_line_and_leave_nothing(
    lms: dict[str, Path], tmp_path: Path, store: str, capsys: pytest.CaptureFixture, case: str
) -> None:
    text, message = BAD[case]
    (tmp_path / "p.jsonl").write_text(text)
    argv = ["--data", str(tmp_path / "p.jsonl"), "--model-path", str(lms["llama"]), "--output-dir", "out"]
    assert stages.main("reward-model", argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: data: ")
    assert re.search(message, err), err
    assert not Path("out").exists() and all_runs(store) == []


def test_a_bad_messages_row_names_its_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"prompt": "a", "completion": "b"}, {"messages": [{"role": "user", "content": "a"}]}],
    )
    with pytest.raises(ConfigError, match="line 2: 'messages' needs a prompt"):
        demonstrations(read_rows(path, "data"), "data")


def test_load_reward_model_refuses_what_is_not_one(lms: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LlamaForCausalLM, not a sequence-classification model"):
        load_reward_model(lms["llama"], torch.device("cpu"))
    with pytest.raises(ConfigError, match="no such folder"):
        load_reward_model(tmp_path / "absent", torch.device("cpu"))
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(lms["llama"])
    config.num_labels = 2
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "two")
    with pytest.raises(ConfigError, match="has 2 labels; a reward model has 1"):
        load_reward_model(tmp_path / "two", torch.device("cpu"))


def test_a_tracked_stage_logs_one_finished_run(lms: dict[str, Path], tmp_path: Path, store: str) -> None:
    from mlflow.tracking import MlflowClient

    argv = ["--data", demos(tmp_path / "d.jsonl"), "--model-path", str(lms["llama"]), "--output-dir", "out"]
    assert stages.main("sft", [*argv, "--no-system-metrics", "--epochs", "1", "--batch-size", "5"]) == 0
    (run,) = all_runs(store)
    assert run.info.status == "FINISHED" and run.data.params["lora_rank"] == "16"
    client = MlflowClient(store)
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 5  # 25 training rows, 5 a step
    assert {"eval/held_out_loss", "eval/held_out_loss_after"} <= set(run.data.metrics)
    assert "summary.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_sigterm_ends_the_run_killed(
    lms: dict[str, Path], tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """__main__ turns SIGTERM into KeyboardInterrupt; the stage's run ends KILLED, status 143."""
    from ppo_torchrl.rlhf.__main__ import main

    real_fit = finetune.fit

    def fit_then_signal(*args: object, **kwargs: object) -> dict:
        os.kill(os.getpid(), signal.SIGTERM)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(finetune, "fit", fit_then_signal)
    argv = ["--data", demos(tmp_path / "d.jsonl"), "--model-path", str(lms["llama"]), "--output-dir", "out"]
    assert main(["sft", *argv, "--no-system-metrics"]) == 128 + signal.SIGTERM
    (run,) = all_runs(store)
    assert run.info.status == "KILLED" and not list(Path("out").glob("*/model"))
