"""RL on a real language model with a task's rewards: PPO (GAE over tokens, a value head) or
GRPO (group advantages), through the core's `make_advantage`, `make_loss` and
`make_update`, exactly as for CartPole and the toy pipeline.

One update: sample completions with the KV cache (`sampler.py`: the prompts' shared prefix
once, each distinct prompt once, a bf16 copy of the policy where the CPU has bf16), score
them with the task's rewards (`rewards.py`), lay them out as the [B, T] token-step
TensorDict of `tokens.token_steps`, put KL(pi || pi_ref) in the reward (per token) or in the
loss (k3), and run the core's update. GRPO may drop groups whose rewards are all equal and
sample new prompts in their place (``dynamic_sampling``); beta may follow a KL target
(``kl_target``, `tokens.AdaptiveKL`). Each phase's seconds and tokens/s are reported with
the learning metrics.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from tensordict import TensorDict
from torch import nn
from torchrl.envs.utils import ExplorationType, set_exploration_type

from ppo_torchrl.core.advantage import make_advantage
from ppo_torchrl.core.loss import make_loss
from ppo_torchrl.core.params import GAEParams, LossParams, UpdateParams
from ppo_torchrl.core.update import make_update
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.rlhf.real import heads
from ppo_torchrl.rlhf.real.completions import Completions, Row, Scored
from ppo_torchrl.rlhf.real.hub import Reference
from ppo_torchrl.rlhf.real.prompts import prompt_ids
from ppo_torchrl.rlhf.real.rewards import TaskRewards, means
from ppo_torchrl.rlhf.real.sampler import Sampler, sample, sampler_dtype
from ppo_torchrl.rlhf.tokens import (
    REF_LOG_PROB,
    AdaptiveKL,
    RefKLPenalty,
    group_advantages,
    informative_groups,
    shape_rewards,
    token_steps,
)


class TaskRLStage:
    """The policy (``lm``, LoRA-wrapped or not), pi_ref, the critic for PPO, the core update,
    and the task's rewards."""

    def __init__(
        self,
        cfg: RLHFConfig,
        tokenizer,
        lm: nn.Module,
        rewards: TaskRewards,
        critic_lm: nn.Module | None = None,
    ) -> None:
        self.cfg, self.tokenizer, self.lm, self.rewards = cfg, tokenizer, lm, rewards
        self.critic_lm = critic_lm  # --value-model copy's LM, or None
        torch.manual_seed(cfg.seed)  # generate() samples from torch's global generator
        body, vocab_head = heads.body_and_head(lm)
        self.trunk = heads.Trunk(body, cached=True)
        self.actor = heads.policy(self.trunk, vocab_head, cfg.temperature)
        self.reference = Reference(lm)
        self.ref_actor = heads.reference_policy(self.reference.lm, self.reference.context, cfg.temperature)
        critic = None
        if cfg.algo == "ppo":
            trunk = self.trunk
            if critic_lm is not None:  # --value-model copy: its own body and adapter
                trunk = heads.Trunk(heads.body_and_head(critic_lm)[0], cached=True)
            like = next(p for p in body.parameters())
            self.value_head = heads.value_head(lm.config.hidden_size, like)
            critic = heads.critic(trunk, self.value_head)
            self.critic_trunk = trunk
        loss: nn.Module = make_loss(cfg.params(LossParams), self.actor, critic)
        self.kl = AdaptiveKL(cfg.beta, cfg.kl_target, cfg.kl_horizon)
        self.kl_penalty: RefKLPenalty | None = None
        if cfg.kl_in == "loss":
            loss = self.kl_penalty = RefKLPenalty(loss, self.actor, cfg.beta)
        advantage = None
        if critic is not None:
            advantage = make_advantage(cfg.params(GAEParams), critic)
            advantage.deactivate_vmap = True  # the trunk de-duplicates sequences (lm.py)
        self.update = make_update(cfg.params(UpdateParams), loss, advantage, seed=cfg.seed)
        for trunk in {self.trunk, getattr(self, "critic_trunk", self.trunk)}:
            self.update.optimizer.register_step_post_hook(trunk.clear)
        self._prompt_ids: dict[str, list[int]] = {}
        self.sampler = Sampler(lm, sampler_dtype(cfg.sampler_dtype, lm))
        self.pool: list[Row] = []  # the training rows, walked in order (the pipeline sets them)
        self.cursor = 0  # distinct prompts taken so far (dynamic sampling takes more than a batch)
        self.reward_seconds = 0.0
        self.last_rewards = torch.zeros(0)

    # --- sampling -------------------------------------------------------------------------------
    def prompt_ids(self, row: Row) -> list[int]:
        key = repr(row["prompt"])
        if key not in self._prompt_ids:
            self._prompt_ids[key] = prompt_ids(self.tokenizer, row["prompt"])
        return self._prompt_ids[key]

    @torch.no_grad()
    def generate(self, rows: list[Row], greedy: bool, exact: bool = False) -> Completions:
        """Completions, laid out right-padded (prompt at column 0) as the loss reads them. A
        completion ends at its first EOS, which it keeps: with pad == eos, what follows is
        padding. Sampled from the sampler (`sampler.py`) unless ``greedy`` or ``exact``: then
        from the policy itself, as evaluation reads it."""
        tok = self.tokenizer
        prompts = [self.prompt_ids(r) for r in rows]
        training = self.lm.training  # True only with gradient checkpointing (hub.with_adapter)
        self.lm.eval()  # the KV cache: checkpointing in training mode would switch it off
        lm = self.lm if greedy or exact else self.sampler.lm
        temperature = None if greedy else self.cfg.temperature
        out, log_prob = sample(
            lm, prompts, self.cfg.max_new_tokens, tok.pad_token_id, tok.eos_token_id, temperature
        )
        self.lm.train(training)
        out, device = out.cpu(), log_prob.device
        is_eos = out == tok.eos_token_id
        lengths = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, out.shape[1])
        starts = torch.tensor([len(p) for p in prompts])
        width = max(len(p) for p in prompts)
        sequence = torch.full((len(prompts), width + out.shape[1]), tok.pad_token_id, dtype=torch.long)
        texts, ids = [], []
        for b, p in enumerate(prompts):
            n = int(lengths[b])
            sequence[b, : len(p)] = torch.tensor(p)
            sequence[b, len(p) : len(p) + n] = out[b, :n]
            written = out[b, :n].tolist()
            ids.append(written[:-1] if written and written[-1] == tok.eos_token_id else written)
            texts.append(tok.decode(written, skip_special_tokens=True))
        return Completions(
            rows, sequence.to(device), starts.to(device), lengths.to(device), texts, ids, log_prob
        )

    def scores(self, done: Completions) -> Scored:
        """The task's rewards; a function that fails raises `RewardError` (one line)."""
        started = time.perf_counter()
        total, values = self.rewards(done.rows, done.texts, done.ids)
        self.reward_seconds += time.perf_counter() - started
        return Scored(total.to(done.lengths.device), values)

    def sample_batch(self, rows: list[Row]) -> tuple[Completions, Scored, dict[str, float]]:
        """Completions for ``rows`` and their rewards. With dynamic sampling (GRPO), groups
        whose rewards are all equal carry no signal: they are dropped and up to
        ``dynamic_sampling`` more rounds are sampled from the next training rows to take
        their place; the batch may end smaller than asked when every round came back flat."""
        cfg = self.cfg
        done = self.generate(rows, greedy=False)
        scored = self.scores(done)
        if not cfg.dynamic_sampling:
            return done, scored, {}
        first, first_scored = done, scored
        keep = informative_groups(scored.total, cfg.group_size)
        kept, kept_scores, dropped = (
            [done.select(keep)],
            [(scored, keep)],
            (len(rows) - len(keep)) // cfg.group_size,
        )
        rounds = 0
        while sum(len(k) for _, k in kept_scores) < len(rows) and rounds < cfg.dynamic_sampling:
            rounds += 1
            more = self.next_rows(len(rows) - sum(len(k) for _, k in kept_scores))
            extra = self.generate(more, greedy=False)
            extra_scored = self.scores(extra)
            keep = informative_groups(extra_scored.total, cfg.group_size)
            dropped += (len(more) - len(keep)) // cfg.group_size
            kept.append(extra.select(keep))
            kept_scores.append((extra_scored, keep))
        metrics = {"groups_dropped": float(dropped), "sampling_rounds": float(rounds + 1)}
        if not any(k for _, k in kept_scores):  # every round came back flat: nothing to drop to
            return first, first_scored, metrics  # (zero advantages: the update only moves KL terms)
        done = Completions.concat(kept, self.tokenizer.pad_token_id)
        total = torch.cat([s.total[torch.tensor(k, dtype=torch.long)] for s, k in kept_scores])
        values = {
            name: [v for s, k in kept_scores for v in [s.values[name][i] for i in k]]
            for name in self.rewards.names
        }
        return done, Scored(total.to(done.lengths.device), values), metrics

    # --- one update -------------------------------------------------------------------------------
    def rollout(self, rows: list[Row]) -> tuple[TensorDict, dict[str, float], Completions]:
        cfg = self.cfg
        started = time.perf_counter()
        self.reward_seconds = 0.0
        done, scored, sampling = self.sample_batch(rows)
        generated = time.perf_counter()
        self.trunk.clear()
        batch = token_steps(done.sequence, done.starts, done.lengths, int(done.lengths.max()))
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            batch["action_log_prob"] = self.actor.get_dist(batch).log_prob(batch["action"])
            ref = self.ref_actor.get_dist(batch).log_prob(batch["action"])
        reward = self.last_rewards = scored.total
        valid = batch["collector", "mask"]
        kl_k1 = torch.where(valid, batch["action_log_prob"] - ref, 0.0).sum(1)
        # How far the sampler (a bf16 copy) is from the policy the loss reads: k3, per token.
        log_r = batch["action_log_prob"] - done.sampler_log_prob[:, : batch.shape[1]]
        sampler_kl = float(torch.where(valid, torch.expm1(log_r) - log_r, 0.0).sum() / valid.sum())
        beta = self.kl.beta
        in_reward = beta if cfg.kl_in == "reward" else 0.0
        if cfg.kl_in == "loss":
            batch[REF_LOG_PROB] = ref
            self.kl_penalty.beta = beta
        if cfg.algo == "ppo":
            shape_rewards(batch, done.lengths, reward, ref, in_reward, cfg.kl_estimator)
        else:
            penalised = reward - in_reward * kl_k1
            advantage = group_advantages(penalised, cfg.group_size)[:, None].expand(batch.batch_size)
            batch["advantage"] = torch.where(valid, advantage, 0.0)[..., None]
        scored_at = time.perf_counter()
        tokens = int(done.lengths.sum())
        generate_seconds = generated - started - self.reward_seconds
        unscored = sum(all(v[i] is None for v in scored.values.values()) for i in range(len(done.rows)))
        metrics = {
            "reward": float(reward.mean()),
            **{f"reward/{name}": value for name, value in means(scored.values).items()},
            "unscored": float(unscored),
            "kl_to_ref": float(kl_k1.mean()),
            "beta": beta,
            "sampler_kl": sampler_kl,
            "response_length": float(done.lengths.float().mean()),
            "completions": float(len(done.rows)),
            "generate_seconds": generate_seconds,
            "generate_tokens_per_second": tokens / generate_seconds,
            "reward_seconds": self.reward_seconds,
            "score_seconds": scored_at - generated,
            "score_tokens_per_second": tokens / (scored_at - generated),
            **sampling,
        }
        return batch, metrics, done

    def step(self, rows: list[Row]) -> tuple[dict[str, float], Completions]:
        batch, metrics, done = self.rollout(rows)
        started = time.perf_counter()
        valid = int(batch["collector", "mask"].sum())
        self.update.minibatch_size = min(self.cfg.minibatch_size, valid)
        out = self.update(batch)
        self.trunk.clear()
        self.sampler.sync()
        self.kl.update(metrics["kl_to_ref"], len(done.rows))  # beta for the next update
        seconds = time.perf_counter() - started
        metrics.update(out)
        metrics.update(update_seconds=seconds, update_tokens_per_second=valid * self.update.epochs / seconds)
        return metrics, done

    def next_rows(self, n: int) -> list[Row]:
        """The next ``n`` rows of the training pool, in order, cyclically; GRPO repeats each
        prompt ``group_size`` times in consecutive rows (``n`` counts the repeats)."""
        cfg = self.cfg
        repeat = cfg.group_size if cfg.algo == "grpo" else 1
        distinct = n // repeat
        start = self.cursor % len(self.pool)
        chosen = (self.pool[start:] + self.pool * (1 + distinct // len(self.pool)))[:distinct]
        self.cursor += distinct
        return [r for r in chosen for _ in range(repeat)]

    def next_batch(self) -> list[Row]:
        return self.next_rows(self.cfg.prompts_per_update)

    # --- held-out evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, rows: list[Row], chunk: int = 100, kl_prompts: int = 64) -> dict[str, Any]:
        """Greedy held-out rewards: the weighted total's mean (``reward``) and each function's
        (``rewards``), mean length; and KL(pi || pi_ref) (k1 summed over a completion) of
        completions sampled for the first ``kl_prompts``."""
        length = 0.0
        texts: list[str] = []
        totals: list[torch.Tensor] = []
        values: dict[str, list[float | None]] = {name: [] for name in self.rewards.names}
        started = time.perf_counter()
        for i in range(0, len(rows), chunk):
            done = self.generate(rows[i : i + chunk], greedy=True)
            scored = self.scores(done)
            totals.append(scored.total.cpu())
            for name, column in scored.values.items():
                values[name] += column
            length += float(done.lengths.sum())
            texts += done.texts
        seconds = time.perf_counter() - started
        done = self.generate(rows[:kl_prompts], greedy=False, exact=True)
        batch = token_steps(done.sequence, done.starts, done.lengths, int(done.lengths.max()))
        with set_exploration_type(ExplorationType.RANDOM):
            log_prob = self.actor.get_dist(batch).log_prob(batch["action"])
            ref = self.ref_actor.get_dist(batch).log_prob(batch["action"])
        self.trunk.clear()
        kl = torch.where(batch["collector", "mask"], log_prob - ref, 0.0).sum(1)
        total = torch.cat(totals)
        return {
            "reward": float(total.mean()),
            "rewards": means(values),
            "response_length": length / len(rows),
            "kl_to_ref": float(kl.mean()),
            "seconds": seconds,
            "texts": texts,
            "sample_rewards": total.tolist(),
        }
