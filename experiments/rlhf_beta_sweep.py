"""The KL coefficient beta of RLHF's PPO stage: reward against KL, and reward hacking at 0.

    .venv/bin/python experiments/rlhf_beta_sweep.py                  # beta in 0, 0.02, 0.1, 0.5
    .venv/bin/python experiments/rlhf_beta_sweep.py --betas 0 0.1 --updates 200

SFT and the reward model are trained once, exactly as ``python -m ppo_torchrl.rlhf`` trains
them (same seed, same data); then the PPO stage starts from the same SFT policy once per
beta. Every update logs the reward model's score (what PPO maximises), the true-rule score
(what we actually want) and KL(pi || pi_ref); at the end each policy is scored on the
held-out prompts. Reward hacking shows as the reward-model score still climbing while the
true score stalls or falls, with KL growing: at beta = 0 nothing holds the policy near
the SFT distribution where the reward model was trained.

Writes experiments/results/rlhf_beta_sweep.json and rlhf_beta_sweep.png.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.toy.lm import load_models
from ppo_torchrl.rlhf.toy.pipeline import held_out_split, run_reward_model, run_sft
from ppo_torchrl.rlhf.toy.stage import RLStage

RESULTS = Path(__file__).parent / "results"


def sweep(cfg: RLHFConfig, betas: list[float]) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    held_out, training = held_out_split(cfg, rng)
    tokenizer, policy = load_models(None, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.seed)
    started = time.perf_counter()
    run_sft(cfg, policy, tokenizer, training, lambda metrics, step: None)
    reward_model, rm = run_reward_model(
        cfg, policy, tokenizer, training, held_out, rng, lambda metrics, step: None
    )
    print(
        f"SFT + reward model: {time.perf_counter() - started:.0f} s; RM held-out accuracy "
        f"{rm['rm_heldout_accuracy']:.1%}"
    )
    prompts = training(cfg.rl_updates * cfg.prompts_per_update)  # the same prompts for every beta
    runs = []
    for beta in betas:
        rl = RLStage(replace(cfg, beta=beta), tokenizer, copy.deepcopy(policy), reward_model)
        s0 = rl.evaluate(held_out)["score"]
        history: list[dict[str, float]] = []

        def log(metrics: dict[str, float], step: int, history: list = history) -> None:
            history.append({"update": step, **metrics})

        seconds = rl.train(prompts, log)["rl_seconds"]
        final = rl.evaluate(held_out)
        greedy = rl.evaluate(held_out, greedy=True)
        heldout_rm = final["reward_model_score"]
        peak = max(history, key=lambda h: h["true_score"])
        runs.append(
            {
                "beta": beta,
                "S0": s0,
                "final_score": final["score"],
                "final_score_greedy": greedy["score"],
                "final_kl_to_ref": final["kl_to_ref"],
                "final_reward_model_score": heldout_rm,
                "peak_true_score": peak["true_score"],
                "peak_update": peak["update"],
                "rl_seconds": seconds,
                "history": [
                    {k: h[k] for k in ("update", "true_score", "reward_model_score", "kl_to_ref")}
                    for h in history
                ],
            }
        )
        print(
            f"beta {beta:<5}: true score {s0:.1f} -> {final['score']:.1f} (peak {peak['true_score']:.1f} "
            f"at update {peak['update']}), reward model {heldout_rm:+.2f}, KL {final['kl_to_ref']:.2f} "
            f"nats, {seconds:.0f} s"
        )
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}",
        "config": cfg.to_dict(),
        "rm_heldout_accuracy": rm["rm_heldout_accuracy"],
        "runs": runs,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (true_ax, rm_ax, kl_ax, trade_ax) = plt.subplots(1, 4, figsize=(18, 4.2))
    for i, run in enumerate(result["runs"]):
        h = run["history"]
        updates = [x["update"] for x in h]
        label = f"beta = {run['beta']}"
        true_ax.plot(updates, [x["true_score"] for x in h], label=label)
        rm_ax.plot(updates, [x["reward_model_score"] for x in h], label=label)
        kl_ax.plot(updates, [x["kl_to_ref"] for x in h], label=label)
        trade_ax.scatter(run["final_kl_to_ref"], run["final_score"], s=40)
        offset = (6, -12 if i % 2 else 6)  # neighbours' labels apart
        trade_ax.annotate(
            label,
            (run["final_kl_to_ref"], run["final_score"]),
            xytext=offset,
            textcoords="offset points",
            fontsize=8,
        )
    true_ax.set(title="true-rule score (what we want)", xlabel="PPO update", ylabel="score, 0-100")
    rm_ax.set(title="reward-model score (what PPO maximises)", xlabel="PPO update")
    kl_ax.set(title="KL(pi || pi_ref), nats per completion", xlabel="PPO update")
    trade_ax.set(
        title="held-out: true score against KL", xlabel="KL to pi_ref (nats)", ylabel="true score, 0-100"
    )
    true_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    import transformers

    transformers.logging.set_verbosity_error()  # no load reports for the tiny models
    transformers.logging.disable_progress_bar()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--betas", type=float, nargs="+", default=[0.0, 0.02, 0.1, 0.5], help="KL coefficients"
    )
    parser.add_argument("--updates", type=int, default=None, help="PPO updates per beta (config's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, models and sampling")
    args = parser.parse_args()
    cfg = RLHFConfig(track=False, seed=args.seed)
    if args.updates:
        cfg = replace(cfg, rl_updates=args.updates)
    result = sweep(cfg, args.betas)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rlhf_beta_sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / "rlhf_beta_sweep.png")
    print(f"-> {RESULTS / 'rlhf_beta_sweep.json'}, {RESULTS / 'rlhf_beta_sweep.png'}")


if __name__ == "__main__":
    main()
