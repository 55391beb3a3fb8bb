"""PPOConfig: every hyperparameter of a training run, named once, with default and meaning.

The dataclass is the single source of truth for the trainer: the CLI builds one flag per
field from it, YAML config files may set any field, MLflow logs all of it as the run's
params and checkpoints store it. It composes the PPO core's parameter objects and the
tracker's (``cfg.params(LossParams)``, ``cfg.params(TrackingParams)``): the core never sees
the env id, the budget or the device, the tracker never sees the config. The fields those
objects share take their help text, bounds and, where it has one, default from them
(``field_like``); a value given here is this trainer's own, with its reason. The tuned ones
are CartPole-v1's (its preset holds nothing else), chosen by experiments/search_hparams.py for
a policy that is solved and stays solved over rl-zoo's 100k-frame budget, fast
(results/hparam_search.json). A config validates itself on construction, so a bad value fails
before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams
from ppo_torchrl.device import check_device_name
from ppo_torchrl.fields import Config, ConfigError, field_like
from ppo_torchrl.fields import config_field as _field
from ppo_torchrl.tracking.params import TrackingParams

# The values tuned for CartPole-v1 (experiments/search_hparams.py, docs/performance.md): the
# core holds none of these, so each is stated here once. The search ranked candidates by every
# seed stably solved, then by seconds: 20 full-batch epochs solved in fewer frames but more
# time; the annealed learning rate and the small clip keep a solved policy solved.


@dataclass
class PPOConfig(Config):
    # --- environment -------------------------------------------------------------------
    env: str = _field("CartPole-v1", "gymnasium environment id (module:id imports the module first)")
    env_kwargs: dict[str, Any] = _field(  # noqa: RUF009 (a dataclass field with a default_factory)
        {}, "keyword arguments for gymnasium.make, as key=value words, e.g. map_name=8x8 is_slippery=false"
    )
    seed: int = _field(0, "random seed for torch, the envs and evaluation", min=0)
    num_envs: int = _field(16, "parallel environments collected from", min=1)
    compile: bool = _field(
        False,
        "torch.compile the program's rollout, GAE and update (torch-native envs, one seed or "
        "--num-seeds), each one graph: about a minute once on a 2-core CPU (~10 s with torch's "
        "compile cache warm; inside the first update), then several times faster; pays off for runs "
        "of a few minutes or more",
    )
    cudagraphs: bool = _field(
        False, "with --compile on a CUDA device: replay each compiled graph as a CUDA graph"
    )
    num_seeds: int = _field(
        0,
        "train seeds seed ... seed+N-1 together in one program, seeds as a batch dimension "
        "(torch-native envs only; 1 runs one seed that way; 0: the ordinary single-seed trainer)",
        min=0,
    )
    env_backend: str = _field(
        "auto",
        "training env backend: 'gymnasium' (GymWrapper over a gymnasium vector env), 'torch' "
        "(torch-native batched copy: CartPole-v1, Acrobot-v1), 'envpool' (EnvPool's C++ threads: "
        "Atari and MuJoCo ids; pip install -e '.[envpool]') or 'auto' (torch where it exists)",
        choices=("auto", "gymnasium", "torch", "envpool"),
    )
    torch_threads: int = _field(
        0,
        "CPU threads torch may use (0: torch's default, one per core). Small networks run as fast "
        "or faster on one, and two runs side by side then do not fight (the MuJoCo presets set 1)",
        min=0,
    )
    collector: str = _field(
        "single",
        "where batches are collected: 'single' (in this process), 'processes' (TorchRL's "
        "multi-process collector, one worker per --collectors) or 'ray' (TorchRL's Ray "
        "collector: a local Ray instance, or the cluster at --ray-address / RAY_ADDRESS)",
        choices=("single", "processes", "ray"),
    )
    collectors: int = _field(
        1, "collector workers for 'processes' and 'ray'; num_envs is split evenly between them", min=1
    )
    ray_address: str | None = _field(
        None,
        "Ray cluster to collect on, e.g. 10.0.0.5:6379",
        shown_default="RAY_ADDRESS if set, else a local Ray instance",
    )
    device: str = _field(
        "auto",
        "where networks, loss, update and torch-native envs run: 'auto' (CUDA when present, "
        "else CPU), 'cpu', 'cuda' or 'cuda:N'",
    )
    reward_scale: float = _field(1.0, "multiplies rewards before GAE (returns are reported unscaled)", gt=0.0)
    normalize_observations: bool = _field(
        False, "normalise observations by their running mean and std (kept in the networks and checkpoints)"
    )
    normalize_rewards: bool = _field(
        False, "divide rewards by the running std of the discounted return, as SB3's VecNormalize"
    )
    # --- budget --------------------------------------------------------------------------
    frames: int = _field(
        100_000,
        "training budget in environment frames (anneal_lr decays the learning rate over it, or over "
        "anneal_frames)",
        min=1,
    )
    episodes: int = _field(0, "training budget in completed episodes (0: no episode limit)", min=0)
    stop_when_solved: bool = _field(True, "stop once a greedy evaluation reaches the solved threshold")
    solved_threshold: float | None = _field(
        None, "mean greedy return that counts as solved (default: the env's reward_threshold)"
    )
    # --- rollout and advantage ---------------------------------------------------------------
    rollout_steps: int = _field(
        32, "steps per env per update (frames per batch = num_envs * rollout_steps)", min=1
    )
    gamma: float = field_like(GAEParams, "gamma", 0.98)  # tuned (above)
    lam: float = field_like(GAEParams, "lam")
    # --- PPO loss ------------------------------------------------------------------------------
    clip_epsilon: float = field_like(LossParams, "clip_epsilon", 0.1)  # tuned (above)
    entropy_coef: float = field_like(LossParams, "entropy_coef")
    critic_coef: float = field_like(LossParams, "critic_coef")
    critic_loss: str = field_like(LossParams, "critic_loss")
    clip_value: bool = field_like(LossParams, "clip_value")
    normalize_advantage: bool = field_like(LossParams, "normalize_advantage")
    # --- optimisation (tuned, above) -------------------------------------------------------------
    lr: float = field_like(UpdateParams, "lr", 3e-3)
    anneal_lr: bool = _field(True, "decay the learning rate linearly to 0 over the frame budget")
    # CleanRL's Atari schedule decays over its 10M frames; a shorter budget that stops part-way
    # keeps the learning rate that schedule has there, instead of squeezing the decay into it.
    anneal_frames: int = _field(
        0, "with anneal_lr: frames over which the learning rate decays to 0 (0: the frame budget)", min=0
    )
    epochs: int = field_like(UpdateParams, "epochs", 10)
    minibatch_size: int = field_like(
        UpdateParams, "minibatch_size", 256, help="frames per gradient step (must divide into the batch)"
    )
    max_grad_norm: float = field_like(UpdateParams, "max_grad_norm", 0.5)
    # A safety net, as SB3's: with clip 0.1 it stopped none of seed 0's 196 updates early.
    target_kl: float | None = field_like(UpdateParams, "target_kl", 0.01)
    continuous_actions: str = _field(
        "tanh_normal",
        "policy for Box actions: 'tanh_normal' (squashed into the bounds) or 'normal' (a Gaussian "
        "whose samples the env clips to the bounds, as CleanRL and SB3; cheaper to sample)",
        choices=("tanh_normal", "normal"),
    )
    hidden_sizes: tuple[int, ...] = _field((64, 64), "hidden layer widths of both MLPs")
    activation: str = _field(
        "tanh", "hidden activation of both MLPs: 'tanh' or 'relu'", choices=("tanh", "relu")
    )
    cnn_precision: str = _field(
        "fp32",
        "pixels only: 'bf16' runs the shared CNN under bfloat16 autocast (heads, losses and "
        "weights stay float32): 2.5x faster on CPUs with AVX-512 BF16 or AMX, and on GPUs",
        choices=("fp32", "bf16"),
    )
    # --- evaluation, checkpoints, tracking -------------------------------------------------------
    eval_episodes: int = _field(100, "greedy evaluation episodes", min=1)
    eval_every_frames: int = _field(2048, "frames between greedy solved-checks (0: only at the end)", min=0)
    checkpoint_dir: str = _field("checkpoints", "folder for checkpoints")
    checkpoint_every_frames: int = _field(
        50_000, "frames between periodic checkpoints (0: only the final one)", min=0
    )
    track: bool = field_like(TrackingParams, "track")
    experiment: str = field_like(TrackingParams, "experiment", "ppo_torchrl")
    plot: bool = _field(
        False, "keep learning_curve.png in the run folder when not tracking (tracked runs always log it)"
    )
    tracking_timeout: int = field_like(TrackingParams, "tracking_timeout")
    tracking_retries: int = field_like(TrackingParams, "tracking_retries")
    tracking_end_timeout: float = field_like(TrackingParams, "tracking_end_timeout")
    system_metrics: bool = field_like(TrackingParams, "system_metrics")
    system_metrics_interval: float = field_like(TrackingParams, "system_metrics_interval")
    # --- what a finished run leaves behind ---------------------------------------------------------
    log_model: bool = _field(
        True, "log the greedy policy as an MLflow model named 'policy' at the end of a tracked run"
    )
    register_model: str | None = _field(
        None, "also register that model in MLflow's model registry under this name, with --model-alias"
    )
    model_alias: str = _field("newest", "registry alias set on the version a run registers")
    video: bool = _field(
        False, "record the greedy policy at the final evaluation (videos/ in the run folder and MLflow)"
    )
    video_every_eval: bool = _field(False, "with --video, record at every evaluation, not only the last")
    video_format: str = _field(
        "gif", "video file format: 'gif' (shown in MLflow's UI) or 'mp4' (every frame, smaller)",
        choices=("gif", "mp4"),
    )  # fmt: skip
    video_episodes: int = _field(1, "greedy episodes per video", min=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_device_name(self.device)
        if self.collector == "single" and self.collectors != 1:
            raise ConfigError(
                f"collectors: {self.collectors} workers need --collector processes or ray "
                "(the single collector runs in this process)"
            )
        if self.num_envs % self.collectors:
            raise ConfigError(
                f"collectors: num_envs ({self.num_envs}) must split evenly between "
                f"{self.collectors} collector workers"
            )
        if self.register_model is not None and not (self.track and self.log_model):
            raise ConfigError("register_model: needs a tracked run that logs its model (--track --log-model)")
        if self.cudagraphs and not self.compile:
            raise ConfigError("cudagraphs: replays the compiled graphs: needs --compile")
        if self.video_every_eval and not self.video:
            raise ConfigError("video_every_eval: needs --video")
        if self.ray_address and self.collector != "ray":
            raise ConfigError("ray_address: only used with --collector ray")
        batch = self.num_envs * self.rollout_steps
        if self.minibatch_size > batch:
            raise ConfigError(
                f"minibatch_size: must be at most num_envs * rollout_steps = {batch} "
                f"(got {self.minibatch_size})"
            )

    @property
    def frames_per_batch(self) -> int:
        return self.num_envs * self.rollout_steps

    def lr_at(self, frames_before: int) -> float:
        """The learning rate for the update after ``frames_before`` frames (annealed or not)."""
        if not self.anneal_lr:
            return self.lr
        return self.lr * max(0.0, 1.0 - frames_before / (self.anneal_frames or self.frames))

    def threshold(self) -> float | None:
        """The mean greedy return that counts as solved: ``solved_threshold``, else the env's
        ``reward_threshold`` (None when it has none)."""
        if self.solved_threshold is not None:
            return self.solved_threshold
        from ppo_torchrl.envs.factory import reward_threshold  # gymnasium: only when asked

        return reward_threshold(self.env)

    def env_options(self) -> dict[str, Any]:
        """``make_env``'s keyword arguments besides the env id, the count and the device."""
        return {"seed": self.seed, "backend": self.env_backend, "env_kwargs": self.env_kwargs}

    def network_options(self) -> dict[str, Any]:
        """``make_actor_critic``'s keyword arguments (models/ know no config)."""
        return {
            "hidden_sizes": self.hidden_sizes,
            "activation": self.activation,
            "normalize_observations": self.normalize_observations,
            "continuous_actions": self.continuous_actions,
            "cnn_precision": self.cnn_precision,
        }
