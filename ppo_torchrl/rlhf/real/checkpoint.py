"""A real-model RL run's checkpoint: where it stands after an update, enough to go on exactly.

``<run folder>/checkpoint.pt`` is rewritten (atomically) after every update, so a signal
may stop the run at once, mid-update, and lose only that update: an update takes tens of
seconds on a CPU, too long to wait for. It holds, and nothing else:

    format, version   "ppo_torchrl-rlhf", 1
    config            the run's RLHFConfig, as a dict of fields
    update            updates done
    elapsed_seconds   RL wall-clock seconds so far (the time budget counts on from here)
    weights           {"policy": the LM's trainable parameters (the LoRA adapter, or every
                      weight without one), "critic": the --value-model copy's adapter or
                      absent, "value_head": PPO's value head or absent}
    optimizer         Adam's state dict
    rng               {"torch": CPU generator (sampling), "update": the minibatch shuffle's,
                      "cuda": or None}
    beta, cursor      the KL coefficient now (it moves with --kl-target), and how many
                      distinct training prompts have been taken (absent before 2026-12-07:
                      then beta is the config's and the cursor follows from the update)
    history           every update's metrics so far
    base              the base model's held-out evaluation (exact, format, seconds, texts)
    tracking          the tracker's state: run id, store, journal position ({} untracked)

With LoRA (the default) it is small (SmolLM2-135M, rank 16: ~60 MB with Adam's moments);
full fine-tuning writes the whole model and its moments every update.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ppo_torchrl.files import CheckpointError, DiskWriteError, warn_disk, write_atomically
from ppo_torchrl.rlhf.config import RLHFConfig

FORMAT, VERSION = "ppo_torchrl-rlhf", 1
NAME = "checkpoint.pt"
# What may change when a run is resumed: how long it goes on and how it reports, not the learning.
SAFE_ON_RESUME = ("rl_updates", "time_budget", "sample_every")


def learned_modules(stage: Any) -> dict[str, nn.Module]:
    """The modules whose weights training changes: the policy LM, the critic's copy, the value head."""
    modules = {"policy": stage.lm}
    if getattr(stage, "critic_lm", None) is not None:
        modules["critic"] = stage.critic_lm
    if hasattr(stage, "value_head"):
        modules["value_head"] = stage.value_head
    return modules


def trainable(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}


def save_state(
    path: Path, stage: Any, update: int, elapsed: float, history: list, base: dict, tracking: dict
) -> Path:
    """Write where the run stands to ``path`` atomically; DiskWriteError if the disk refuses."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    state = {
        "format": FORMAT,
        "version": VERSION,
        "config": stage.cfg.to_dict(),
        "update": update,
        "elapsed_seconds": elapsed,
        "weights": {name: trainable(m) for name, m in learned_modules(stage).items()},
        "optimizer": stage.update.optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "update": stage.update.generator.get_state(), "cuda": cuda},
        "beta": stage.kl.beta,
        "cursor": stage.cursor,
        "history": history,
        "base": base,
        "tracking": tracking,
    }
    buffer = io.BytesIO()  # serialised first: a full disk then raises OSError, not torch's RuntimeError
    torch.save(state, buffer)
    return write_atomically(path, buffer.getbuffer())


def load_state(path: str | Path) -> tuple[dict[str, Any], Path]:
    """A run folder's (or a file's) checkpoint, checked; CheckpointError (one line) otherwise."""
    path = Path(path)
    path = path / NAME if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(
            f"resume: no {NAME} at {path} (give the run's folder, as its last line printed)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a torn or foreign file
        raise CheckpointError(f"resume: {path} is corrupt or truncated ({str(err).strip()[:100]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"resume: {path} is not a checkpoint of python -m ppo_torchrl.rlhf")
    if state.get("version") != VERSION:
        raise CheckpointError(f"resume: {path} has version {state.get('version')!r}, expected {VERSION}")
    return state, path


def resumed_config(state: dict[str, Any], given: dict[str, Any], path: Path) -> RLHFConfig:
    """The checkpoint's config with the few fields that may change (``given``)."""
    changed = [name for name in given if name not in SAFE_ON_RESUME]
    if changed:
        flags = ", ".join("--" + n.replace("_", "-") for n in SAFE_ON_RESUME)
        raise CheckpointError(
            f"resume: --{changed[0].replace('_', '-')} cannot change when resuming (allowed: {flags})"
        )
    saved = dict(state["config"])
    if isinstance(saved.get("eval_prompts"), int):  # before 2026-12-07 the held-out count's name
        saved["eval_size"] = saved.pop("eval_prompts")
    return RLHFConfig(**{**saved, **given})


def restore(stage: Any, state: dict[str, Any], path: Path) -> None:
    """Put the checkpoint's weights, Adam moments and generators into ``stage``."""
    modules = learned_modules(stage)
    if set(state["weights"]) != set(modules):
        raise CheckpointError(
            f"resume: {path} holds {sorted(state['weights'])}, this run has {sorted(modules)}"
        )
    with torch.no_grad():
        for name, module in modules.items():
            params, saved = trainable(module), state["weights"][name]
            if set(params) != set(saved) or any(params[n].shape != saved[n].shape for n in params):
                raise CheckpointError(f"resume: {path}: the {name} weights do not fit this model")
            for n, value in saved.items():
                params[n].copy_(value)
    stage.update.optimizer.load_state_dict(state["optimizer"])
    stage.kl.beta = state.get("beta", stage.cfg.beta)
    cfg = stage.cfg
    distinct = cfg.prompts_per_update // (cfg.group_size if cfg.algo == "grpo" else 1)
    stage.cursor = state.get("cursor", state["update"] * distinct)
    torch.set_rng_state(state["rng"]["torch"])
    stage.update.generator.set_state(state["rng"]["update"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    stage.trunk.clear()
    stage.sampler.sync()  # the bf16 sampling copy follows the restored adapter


class Checkpoints:
    """The run's checkpoint file and the update its last intact write holds."""

    def __init__(self, path: Path, update: int | None = None) -> None:
        self.path, self.update = path, update

    def describe(self) -> str:
        return f"{self.path} (after update {self.update})" if self.update else "none yet"

    def save(self, stage: Any, update: int, elapsed: float, history: list, base: dict, tracker: Any) -> bool:
        """After an update: write it, then let the tracker send the metrics it covers. A disk
        that refuses costs one warning line; training goes on."""
        try:
            save_state(self.path, stage, update, elapsed, history, base, tracker.state())
        except DiskWriteError as err:
            warn_disk(err, "training goes on", self.describe())
            return False
        self.update = update
        tracker.flush()
        return True

    def save_final(
        self, stage: Any, update: int, elapsed: float, history: list, base: dict, tracker: Any
    ) -> str | None:
        """At the end, if the last update's checkpoint was refused: here again, else in the
        temporary folder. None when written here, else the one line to report."""
        if self.update == update or self.save(stage, update, elapsed, history, base, tracker):
            return None
        elsewhere = Path(tempfile.gettempdir()) / f"ppo_torchrl-{self.path.parent.name}-{NAME}"
        try:
            save_state(elsewhere, stage, update, elapsed, history, base, tracker.state())
        except DiskWriteError as err:
            return f"cannot write {self.path} nor {elsewhere} ({err.reason}): the trained weights are lost"
        return f"cannot write {self.path}; wrote it to {elsewhere}"
