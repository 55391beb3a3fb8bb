"""`python -m ppo_torchrl.rlhf sft ...` and `... reward-model ...`: one stage on its own, from files.

    python -m ppo_torchrl.rlhf sft --data demos.jsonl --model-path M --output-dir out/sft
    python -m ppo_torchrl.rlhf reward-model --data prefs.jsonl --model-path M --output-dir out/rm

Each reads its rows, holds some out (``--eval-data`` or a seeded ``--eval-fraction``),
measures the starting model on them, trains (LoRA, or in full with ``--lora-rank 0``),
measures again and writes ``<output-dir>/<run>/model``: a plain Hugging Face folder (the
adapter merged in) that the next stage takes as ``--model-path`` (SFT) or
``--reward-model`` (reward model). One MLflow run per stage holds the config, every
step's loss, the held-out numbers and ``summary.json``.

Exit status: 0 done; 2 bad input (one line; the files and the model are checked before the
run or its folder exist); 130 / 143 after SIGINT / SIGTERM (``__main__`` turns the signal
into KeyboardInterrupt; the MLflow run ends KILLED).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ppo_torchrl.cli.flags import (
    OneLineArgumentParser,
    add_config_flags,
    check_writable_folder,
    config_from_args,
    one_line,
)
from ppo_torchrl.fields import ConfigError
from ppo_torchrl.rlhf.data import Rows, read_rows, split_held_out
from ppo_torchrl.rlhf.stage_config import RewardModelConfig, SFTConfig, StageConfig
from ppo_torchrl.tracking.send import TrackingError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class Stage:
    """What differs between the two stages; `run_stage` does the rest alike."""

    name: str  # "sft" or "reward-model"
    config: type[StageConfig]
    parse: Callable[[Rows, str], list]  # rows -> items; a bad row is a ConfigError
    encode: Callable[[Any, list, int], Any]  # (tokenizer, items, max_length) -> encoded rows
    model_of: Callable[[Any, Any], Any]  # (causal LM, tokenizer) -> the model to train
    loss: Callable[[Any, Any, list[int], int], Any]  # (model, encoded, row indices, pad id)
    evaluate: Callable[[Any, Any, int, int], dict[str, float]]  # (model, encoded, batch, pad id)
    next_flag: str  # how the next command takes the output


def _stage(name: str) -> Stage:
    if name == "sft":
        from ppo_torchrl.rlhf.real import sft

        return Stage(
            name="sft",
            config=SFTConfig,
            parse=sft.demonstrations,
            encode=sft.encode,
            model_of=lambda lm, tokenizer: lm,
            loss=sft.sft_loss,
            evaluate=sft.held_out_loss,
            next_flag="--model-path",
        )
    from ppo_torchrl.rlhf.real import reward_model as rm

    return Stage(
        name="reward-model",
        config=RewardModelConfig,
        parse=rm.preference_pairs,
        encode=rm.encode,
        model_of=rm.from_causal_lm,
        loss=rm.rm_loss,
        evaluate=rm.held_out_accuracy,
        next_flag="--reward-model",
    )


def main(stage: str, argv: list[str]) -> int:
    """The command line of ``stage`` ('sft' or 'reward-model'); returns the exit status."""
    spec = _stage(stage)
    parser = OneLineArgumentParser(
        prog=f"python -m ppo_torchrl.rlhf {stage}",
        allow_abbrev=False,
        description=f"{(spec.config.__doc__ or '').strip()} From files; the result is a plain Hugging Face "
        f"folder, the next command's {spec.next_flag}.",
    )
    add_config_flags(parser, spec.config)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args, spec.config)
        summary = run_stage(cfg, spec)
    except (ConfigError, TrackingError) as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except ImportError as err:  # an extra that is not installed
        print(f"error: this stage needs {err.name}: pip install -e '.[rlhf-real]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # SIGINT, or __main__'s Stopped (SIGTERM); the run ended KILLED
        print(f"interrupted ({err})" if str(err) else "interrupted", file=sys.stderr)
        return 128 + getattr(err, "signum", signal.SIGINT)
    print(report(spec, summary))
    return 0


def read_inputs(cfg: StageConfig, spec: Stage) -> tuple[list, list]:
    """(training items, held-out items), every row checked first (the first bad row in file
    order is the one named): nothing loads before this passes."""
    rows = read_rows(cfg.data, "data")
    items = spec.parse(rows, "data")
    if cfg.eval_data is not None:
        return items, spec.parse(read_rows(cfg.eval_data, "eval_data"), "eval_data")
    train, held = split_held_out(rows, cfg.eval_fraction, cfg.seed, "data")
    return spec.parse(train, "data"), spec.parse(held, "data")


def run_stage(cfg: StageConfig, spec: Stage, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Check, load, measure, train, measure, save; the summary (also ``summary.json``)."""
    train_items, held_items = read_inputs(cfg, spec)
    check_writable_folder(Path(cfg.output_dir), "output_dir")
    from ppo_torchrl.rlhf.common import quiet_transformers

    quiet_transformers()  # first: an ImportError here names transformers, before anything loads
    import torch

    from ppo_torchrl.device import resolve_device
    from ppo_torchrl.rlhf.real.hub import check_extra, load_lm, locate

    device = resolve_device(cfg.device)
    folder, gguf = locate(cfg.model, cfg.model_path, cfg.gguf_file, say)
    check_extra(gguf is not None, cfg.lora_rank > 0)
    started = time.perf_counter()
    tokenizer, lm = load_lm(folder, gguf, torch.float32)
    train, held = (spec.encode(tokenizer, items, cfg.max_length) for items in (train_items, held_items))
    for name, part in (("training", train), ("held-out", held)):
        if not len(part):
            raise ConfigError(
                f"max_length: every {name} row's prompt fills {cfg.max_length} tokens; raise it"
            )
    model, wrapped = _trainable(cfg, spec, lm, tokenizer, say)
    del lm  # the reward model copied its body: one model in memory, not two
    model.to(device)
    n = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cut, dropped = train.truncated + held.truncated, train.dropped + held.dropped
    say(
        f"{spec.name}: {folder / (gguf or '')} ({type(model).__name__}, {n:,} parameters, {trainable:,} "
        f"trainable) on {device}, loaded in {time.perf_counter() - started:.1f} s; {len(train)} training "
        f"and {len(held)} held-out rows, {cut} cut to {cfg.max_length} tokens"
        + (f" ({dropped} dropped: no completion token left)" if dropped else "")
    )
    return _tracked_run(cfg, spec, tokenizer, model, wrapped, train, held, device, say)


