"""Item 13 — GRPO's group-normalised advantage (`rollout.group_advantages`, `RLStage.rollout`).

GRPO samples G completions of each prompt (consecutive rows) and, with no critic, gives
completion i of a group the advantage

    A_i = (s_i - mean(s_group)) / (std(s_group) + eps),   std unbiased (n - 1), eps = 1e-4

on every one of its real tokens (padding gets 0, and is dropped by `PPOUpdate` anyway). The
loss adds beta * mean_tokens k3(pi || pi_ref) (`RefKLPenalty`), not a per-token reward, and
`RLHFConfig.param_overrides` turns the loss's own per-minibatch normalisation off.

Worked example, G = 4: s = [1, 0, 0.5, 0.5], mean 0.5, std = sqrt((0.25 + 0.25) / 3) =
0.408248, A = [0.5, -0.5, 0, 0] / 0.408348 = [1.224445, -1.224445, 0, 0]. (Population std
0.353553 would give 1.413813.) A group of equal scores [2, 2, 2, 2] gets 0 / 1e-4 = 0.
G = 2: s = [3, 1] gives (+-1) / (sqrt 2 + 1e-4) = +-0.707057; any pair gets
+-(1 / sqrt 2) / (1 + sqrt 2 * 1e-4 / |s_1 - s_2|), ~ +-0.7071 whatever the gap ([-5, -20]:
+-0.707100): with G = 2 only the order of the two scores survives.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_torchrl.core.loss import make_loss
from ppo_torchrl.core.params import LossParams, UpdateParams
from ppo_torchrl.core.update import make_update
from ppo_torchrl.rlhf.tokens import REF_LOG_PROB, RefKLPenalty, group_advantages
from ppo_torchrl.rlhf.toy.lm import sequence_scores
from ppo_torchrl.rlhf.toy.task import make_examples
from specs import hand, hand_rlhf
from specs.check import agree, differ
from specs.rig_rlhf import f32, layout, rlhf_config, step_actor, tiny_stage


def module_groups(scores, group_size: int) -> np.ndarray:
    return group_advantages(f32(scores), group_size).double().numpy()


def test_worked_example() -> None:
    """The docstring's groups, side by side in one call (G = 4), and a pair (G = 2)."""
    scores = [1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0]
    expected = [1.224445, -1.224445, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    agree("hand", expected, hand_rlhf.group_advantages(scores, 4))
    agree("group_advantages (G = 4)", expected, module_groups(scores, 4))
    population = 0.5 / (np.std([1.0, 0.0, 0.5, 0.5]) + 1e-4)
    differ("unbiased vs population std", population, module_groups(scores, 4)[0], 0.1)
    agree("group_advantages (G = 2)", [0.707057, -0.707057], module_groups([3.0, 1.0], 2))
    agree("hand, another pair", [0.707100, -0.707100], hand_rlhf.group_advantages([-5.0, -20.0], 2))
    agree("another pair (G = 2)", [0.707100, -0.707100], module_groups([-5.0, -20.0], 2))


def test_groups_are_consecutive_rows() -> None:
    """[1, 2, 3, 4] with G = 2 is groups {1, 2}, {3, 4} (consecutive rows, as
    `RLStage.prompts` repeats each prompt): A = +-0.5 / (0.707107 + 1e-4) = +-0.707007 in the
    order [-, +, -, +]; groups {1, 3}, {2, 4} would give [-, -, +, +]."""
    expected = [-0.707007, 0.707007] * 2
    agree("hand", expected, hand_rlhf.group_advantages([1.0, 2.0, 3.0, 4.0], 2))
    agree("G = 2", expected, module_groups([1.0, 2.0, 3.0, 4.0], 2))


# Scores on a grid of 1/8: exact in float32, so a near-tie (std ~ eps) cannot turn float32
# rounding of the mean into a visible error after the division by std + 1e-4.
grid_scores = st.integers(-24, 24).map(lambda k: k / 8)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 5), st.integers(1, 4), st.data())
def test_group_advantage_property(group_size: int, groups: int, data: st.DataObject) -> None:
    """Random groups: module = hand; each group's advantages sum to 0; adding a constant to a
    group's scores changes nothing."""
    n = group_size * groups
    scores = np.array(data.draw(st.lists(grid_scores, min_size=n, max_size=n)))
    a = module_groups(scores, group_size)
    agree("A", hand_rlhf.group_advantages(scores, group_size), a, atol=1e-5)
    agree("per-group sum", np.zeros(groups), a.reshape(groups, group_size).sum(1), atol=1e-4)
    shift = np.repeat(np.arange(groups) * 2.0, group_size)
    agree("shifted groups", a, module_groups(scores + shift, group_size), atol=1e-5)


@pytest.fixture(scope="module")
def grpo_rollout():
    stage = tiny_stage(algo="grpo", group_size=3, prompts_per_update=6, beta=0.2)
    torch.manual_seed(2)
    examples = stage.prompts(make_examples(8, random.Random(0), 2, 3), 0)
    roll, _ = stage.rollout(examples)
    with torch.no_grad():
        scores = sequence_scores(stage.reward_model, roll.batch["sequence"][:, 0], roll.sequence_lengths)
    return stage, examples, roll, scores.double().numpy()


