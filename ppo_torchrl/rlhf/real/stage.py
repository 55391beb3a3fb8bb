"""RL on a real language model with a rule reward: PPO (GAE over tokens, a value head) or
GRPO (group advantages), through the core's `make_advantage`, `make_loss` and
`make_update`, exactly as for CartPole and the toy pipeline.

One update: sample completions with the KV cache (`sampler.py`: the prompts' shared prefix
once, each distinct prompt once, a bf16 copy of the policy where the CPU has bf16), lay them
out as the [B, T] token-step TensorDict of `tokens.token_steps`, score them by the rule,
put KL(pi || pi_ref) in the reward (per token) or in the loss (k3), and run the core's
update. Each phase's seconds and tokens/s are reported with the learning metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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
from ppo_torchrl.rlhf.real.arithmetic import Problem, score
from ppo_torchrl.rlhf.real.hub import Reference, chat_prompt_ids
from ppo_torchrl.rlhf.real.sampler import Sampler, sample, sampler_dtype
from ppo_torchrl.rlhf.tokens import REF_LOG_PROB, RefKLPenalty, group_advantages, shape_rewards, token_steps


@dataclass
class Completions:
    problems: list[Problem]
    sequence: torch.Tensor  # [B, W] prompt + completion, right-padded with pad_id
    starts: torch.Tensor  # [B] prompt lengths
    lengths: torch.Tensor  # [B] completion tokens, the EOS included where one was written
    texts: list[str]
    sampler_log_prob: torch.Tensor  # [B, N] log-prob of each completion token where it was sampled


class RuleRLStage:
    """The policy (``lm``, LoRA-wrapped or not), pi_ref, the critic for PPO, the core update."""

    def __init__(self, cfg: RLHFConfig, tokenizer, lm: nn.Module, critic_lm: nn.Module | None = None) -> None:
        self.cfg, self.tokenizer, self.lm = cfg, tokenizer, lm
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
        if cfg.kl_in == "loss":
            loss = RefKLPenalty(loss, self.actor, cfg.beta)
        advantage = None
        if critic is not None:
            advantage = make_advantage(cfg.params(GAEParams), critic)
            advantage.deactivate_vmap = True  # the trunk de-duplicates sequences (lm.py)
        self.update = make_update(cfg.params(UpdateParams), loss, advantage, seed=cfg.seed)
        for trunk in {self.trunk, getattr(self, "critic_trunk", self.trunk)}:
            self.update.optimizer.register_step_post_hook(trunk.clear)
        self._prompt_ids: dict[str, list[int]] = {}
        self.sampler = Sampler(lm, sampler_dtype(cfg.sampler_dtype, lm))

    # --- sampling -------------------------------------------------------------------------------
    def prompt_ids(self, problem: Problem) -> list[int]:
        if problem.question not in self._prompt_ids:
            self._prompt_ids[problem.question] = chat_prompt_ids(self.tokenizer, problem.question)
        return self._prompt_ids[problem.question]

    @torch.no_grad()
    def generate(self, problems: list[Problem], greedy: bool, exact: bool = False) -> Completions:
        """Completions, laid out right-padded (prompt at column 0) as the loss reads them. A
        completion ends at its first EOS, which it keeps: with pad == eos, what follows is
        padding. Sampled from the sampler (`sampler.py`) unless ``greedy`` or ``exact``: then
        from the policy itself, as evaluation reads it."""
        tok = self.tokenizer
        prompts = [self.prompt_ids(p) for p in problems]
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
        texts = []
        for b, p in enumerate(prompts):
            n = int(lengths[b])
            sequence[b, : len(p)] = torch.tensor(p)
            sequence[b, len(p) : len(p) + n] = out[b, :n]
            texts.append(tok.decode(out[b, :n].tolist(), skip_special_tokens=True))
        return Completions(
            problems, sequence.to(device), starts.to(device), lengths.to(device), texts, log_prob
        )

    def scores(self, done: Completions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        parts = [score(p, t, self.cfg.format_coef) for p, t in zip(done.problems, done.texts, strict=True)]
        reward, exact, bare = (
            torch.tensor(col, device=done.lengths.device) for col in zip(*parts, strict=True)
        )
        return reward, exact, bare

    # --- one update -------------------------------------------------------------------------------
    def rollout(self, problems: list[Problem]) -> tuple[TensorDict, dict[str, float], Completions]:
        cfg = self.cfg
        started = time.perf_counter()
        done = self.generate(problems, greedy=False)
        generated = time.perf_counter()
        self.trunk.clear()
        batch = token_steps(done.sequence, done.starts, done.lengths, int(done.lengths.max()))
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            batch["action_log_prob"] = self.actor.get_dist(batch).log_prob(batch["action"])
            ref = self.ref_actor.get_dist(batch).log_prob(batch["action"])
        reward, exact, bare = self.scores(done)
        valid = batch["collector", "mask"]
        kl_k1 = torch.where(valid, batch["action_log_prob"] - ref, 0.0).sum(1)
        # How far the sampler (a bf16 copy) is from the policy the loss reads: k3, per token.
        log_r = batch["action_log_prob"] - done.sampler_log_prob[:, : batch.shape[1]]
        sampler_kl = float(torch.where(valid, torch.expm1(log_r) - log_r, 0.0).sum() / valid.sum())
        in_reward = cfg.beta if cfg.kl_in == "reward" else 0.0
        if cfg.kl_in == "loss":
            batch[REF_LOG_PROB] = ref
        if cfg.algo == "ppo":
            shape_rewards(batch, done.lengths, reward, ref, in_reward, cfg.kl_estimator)
        else:
            penalised = reward - in_reward * kl_k1
            advantage = group_advantages(penalised, cfg.group_size)[:, None].expand(batch.batch_size)
            batch["advantage"] = torch.where(valid, advantage, 0.0)[..., None]
        scored = time.perf_counter()
        tokens = int(done.lengths.sum())
        metrics = {
            "reward": float(reward.mean()),
            "exact": float(exact.mean()) * 100,
            "format": float(bare.mean()) * 100,
            "kl_to_ref": float(kl_k1.mean()),
            "sampler_kl": sampler_kl,
            "response_length": float(done.lengths.float().mean()),
            "generate_seconds": generated - started,
            "generate_tokens_per_second": tokens / (generated - started),
            "score_seconds": scored - generated,
            "score_tokens_per_second": tokens / (scored - generated),
        }
        return batch, metrics, done

    def step(self, problems: list[Problem]) -> tuple[dict[str, float], Completions]:
        batch, metrics, done = self.rollout(problems)
        started = time.perf_counter()
        valid = int(batch["collector", "mask"].sum())
        self.update.minibatch_size = min(self.cfg.minibatch_size, valid)
        out = self.update(batch)
        self.trunk.clear()
        self.sampler.sync()
        seconds = time.perf_counter() - started
        metrics.update(out)
        metrics.update(update_seconds=seconds, update_tokens_per_second=valid * self.update.epochs / seconds)
        return metrics, done

    def batch_problems(self, pool: list[Problem], update: int) -> list[Problem]:
        """This update's prompts, in order from the training pool; GRPO repeats each prompt
        ``group_size`` times in consecutive rows."""
        cfg = self.cfg
        repeat = cfg.group_size if cfg.algo == "grpo" else 1
        distinct = cfg.prompts_per_update // repeat
        start = (update * distinct) % len(pool)
        chosen = (pool[start:] + pool)[:distinct]
        return [p for p in chosen for _ in range(repeat)]

    # --- held-out evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, problems: list[Problem], chunk: int = 100, kl_prompts: int = 64) -> dict[str, float]:
        """Greedy held-out exact-answer and format rates (0-100), mean length; and KL(pi || pi_ref)
        (k1 summed over a completion) of completions sampled for the first ``kl_prompts``."""
        exact = bare = length = 0.0
        texts: list[str] = []
        started = time.perf_counter()
        for i in range(0, len(problems), chunk):
            done = self.generate(problems[i : i + chunk], greedy=True)
            _, e, b = self.scores(done)
            exact, bare = exact + float(e.sum()), bare + float(b.sum())
            length += float(done.lengths.sum())
            texts += done.texts
        seconds = time.perf_counter() - started
        done = self.generate(problems[:kl_prompts], greedy=False, exact=True)
        batch = token_steps(done.sequence, done.starts, done.lengths, int(done.lengths.max()))
        with set_exploration_type(ExplorationType.RANDOM):
            log_prob = self.actor.get_dist(batch).log_prob(batch["action"])
            ref = self.ref_actor.get_dist(batch).log_prob(batch["action"])
        self.trunk.clear()
        kl = torch.where(batch["collector", "mask"], log_prob - ref, 0.0).sum(1)
        n = len(problems)
        return {
            "exact": 100 * exact / n,
            "format": 100 * bare / n,
            "response_length": length / n,
            "kl_to_ref": float(kl.mean()),
            "seconds": seconds,
            "texts": texts,
        }
