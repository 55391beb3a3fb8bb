"""Atari benchmarks (issue 30): training frames/s against SB3, and learning curves.

    .venv/bin/python experiments/bench_atari.py fps [--env ALE/Pong-v5] [--frames 8192] [--repeats 3]
    .venv/bin/python experiments/bench_atari.py curve --env ALE/Pong-v5 --seed 11 [--frames N]
    .venv/bin/python experiments/bench_atari.py curve --env ALE/Pong-v5 --seed 11 --resume CHECKPOINT

``fps``: PPO training frames/s (agent steps, 4 emulator frames each) on the same game with
the same hyperparameters (CleanRL's ppo_atari, our preset: 8 envs x 128 steps, 4 epochs of
256-frame minibatches, a Nature CNN), each row in a fresh process, one after the other,
``--repeats`` rounds of all rows (the median of each row's rounds is its figure):

- SB3 2.x ``PPO("CnnPolicy")`` over its ``make_atari_env`` (AtariWrapper: no-op reset, skip
  4 with max-pool, episodic life, FIRE reset, 84x84 gray, reward clip) + ``VecFrameStack(4)``;
- ours, ``python -m ppo_torchrl.train`` with ``--env-backend gymnasium`` and ``envpool``,
  each with the CNN in float32 (as SB3's) and under bfloat16 autocast (``--cnn-precision
  bf16``: heads, losses and weights stay float32).

Each row trains ``--frames`` frames; its time is the training loop's alone (ours: the
summary's ``train_seconds``, which leaves out evaluation; SB3: ``learn``, which has none).

``curve``: the env's preset (ppo_torchrl/presets) on one seed, the true-score greedy
evaluation (10 games) every ``eval_every_frames``; writes the evaluations as they are.

Writes experiments/results/atari_fps_<device>.json or atari_<game>_seed<k>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SB3_ROW = """
import json, sys, time
import gymnasium as gym, ale_py
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack
gym.register_envs(ale_py)
env_id, frames, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
env = VecFrameStack(make_atari_env(env_id, n_envs=8, seed=seed, env_kwargs={"frameskip": 1}), 4)
model = PPO("CnnPolicy", env, n_steps=128, batch_size=256, n_epochs=4, learning_rate=2.5e-4,
            clip_range=0.1, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, gamma=0.99,
            gae_lambda=0.95, seed=seed, device=sys.argv[4], verbose=0)
start = time.perf_counter()
model.learn(frames)
print(json.dumps({"frames": model.num_timesteps, "train_seconds": time.perf_counter() - start}))
"""


def sb3_row(env_id: str, frames: int, seed: int, device: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SB3_ROW, env_id, str(frames), str(seed), device],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def our_row(
    env_id: str, frames: int, seed: int, device: str, backend: str, work: Path, precision: str = "fp32"
) -> dict:
    summary = work / f"summary-{backend}-{precision}.json"
    cmd = [sys.executable, "-m", "ppo_torchrl.train", "--env", env_id, "--env-backend", backend,
           "--frames", str(frames), "--seed", str(seed), "--device", device, "--no-track",
           "--eval-episodes", "1", "--eval-every-frames", str(10 * frames), "--cnn-precision", precision,
           "--checkpoint-dir", str(work / "checkpoints"), "--summary-json", str(summary)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=work)
    result = json.loads(summary.read_text())
    return {"frames": result["frames"], "train_seconds": result["train_seconds"]}


def fps(args: argparse.Namespace) -> dict:
    """Every row ``--repeats`` times, round-robin, so a machine whose speed drifts over the
    minutes (seen here: the same row 15% apart half an hour later) slows every row alike; a
    row's figure is the median of its rounds."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ours = (args.env, args.frames, args.seed, args.device)
    plan = [
        ("sb3", lambda: sb3_row(*ours)),
        ("ours_gymnasium", lambda: our_row(*ours, "gymnasium", work)),
        ("ours_envpool", lambda: our_row(*ours, "envpool", work)),
        ("ours_gymnasium_bf16", lambda: our_row(*ours, "gymnasium", work, "bf16")),
        ("ours_envpool_bf16", lambda: our_row(*ours, "envpool", work, "bf16")),
    ]
    rounds: dict[str, list[float]] = {name: [] for name, _ in plan}
    for round_ in range(args.repeats):
        for name, run in plan:
            row = run()
            rounds[name].append(row["frames"] / row["train_seconds"])
            print(f"round {round_ + 1} {name:19s} {row['frames']:,} frames in {row['train_seconds']:6.1f} s: "
                  f"{rounds[name][-1]:7.1f} frames/s", flush=True)  # fmt: skip
    rows = {
        name: {"frames": args.frames, "frames_per_second": statistics.median(x), "rounds": x}
        for name, x in rounds.items()
    }
    sb3 = rows["sb3"]["frames_per_second"]
    return {
        "rows": rows,
        "over_sb3": {name: row["frames_per_second"] / sb3 for name, row in rows.items() if name != "sb3"},
        "over_sb3_per_round": {
            name: [x / y for x, y in zip(rounds[name], rounds["sb3"], strict=True)]
            for name in rounds
            if name != "sb3"
        },
        "env": args.env,
        "hyperparameters": "CleanRL ppo_atari: 8 envs x 128 steps, 4 epochs, minibatch 256, Nature CNN",
    }