def _trainable(
    cfg: StageConfig, spec: Stage, lm: nn.Module, tokenizer: Any, say: Callable[[str], None]
) -> tuple[nn.Module, nn.Module]:
    """(the model the loss runs, what `save_plain` merges and saves): with LoRA, the model
    with the adapter in its modules and its peft wrapper; in full, the model twice."""
    import torch

    from ppo_torchrl.rlhf.real.finetune import attach_lora
    from ppo_torchrl.rlhf.real.hub import LoRASettings

    torch.manual_seed(cfg.seed)  # the score head's and the adapter's initial weights
    model = spec.model_of(lm, tokenizer)
    if not cfg.lora_rank:
        return model.requires_grad_(True), model
    targets = tuple(t.strip() for t in cfg.lora_targets.split(",") if t.strip())
    lora = LoRASettings(cfg.lora_rank, cfg.lora_alpha, targets)
    return model, attach_lora(model, lora, spec.name == "reward-model", say)


def _tracked_run(
    cfg: StageConfig,
    spec: Stage,
    tokenizer: Any,
    model: nn.Module,
    wrapped: nn.Module,
    train: Any,
    held: Any,
    device: torch.device,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The MLflow run and its folder: measure, train, measure, save the merged model."""
    from ppo_torchrl.rlhf.real.finetune import ended, fit, open_stage_run, save_plain

    tracker, out_dir = open_stage_run(cfg, spec.name)
    pad_id = tokenizer.pad_token_id
    summary: dict[str, Any] = {
        "stage": spec.name,
        "model": cfg.model or str(cfg.model_path),
        "data": cfg.data,
        "training_rows": len(train),
        "held_out_rows": len(held),
        "truncated_rows": train.truncated + held.truncated,
        "dropped_rows": train.dropped + held.dropped,
        "device": str(device),
    }
    try:
        with ended(tracker):
            before = spec.evaluate(model, held, cfg.batch_size, pad_id)
            tracker.log_metrics(_eval_names(before), 0)
            say(f"before: {_numbers(before)}")
            done = fit(
                model, len(train), lambda idx: spec.loss(model, train, idx, pad_id), cfg, device, tracker, say
            )
            after = spec.evaluate(model, held, cfg.batch_size, pad_id)
            tracker.log_metrics(_eval_names(after), done["steps"])
            say(f"after: {_numbers(after)}")
            summary.update({f"{k}_before": v for k, v in before.items()})
            summary.update({f"{k}_after": v for k, v in after.items()})
            summary.update(done)
            summary["model_dir"] = str(save_plain(wrapped, tokenizer, out_dir / "model"))
            (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
            tracker.log_metrics(_eval_names(numbers), done["steps"])
            tracker.log_artifact(out_dir / "summary.json")
    except KeyboardInterrupt:
        say(f"stopped; no model written (run folder {out_dir})")
        raise
    return summary


def _eval_names(values: dict[str, float]) -> dict[str, float]:
    """Held-out numbers under MLflow's ``eval/`` charts; the rest find their group by name."""
    return {f"eval/{k}" if k.startswith("held_out") else k: v for k, v in values.items()}


def _numbers(values: dict[str, float]) -> str:
    return ", ".join(f"{k.removeprefix('held_out_').replace('_', ' ')} {v:.4g}" for k, v in values.items())


def report(spec: Stage, s: dict[str, Any]) -> str:
    """One paragraph: the held-out number before -> after, where the model is, how to use it."""
    if spec.name == "sft":
        result = (
            f"held-out loss {s['held_out_loss_before']:.4f} -> {s['held_out_loss_after']:.4f} nats per "
            f"completion token ({s['held_out_rows']} rows, {s['held_out_tokens_after']} tokens)"
        )
        use = f"python -m ppo_torchrl.rlhf --model-path {s['model_dir']} ..."
    else:
        result = (
            f"held-out pairwise accuracy {s['held_out_accuracy_before']:.1%} -> "
            f"{s['held_out_accuracy_after']:.1%} ({s['held_out_rows']} pairs; Bradley-Terry loss "
            f"{s['held_out_loss_before']:.4f} -> {s['held_out_loss_after']:.4f})"
        )
        use = f"python -m ppo_torchrl.rlhf --reward-model {s['model_dir']} ..."
    return (
        f"\n{spec.name}: {result}; {s['steps']} steps on {s['training_rows']} rows in "
        f"{s['train_seconds']:.0f} s. Model: {s['model_dir']} (a plain Hugging Face folder). "
        f"Next: {use}"
    )
