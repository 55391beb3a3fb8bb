"""Stage 3, RL from the reward model: PPO (GAE over tokens, a critic) or GRPO (group
advantages, no critic) — both through the core's `make_advantage`, `make_loss` and
`PPOUpdate`, unchanged.

The core sees a [B, T] batch with standard TorchRL keys, exactly like a CartPole batch:
observation keys (here ``sequence``/``position``/``seq_id`` instead of ``observation``),
``action``, ``action_log_prob``, ``("next", "reward" | "done" | "terminated")`` and the
validity mask. Its parameter objects come from `RLHFConfig` (gamma = 1 over tokens by
default); the core never sees a CartPole config.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from ppo_torchrl.core.advantage import make_advantage
from ppo_torchrl.core.loss import make_loss
from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams
from ppo_torchrl.core.update import make_update
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.tokens import REF_LOG_PROB, RefKLPenalty, group_advantages, shape_rewards
from ppo_torchrl.rlhf.toy.lm import frozen_copy, sequence_scores, token_critic, token_policy
from ppo_torchrl.rlhf.toy.rollout import Rollout, sample_completions
from ppo_torchrl.rlhf.toy.task import Example


class RLStage:
    """Stage 3: the policy, pi_ref, the reward model and the core's update, for PPO or GRPO,
    on the device of ``policy_lm``."""

    def __init__(self, cfg: RLHFConfig, tokenizer, policy_lm: nn.Module, reward_model: nn.Module) -> None:
        self.cfg, self.tokenizer = cfg, tokenizer
        torch.manual_seed(cfg.seed)  # sampling draws from torch's global generator
        policy_lm.eval()  # no dropout: log-probs at sampling time and in the loss agree
        self.reward_model = frozen_copy(reward_model)
        self.actor = token_policy(policy_lm)
        self.ref_actor = token_policy(frozen_copy(policy_lm))  # pi_ref = the SFT model
        critic = None
        if cfg.algo == "ppo":  # critic initialised from the reward model, as in InstructGPT
            # eval(): no dropout, so V(s) is a function of s — GAE and the value loss see
            # the same values; the parameters stay trainable.
            critic_model = copy.deepcopy(reward_model).eval().requires_grad_(True)
            critic = token_critic(critic_model)
        loss: nn.Module = make_loss(cfg.params(LossParams), self.actor, critic)
        if cfg.algo == "grpo":
            loss = RefKLPenalty(loss, self.actor, cfg.beta)
        advantage = None
        if critic is not None:
            advantage = make_advantage(cfg.params(GAEParams), critic)
            # GAE evaluates V(s) and V(s') in one torch.vmap call by default; the token critic
            # de-duplicates sequences (a data-dependent shape vmap cannot batch), so take
            # GAE's documented two-call path instead.
            advantage.deactivate_vmap = True
        self.update = make_update(cfg.params(UpdateParams), loss, advantage, seed=cfg.seed)

    def rollout(self, examples: list[Example]) -> tuple[Rollout, dict[str, float]]:
        cfg = self.cfg
        roll = sample_completions(self.actor, self.tokenizer, examples, cfg.max_new_tokens)
        batch = roll.batch
        with torch.no_grad():
            ref = self.ref_actor.get_dist(batch).log_prob(batch["action"])
        scores = sequence_scores(self.reward_model, batch["sequence"][:, 0], roll.sequence_lengths)
        kind = cfg.kl_estimator if cfg.algo == "ppo" else "k3"
        kl = shape_rewards(batch, roll.lengths, scores, ref, cfg.beta if cfg.algo == "ppo" else 0.0, kind)
        if cfg.algo == "grpo":
            batch[REF_LOG_PROB] = ref
            advantage = group_advantages(scores, cfg.group_size)[:, None].expand(batch.batch_size)
            batch["advantage"] = torch.where(batch["collector", "mask"], advantage, 0.0)[..., None]
        kl_k1 = torch.where(batch["collector", "mask"], batch["action_log_prob"] - ref, 0.0).sum(1)
        return roll, {
            "reward_model_score": float(scores.mean()),
            "true_score": float(roll.true_scores().mean()) * 100,
            "kl_to_ref": float(kl_k1.mean()),
            "kl_penalty_per_token": float(kl.sum() / roll.lengths.sum()),
            "response_length": float(roll.lengths.float().mean()),
        }

    def prompts(self, pool: list[Example], update: int) -> list[Example]:
        """The prompts of one update, taken in order from ``pool`` (fresh ones while it lasts).
        GRPO samples several completions of each prompt, in consecutive rows."""
        distinct = self.cfg.prompts_per_update // (self.cfg.group_size if self.cfg.algo == "grpo" else 1)
        start = (update * distinct) % len(pool)
        chosen = (pool[start:] + pool)[:distinct]
        repeat = self.cfg.group_size if self.cfg.algo == "grpo" else 1
        return [e for e in chosen for _ in range(repeat)]

    def train(self, pool: list[Example], log: Callable[[dict[str, float], int], None]) -> dict[str, float]:
        started = time.perf_counter()
        for step in range(1, self.cfg.rl_updates + 1):
            roll, metrics = self.rollout(self.prompts(pool, step - 1))
            # Completions that stop early leave fewer real token steps than the rollout's
            # [B, T] grid; a minibatch never asks for more of them than there are.
            valid = int(roll.batch["collector", "mask"].sum())
            self.update.minibatch_size = min(self.cfg.minibatch_size, valid)
            metrics.update(self.update(roll.batch))
            log(metrics, step)
        return {"rl_seconds": time.perf_counter() - started}

    @torch.no_grad()
    def samples(self, examples: list[Example]) -> list[str]:
        """One sampled completion per prompt, as text with its true-rule score."""
        roll = sample_completions(self.actor, self.tokenizer, examples, self.cfg.max_new_tokens)
        return roll.texts(self.tokenizer)

    @torch.no_grad()
    def evaluate(self, examples: list[Example], greedy: bool = False) -> dict[str, float]:
        """True-rule score (0-100), reward-model score and KL to pi_ref (k1, summed over a
        completion) of completions sampled (or greedy) for ``examples``."""
        roll = sample_completions(
            self.actor, self.tokenizer, examples, self.cfg.max_new_tokens, greedy=greedy
        )
        ref = self.ref_actor.get_dist(roll.batch).log_prob(roll.batch["action"])
        kl = torch.where(roll.batch["collector", "mask"], roll.batch["action_log_prob"] - ref, 0.0).sum(1)
        scores = sequence_scores(self.reward_model, roll.batch["sequence"][:, 0], roll.sequence_lengths)
        return {
            "score": float(roll.true_scores().mean()) * 100,
            "reward_model_score": float(scores.mean()),
            "kl_to_ref": float(kl.mean()),
            "response_length": float(roll.lengths.float().mean()),
        }