def test_rlstage_rollout_broadcasts_over_tokens(grpo_rollout) -> None:
    """A real GRPO rollout (tiny random GPT-2s, 2 prompts x G = 3): rows 0-2 and 3-5 share a
    prompt; batch["advantage"][b, t] = A_b (hand, from the reward model's scores) on every real
    token of row b and 0 on its padding; the reward is the bare score on the last real token
    (GRPO puts beta into the loss, not the reward)."""
    stage, examples, roll, scores = grpo_rollout
    assert examples[0] == examples[1] == examples[2] != examples[3] == examples[4] == examples[5]
    lengths, steps = roll.lengths.tolist(), roll.batch.shape[1]
    assert min(lengths) < steps, "this rollout should have padded steps"
    per_row = hand_rlhf.group_advantages(scores, 3)
    agree(
        "advantage on tokens",
        hand_rlhf.broadcast_over_tokens(per_row, lengths, steps),
        roll.batch["advantage"][..., 0],
    )
    logp = roll.batch["action_log_prob"].double().numpy()
    ref = roll.batch[REF_LOG_PROB].double().numpy()
    bare = hand_rlhf.shaped_rewards(logp, ref, lengths, scores, 0.0, "k3")[0]
    agree("reward = the score at the last token (beta 0)", bare, roll.batch["next", "reward"][..., 0])
    assert torch.equal(
        roll.batch[REF_LOG_PROB], stage.ref_actor.get_dist(roll.batch).log_prob(roll.batch["action"])
    )


def test_ref_kl_penalty() -> None:
    """GRPO's loss term: loss_kl_ref = beta * mean over the tokens of k3(log pi, log pi_ref),
    log pi = the current actor's (a logits table over 4 tokens), beta = 0.2. Three tokens
    with pi(a) = [0.5, 0.25, 0.25] (logits [ln 3, 0, 0, 0], then uniform) and
    pi_ref(a) = [0.25, 0.5, 0.25]: k3 = [0.5 - 1 + ln 2, 2 - 1 - ln 2, 0] =
    [0.193147, 0.306853, 0], mean 1/6, loss_kl_ref = 0.2 / 6 = 0.033333."""
    logits = np.zeros((1, 5, 4))
    logits[0, 1, 0] = np.log(3)
    batch = layout([1], [3])
    batch["action"] = torch.tensor([[0, 1, 2]])
    logp = np.log([0.5, 0.25, 0.25])
    agree("hand log pi of the table", logp, hand.log_softmax(logits[0, [1, 2, 3]])[[0, 1, 2], [0, 1, 2]])
    batch["action_log_prob"] = f32(logp[None])
    batch[REF_LOG_PROB] = f32(np.log([[0.25, 0.5, 0.25]]))
    batch["advantage"] = torch.ones(1, 3, 1)
    actor = step_actor(logits)
    cfg = rlhf_config(algo="grpo", group_size=2, prompts_per_update=2, beta=0.2)
    out = RefKLPenalty(make_loss(cfg.params(LossParams), actor, None), actor, 0.2)(batch.reshape(-1))
    k3 = hand_rlhf.kl_per_token(logp, np.log([0.25, 0.5, 0.25]), "k3")
    agree("hand k3", [0.193147, 0.306853, 0.0], k3)
    agree("kl_ref", 1 / 6, out["kl_ref"])
    agree("loss_kl_ref = beta * mean k3", 0.2 / 6, out["loss_kl_ref"])


def test_grpo_update_ignores_padding_advantages(grpo_rollout) -> None:
    """PPOUpdate on GRPO's batch (no advantage module): pad advantages set to 1e6, or NaN,
    give the very same update as the zeros RLStage writes there."""
    _, _, roll, _ = grpo_rollout
    pads = ~roll.batch["collector", "mask"]
    assert pads.any(), "this rollout should have padded steps"
    results = []
    for junk in (0.0, 1e6, float("nan")):
        batch = roll.batch.clone()
        batch["advantage"][pads] = junk
        actor = step_actor(np.random.default_rng(0).normal(size=(6, batch["sequence"].shape[-1] + 1, 15)))
        cfg = rlhf_config(algo="grpo", group_size=3, prompts_per_update=6, minibatch_size=4, rl_lr=0.05)
        loss = RefKLPenalty(make_loss(cfg.params(LossParams), actor, None), actor, 0.2)
        update = make_update(cfg.params(UpdateParams), loss, None, seed=0)
        metrics = update(batch)
        results.append((metrics, actor.module[0].module.table.detach().numpy()))
    (clean, table), *others = results
    for metrics, other_table in others:
        for key in clean:
            agree(key, clean[key], metrics[key], rtol=0, atol=0)
        agree("actor", table, other_table, rtol=0, atol=0)
