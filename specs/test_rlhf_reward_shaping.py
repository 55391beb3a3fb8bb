"""Item 11 — reward shaping over tokens (`rollout.shape_rewards`, as `RLStage.rollout` calls it).

A completion of n real tokens (EOS included; or n = the length limit) gets, per token,

    r_t = -beta * KL_t                      t < n - 1
    r_t = -beta * KL_t + score              t = n - 1, the last real token
    r_t = 0,  KL_t = 0                      t >= n, padding (whatever its log-probs hold)

KL_t = kl_estimate(log pi(a_t), log pi_ref(a_t), kind) (item 10), score = the reward
model's score of the whole sequence. So sum_t r_t = score - beta * sum_t KL_t.

Worked example, beta = 0.1, k1, T = 4:
    row 0, n = 3: log pi = [-0.5, -1.0, -0.2], log pi_ref = [-0.7, -0.9, -0.5], score 1.5
        KL = [0.2, -0.1, 0.3]    r = [-0.02, 0.01, -0.03 + 1.5, 0] = [-0.02, 0.01, 1.47, 0]
    row 1, n = 4 (hit the limit, no EOS): log pi = [-1, -2, -0.5, -0.1],
        log pi_ref = [-1, -1.5, -1, -0.4], score -1
        KL = [0, -0.5, 0.5, 0.3]  r = [0, 0.05, -0.05, -0.03 - 1] = [0, 0.05, -0.05, -1.03]
    row sums: 1.46 = 1.5 - 0.1 * 0.4 and -1.03 = -1 - 0.1 * 0.3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_torchrl.rlhf.toy.lm import sequence_scores
from ppo_torchrl.rlhf.toy.task import make_examples
from specs import hand_rlhf
from specs.cases import floats
from specs.cases_rlhf import LENGTHS, LOGP, REF, SCORES, STARTS, Completions, completions
from specs.check import agree
from specs.rig_rlhf import shaped, tiny_stage


def test_worked_example() -> None:
    """The docstring's two rows: rewards, the returned (masked) KL, the row sums."""
    batch, kl = shaped(STARTS, LENGTHS, LOGP, REF, SCORES, 0.1, "k1")
    reward = batch["next", "reward"][..., 0]
    expected = [[-0.02, 0.01, 1.47, 0.0], [0.0, 0.05, -0.05, -1.03]]
    agree("hand rewards", expected, hand_rlhf.shaped_rewards(LOGP, REF, LENGTHS, SCORES, 0.1, "k1")[0])
    agree("rewards", expected, reward)
    agree("per-token KL (0 on padding)", [[0.2, -0.1, 0.3, 0.0], [0.0, -0.5, 0.5, 0.3]], kl)
    agree("row sums = score - beta * sum KL", [1.46, -1.03], reward.sum(1))


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_padding_garbage_stays_out(kind: str) -> None:
    """Log-probs at the padded step of row 0 set to NaN, -inf or 1e30: its reward and KL stay
    0 and row 0's real rewards are unchanged (`torch.where`, not a multiplication by the mask)."""
    clean, _ = shaped(STARTS, LENGTHS, LOGP, REF, SCORES, 0.1, kind)
    hand_reward = hand_rlhf.shaped_rewards(LOGP, REF, LENGTHS, SCORES, 0.1, kind)[0]
    for junk in (math.nan, -math.inf, 1e30):
        logp, ref = np.array(LOGP), np.array(REF)
        logp[0, 3], ref[0, 3] = junk, -junk
        batch, kl = shaped(STARTS, LENGTHS, logp, ref, SCORES, 0.1, kind)
        agree(f"rewards with {junk} at a pad", hand_reward, batch["next", "reward"][..., 0])
        agree(f"rewards with {junk} at a pad (= clean)", clean["next", "reward"], batch["next", "reward"])
        assert float(kl[0, 3]) == 0.0


@settings(max_examples=40, deadline=None)
@given(completions(), st.sampled_from(["k1", "k2", "k3"]), floats(0, 1))
def test_shaping_property(case: Completions, kind: str, beta: float) -> None:
    """Random rows, lengths, log-probs, scores, beta and estimator; junk log-probs on the
    padded steps. Rewards and KL token by token, and sum_t r_t = score - beta * sum_t KL_t."""
    logp = np.where(case.pads, case.garbage, case.logp)
    batch, kl = shaped(case.starts, case.lengths, logp, case.ref, case.scores, beta, kind)
    hand_reward, hand_kl = hand_rlhf.shaped_rewards(
        case.logp, case.ref, case.lengths, case.scores, beta, kind
    )
    reward = batch["next", "reward"][..., 0]
    agree("rewards", hand_reward, reward, atol=1e-5)
    agree("KL", hand_kl, kl, atol=1e-5)
    agree("row sums", case.scores - beta * hand_kl.sum(1), reward.sum(1), atol=1e-4)


@pytest.fixture(scope="module")
def ppo_stage():
    stage = tiny_stage(algo="ppo", kl_estimator="k3", beta=0.5, prompts_per_update=4)
    with torch.no_grad():  # pi moves away from pi_ref (a frozen copy of it), so KL != 0
        for p in stage.actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return stage


def test_rlstage_rollout_writes_the_shaped_rewards(ppo_stage) -> None:
    """A real PPO rollout (tiny random GPT-2s, beta = 0.5, k3): the rewards RLStage.rollout
    writes are the formula applied to its own log pi (action_log_prob), log pi_ref (the
    frozen SFT copy), lengths and reward-model scores; the logged KL metrics follow."""
    import random

    stage = ppo_stage
    torch.manual_seed(1)
    roll, metrics = stage.rollout(stage.prompts(make_examples(8, random.Random(0), 2, 3), 0))
    batch = roll.batch
    with torch.no_grad():
        ref = stage.ref_actor.get_dist(batch).log_prob(batch["action"]).double().numpy()
        scores = sequence_scores(stage.reward_model, batch["sequence"][:, 0], roll.sequence_lengths)
        scores = scores.double().numpy()
    logp, lengths = batch["action_log_prob"].double().numpy(), roll.lengths.tolist()
    assert min(lengths) < batch.shape[1], "this rollout should have padded steps"
    hand_reward, hand_kl = hand_rlhf.shaped_rewards(logp, ref, lengths, scores, 0.5, "k3")
    assert hand_kl.max() > 1e-3, "the perturbed policy should differ from pi_ref"
    agree("rollout rewards", hand_reward, batch["next", "reward"][..., 0], atol=1e-5)
    agree("kl_penalty_per_token", hand_kl.sum() / sum(lengths), metrics["kl_penalty_per_token"], atol=1e-6)
    k1 = hand_rlhf.shaped_rewards(logp, ref, lengths, [0.0] * len(lengths), 1.0, "k1")[1]
    agree("kl_to_ref (k1 summed per completion, mean)", k1.sum(1).mean(), metrics["kl_to_ref"], atol=1e-5)
    agree("reward_model_score", scores.mean(), metrics["reward_model_score"])