def curve(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    summary = work / "summary.json"
    if args.resume:  # the run keeps its config (env, seed, backend, precision) and MLflow run
        cmd = [sys.executable, "-m", "ppo_torchrl.train", "--resume", args.resume,
               "--device", args.device, "--summary-json", str(summary)]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "ppo_torchrl.train", "--env", args.env, "--seed", str(args.seed),
               "--device", args.device, "--env-backend", args.backend, "--summary-json", str(summary),
               "--cnn-precision", args.cnn_precision,
               "--checkpoint-dir", str(work / "checkpoints")]  # fmt: skip
    if args.frames:
        cmd += ["--frames", str(args.frames)]
    cmd += shlex.split(args.train_args)
    subprocess.run(cmd, check=True, cwd=work)
    result = json.loads(summary.read_text())
    keep = (
        "final_eval_mean",
        "final_eval_std",
        "frames",
        "train_seconds",
        "run_id",
        "evals",
        "training_returns",
    )
    result["training_returns"] = training_returns(work / "mlflow.db", result["run_id"])
    return {
        "env": args.env,
        "seed": args.seed,
        "backend": args.backend,
        "cnn_precision": args.cnn_precision,
        "train_args": args.train_args,
        **{k: result.get(k) for k in keep},
    }


def training_returns(store: Path, run_id: str, every: int = 100_000) -> list[dict]:
    """The run's true game scores while training (``train/episode_return``: the mean score of
    the games that ended in each update), averaged per ``every`` frames: the measure CleanRL's
    published curves plot (stochastic policy, whole games)."""
    from mlflow.tracking import MlflowClient

    history = MlflowClient(f"sqlite:///{store}").get_metric_history(run_id, "train/episode_return")
    bins: dict[int, list[float]] = {}
    for m in history:
        bins.setdefault((m.step - 1) // every, []).append(m.value)
    return [{"frames": (b + 1) * every, "mean": sum(v) / len(v)} for b, v in sorted(bins.items())]


def plot_curve(result: dict, out: Path, reference: dict[int, float] | None) -> None:
    """Training scores and greedy evaluations against frames, with CleanRL's read-off points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = result["training_returns"]
    ax.plot(
        [p["frames"] for p in train], [p["mean"] for p in train], label="ours: training games (stochastic)"
    )
    evals = result.get("evals") or []
    ax.errorbar([e["frames"] for e in evals], [e["mean"] for e in evals], [e["std"] for e in evals],
                fmt="o", label="ours: greedy evaluation, 10 games")  # fmt: skip
    if reference:
        ax.plot(list(reference), list(reference.values()), "s--", color="gray", label=CLEANRL_LABEL)
    ax.set_xlabel("frames (agent steps)")
    ax.set_ylabel("true game score")
    ax.set_title(f"{result['env']}, seed {result['seed']}, {result['backend']}, {result['cnn_precision']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)


# Read off CleanRL's published curve (docs/rl-algorithms/ppo/Breakout-a.png in vwxyzjn/cleanrl:
# ppo_atari.py, BreakoutNoFrameskip-v4, training episodic return, mean of its seeds), by eye
# to about +-5: the data behind it is on wandb, which this machine cannot reach.
CLEANRL_LABEL = "CleanRL ppo_atari.py, published curve (read off)"
CLEANRL_READ_OFF = {"ALE/Breakout-v5": {500_000: 8.0, 1_000_000: 16.0, 1_500_000: 28.0, 2_000_000: 51.0}}


def machine() -> str:
    """The CPU, and the bfloat16 units --cnn-precision bf16 leans on: its gain over float32
    moves with the CPU (1.55x and 1.41x on two 2-core AMD EPYCs here), and the ratio to SB3
    with it."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    bf16 = "amx_bf16" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "no bf16 units"
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {name or 'unknown CPU'}, {bf16}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("fps", "curve"))
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument(
        "--frames", type=int, default=None, help="fps: frames per row (8192); curve: the preset's"
    )
    parser.add_argument("--repeats", type=int, default=3, help="fps: rounds of every row (median reported)")
    parser.add_argument("--seed", type=int, default=11, help="a seed never tuned on")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="envpool", help="curve: the training env backend")
    parser.add_argument("--cnn-precision", default="bf16", help="curve: fp32 or bf16 (see --help of train)")
    parser.add_argument("--work", default="/tmp/bench_atari")
    parser.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="curve: continue an interrupted run from its checkpoint (a 5M-frame Pong seed takes "
        "1.7 to 3.5 h on the 2-core CPUs here); give the same --env, --seed and --work so the "
        "results land under its name",
    )
    parser.add_argument(
        "--train-args",
        default="",
        help="curve: more flags for train over the preset, e.g. '--anneal-frames 10000000' (a tuning "
        "run: give it a seed outside the evaluated ones and an --out of its own)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.what == "fps":
        args.frames = args.frames or 8192
        result = fps(args)
        out = Path(args.out or RESULTS / f"atari_fps_{args.device}.json")
    else:
        result = curve(args)
        game = args.env.rpartition("/")[2].split("-")[0].lower()
        out = Path(args.out or RESULTS / f"atari_{game}_seed{args.seed}.json")
        result["cleanrl_read_off"] = CLEANRL_READ_OFF.get(args.env)
        plot_curve(result, out.with_suffix(".png"), result["cleanrl_read_off"])
    result |= {
        "machine": machine(),
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python " + " ".join(sys.argv),
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
