"""RLHFConfig: every knob of the three-stage pipeline, named once, with default and doc.

It produces the PPO core's parameter objects for the RL stage (`gae_params`, `loss_params`,
`update_params`) directly: token-level RL has no env id, no frame budget, no CartPole
config behind it. The fields those objects share take the core's bounds (``field_like``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams
from ppo_torchrl.fields import Config, ConfigError, field_like
from ppo_torchrl.fields import config_field as _field
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.device import check_device_name

# The RL-stage fields whose default depends on --algo (None in a config = this default).
# GRPO's advantage comes from one group of samples per prompt instead of a learned critic:
# noisier, so it takes more completions per update, smaller and fewer steps on each, and a
# firmer pull back to pi_ref. Both sets were tuned in this repository (see the README).
ALGO_DEFAULTS: dict[str, dict[str, float]] = {
    "ppo": {"rl_updates": 50, "prompts_per_update": 128, "beta": 0.1, "rl_lr": 1e-4, "epochs": 4},
    "grpo": {"rl_updates": 60, "prompts_per_update": 256, "beta": 0.3, "rl_lr": 5e-5, "epochs": 2},
}


def _per_algo(name: str) -> str:
    return ", ".join(f"{algo} {values[name]:g}" for algo, values in ALGO_DEFAULTS.items())


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
    track: bool = _field(True, "log to MLflow: a parent run with one nested run per stage")
    experiment: str = _field("ppo_torchrl_rlhf", "MLflow experiment name")
    output_dir: str = _field("rlhf_runs", "folder for plots, samples and the final models")
    # The same bounds as training's (run/config.py), named once.
    tracking_timeout: int = field_like(PPOConfig, "tracking_timeout", 10)
    tracking_retries: int = field_like(PPOConfig, "tracking_retries", 2)
    tracking_end_timeout: float = field_like(
        PPOConfig,
        "tracking_end_timeout",
        30.0,
        help="seconds the end of the pipeline waits for tracking to catch up; what is left waits in "
        "the output folder's tracking.jsonl for `python -m ppo_torchrl.track sync`",
    )
    # --- task and models ----------------------------------------------------------------------
    min_digits: int = _field(3, "fewest digits in a prompt", min=1)
    max_digits: int = _field(6, "most digits in a prompt", min=1)
    n_layer: int = _field(2, "transformer layers of the random-init models", min=1)
    n_embd: int = _field(64, "width of the random-init models", min=8)
    n_head: int = _field(4, "attention heads of the random-init models", min=1)
    eval_prompts: int = _field(512, "held-out prompts the true rule scores", min=1)
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
    group_size: int = _field(16, "GRPO: completions per prompt", min=2)
    max_new_tokens: int = _field(8, "length limit of a completion, EOS included", min=1)
    beta: float | None = _field(
        None,
        "KL(pi || pi_ref) coefficient: per-token reward (PPO), loss (GRPO)",
        shown_default=_per_algo("beta"),
        min=0.0,
    )
    kl_estimator: str = _field(
        "k1", "PPO's per-token KL estimate: 'k1', 'k2' or 'k3'", choices=("k1", "k2", "k3")
    )
    gamma: float = field_like(
        GAEParams,
        "gamma",
        1.0,
        help="discount over tokens (1: a completion is short, its score counts in full)",
    )
    lam: float = field_like(GAEParams, "lam", 0.95, help="GAE lambda over tokens")
    clip_epsilon: float = field_like(LossParams, "clip_epsilon", 0.2)
    entropy_coef: float = field_like(LossParams, "entropy_coef", 0.0)
    critic_coef: float = field_like(LossParams, "critic_coef", 0.5, help="value-loss weight (PPO)")
    epochs: int | None = _field(None, "passes over each rollout", shown_default=_per_algo("epochs"), min=1)
    minibatch_size: int = field_like(
        UpdateParams, "minibatch_size", 256, help="token steps per gradient step"
    )
    max_grad_norm: float = field_like(UpdateParams, "max_grad_norm", 1.0)
    rl_lr: float | None = _field(
        None, "Adam learning rate of policy (and critic)", shown_default=_per_algo("rl_lr"), gt=0.0
    )

    def __post_init__(self) -> None:
        if isinstance(self.algo, str) and self.algo in ALGO_DEFAULTS:  # else refused below
            for name, default in ALGO_DEFAULTS[self.algo].items():
                if getattr(self, name) is None:
                    setattr(self, name, default)
        super().__post_init__()
        check_device_name(self.device)
        if self.min_digits > self.max_digits:
            raise ConfigError(
                f"min_digits: must be at most max_digits = {self.max_digits} (got {self.min_digits})"
            )
        if self.algo == "grpo" and self.prompts_per_update % self.group_size:
            raise ConfigError(
                f"prompts_per_update: must be a multiple of group_size = {self.group_size} "
                f"for GRPO (got {self.prompts_per_update})"
            )
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd: must be a multiple of n_head = {self.n_head} (got {self.n_embd})")
        if self.minibatch_size > self.prompts_per_update * self.max_new_tokens:
            raise ConfigError(
                f"minibatch_size: must be at most prompts_per_update * max_new_tokens = "
                f"{self.prompts_per_update * self.max_new_tokens} token steps (got {self.minibatch_size})"
            )
        if self.max_new_tokens < self.max_digits + 1:
            raise ConfigError(
                f"max_new_tokens: must leave room for {self.max_digits} digits and EOS "
                f"(at least {self.max_digits + 1}, got {self.max_new_tokens})"
            )

    # --- what the RL stage gives the PPO core ---------------------------------------------------
    def gae_params(self) -> GAEParams:
        return GAEParams(gamma=self.gamma, lam=self.lam)

    def loss_params(self) -> LossParams:
        """GRPO's advantages are already normalised per group: the loss must not do it again."""
        return LossParams(
            clip_epsilon=self.clip_epsilon,
            entropy_coef=self.entropy_coef,
            critic_coef=self.critic_coef,
            normalize_advantage=self.algo == "ppo",
        )

    def update_params(self) -> UpdateParams:
        return UpdateParams(
            epochs=self.epochs,
            minibatch_size=self.minibatch_size,
            max_grad_norm=self.max_grad_norm,
            lr=self.rl_lr,
        )
