"""What the SFT and reward-model stages share: batches of right-padded rows, LoRA or full
fine-tuning, the MLflow run, the training loop, and a plain Hugging Face folder at the end.

Rows are right-padded and every mask comes from the row lengths, never from the pad id:
these tokenizers have pad == eos, and every completion ends with EOS.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ppo_torchrl.rlhf.real.hub import LoRASettings, lora_targets
from ppo_torchrl.tracking.tracker import NullTracker, Tracker

if TYPE_CHECKING:
    from ppo_torchrl.rlhf.stage_config import StageConfig

IGNORE = -100  # Hugging Face's label for "no loss here"


def pad(rows: list[list[int]], value: int) -> torch.Tensor:
    """[B, longest row] of ``rows``, right-padded with ``value``."""
    width = max(map(len, rows))
    return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)


def lengths(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor([len(row) for row in rows], dtype=torch.long)


def attention_mask(sizes: torch.Tensor, width: int) -> torch.Tensor:
    """1 on each row's first ``sizes[b]`` positions (its real tokens), 0 on the padding."""
    return (torch.arange(width, device=sizes.device)[None, :] < sizes[:, None]).long()


def chunks(n: int, size: int) -> Iterator[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(start + size, n)))


def precision(device: torch.device) -> AbstractContextManager:
    """bfloat16 autocast on a GPU (float32 weights and optimiser state stay exact: AdamW steps
    on bf16 weights would round away); plain float32 on a CPU, which lacks fast bf16."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def attach_lora(
    model: nn.Module, lora: LoRASettings, classifier: bool, say: Callable[[str], None]
) -> nn.Module:
    """``model`` wrapped with a fresh LoRA adapter; its own modules change in place, so
    ``model`` itself runs with the adapter too. Targets as the RL stage's (`hub.lora_targets`:
    every linear layer where the named ones are absent, as in GPT-2). ``classifier``: the
    score head trains in full beside the adapter (peft's SEQ_CLS task keeps it out of
    "all-linear" and merges its trained copy back on unload)."""
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(model, lora.targets)
    if targets == "all-linear":
        say(f"LoRA: no {', '.join(lora.targets)} in {type(model).__name__}: every linear layer instead")
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        target_modules=targets,
        lora_dropout=0.0,
        bias="none",
        task_type="SEQ_CLS" if classifier else None,
    )
    with warnings.catch_warnings():  # GPT-2's Conv1D: peft says it transposes; that is expected
        warnings.simplefilter("ignore")
        return get_peft_model(model, config)


def save_plain(model: nn.Module, tokenizer: Any, folder: Path) -> Path:
    """``model`` (its adapter, if any, merged in) and ``tokenizer`` as a plain Hugging Face
    folder, safetensors, that ``from_pretrained`` reads with nothing else installed."""
    if hasattr(model, "merge_and_unload"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = model.merge_and_unload()
    # A GGUF file loads dequantised but keeps a quantizer marker; saved, it would make the
    # folder look quantised (bench_rlhf_peer.export_model does the same).
    if getattr(model.config, "quantization_config", None) is not None or getattr(model, "hf_quantizer", None):
        model.config.quantization_config = None
        model.hf_quantizer = None
    model.config.pad_token_id = tokenizer.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@contextmanager
def ended(tracker: Tracker) -> Iterator[None]:
    """End the run with its true status: FINISHED, KILLED (a signal) or FAILED. Unlike
    `common.tracked`, a stopped stage still sends every metric it logged (``flush``): a stage
    is never resumed, so there is no checkpoint to cut its journal back to."""
    from ppo_torchrl.rlhf.common import SIGNAL_WAIT

    try:
        yield
    except KeyboardInterrupt:
        tracker.end("KILLED", wait=SIGNAL_WAIT)
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")


def open_stage_run(cfg: StageConfig, stage: str) -> tuple[Tracker, Path]:
    """The stage's tracker (MLflow, or none) and its folder, ``output_dir/<run id or stage-seed-time>``."""
    from ppo_torchrl.tracking.mlflow_run import MlflowTracker
    from ppo_torchrl.tracking.params import TrackingParams

    tracker: Tracker = NullTracker()
    if cfg.track:
        name = f"{stage}-{cfg.model or Path(cfg.model_path).name}"
        # Metrics go out as they come: no checkpoint will ever cover them (a stage has no resume).
        tracker = MlflowTracker(cfg.params(TrackingParams), cfg.to_dict(), name, hold_metrics=False)
    # Untracked: the time and a random tail, so that two runs started in one second never share.
    name = tracker.run_id or time.strftime(
        f"{stage}-seed{cfg.seed}-%Y%m%d-%H%M%S-{random.randrange(16**4):04x}"
    )
    out_dir = (Path(cfg.output_dir) / name).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker.open(out_dir)
    return tracker, out_dir


def fit(
    model: nn.Module,
    n_rows: int,
    loss_of: Callable[[list[int]], torch.Tensor],
    cfg: StageConfig,
    device: torch.device,
    tracker: Tracker,
    say: Callable[[str], None],
) -> dict[str, float]:
    """AdamW on ``loss_of(row indices)`` over shuffled minibatches, ``cfg.epochs`` passes; every
    step's loss to the tracker (``train/loss``), a progress line every ``cfg.log_every``."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)  # on the CPU: the same order on any device
    total = cfg.epochs * -(-n_rows // cfg.batch_size)
    started, step, losses = time.perf_counter(), 0, []
    model.train()
    for _epoch in range(cfg.epochs):
        for idx in torch.randperm(n_rows, generator=generator).split(cfg.batch_size):
            with precision(device):
                loss = loss_of(idx.tolist())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            tracker.log_metrics({"train/loss": losses[-1]}, step)
            if step % cfg.log_every == 0 or step == total:
                window = losses[-cfg.log_every :]
                say(
                    f"  step {step}/{total}, loss {sum(window) / len(window):.4f}, "
                    f"{time.perf_counter() - started:.0f} s"
                )
    model.eval()
    return {"steps": step, "train_seconds": time.perf_counter() - started, "final_train_loss": losses[-1]}
