"""Item 14 — the reward model's Bradley-Terry loss (`reward.bradley_terry_loss`, as
`train_reward_model` uses it).

Bradley-Terry: P(chosen > rejected) = sigmoid(r_c - r_r). The loss is the mean negative
log-likelihood of the labelled preferences, with d = r_c - r_r:

    L = mean_i -log sigmoid(d_i) = mean_i log(1 + e^{-d_i})
    dL/dr_c_i = -sigmoid(-d_i) / n = -(1 - P_i) / n,     dL/dr_r_i = +sigmoid(-d_i) / n

Worked example: r_c = [2, 0], r_r = [1, 0], d = [1, 0]:
    L = (log(1 + e^-1) + log 2) / 2 = (0.313262 + 0.693147) / 2 = 0.503204
    dL/dr_c = -[sigmoid(-1), sigmoid(0)] / 2 = -[0.268941, 0.5] / 2 = [-0.134471, -0.25]

L depends on d only (adding a constant to both scores changes nothing), and
L(c, r) - L(r, c) = -mean(d), since log(1 + e^-d) - log(1 + e^d) = -d.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_torchrl.rlhf.toy.lm import sequence_scores
from ppo_torchrl.rlhf.toy.reward import bradley_terry_loss, encode_pairs, train_reward_model
from ppo_torchrl.rlhf.toy.task import make_examples, preference_pairs
from specs import hand_rlhf
from specs.cases import floats
from specs.check import agree, differ
from specs.rig_rlhf import tiny_models


def module_loss_and_grads(chosen, rejected) -> tuple[float, np.ndarray, np.ndarray]:
    c = torch.tensor(np.asarray(chosen, dtype=np.float32), requires_grad=True)
    r = torch.tensor(np.asarray(rejected, dtype=np.float32), requires_grad=True)
    loss = bradley_terry_loss(c, r)
    loss.backward()
    return float(loss.detach()), c.grad.double().numpy(), r.grad.double().numpy()


def test_worked_example() -> None:
    loss, grad_c, grad_r = module_loss_and_grads([2.0, 0.0], [1.0, 0.0])
    agree("hand L", 0.503204, hand_rlhf.bradley_terry_loss([2.0, 0.0], [1.0, 0.0]))
    agree("L", 0.503204, loss)
    agree("dL/dr_c", [-0.134471, -0.25], grad_c)
    agree("dL/dr_r", [0.134471, 0.25], grad_r)
    agree("hand gradients", [-0.134471, -0.25], hand_rlhf.bradley_terry_grad([2.0, 0.0], [1.0, 0.0])[0])


def test_margins_far_out() -> None:
    """d = 100: L = log(1 + e^-100) = 3.7e-44, a float32 subnormal (the module returns
    3.9e-44: subnormals are spaced 1.4e-45), never negative or NaN; d = -100:
    L = 100 + log(1 + e^-100) = 100 (no overflow of e^100, which is inf in float32:
    logsigmoid is the stable form); a wrong-way pair costs its margin."""
    far = module_loss_and_grads([100.0], [0.0])[0]
    assert 0.0 < far < 1e-40, far
    agree("L at d = 100", math.exp(-100), far, rtol=0.1, atol=0)
    agree("L at d = -100", 100.0, module_loss_and_grads([0.0], [100.0])[0])
    agree("hand L at d = -100", 100.0, hand_rlhf.bradley_terry_loss([0.0], [100.0]))
    agree("dL/dr_c at d = -100", [-1.0], module_loss_and_grads([0.0], [100.0])[1])


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 8).flatmap(lambda n: st.tuples(*(st.lists(floats(-20, 20), min_size=n, max_size=n),) * 2))
)
def test_bradley_terry_property(scores: tuple[list[float], list[float]]) -> None:
    """Random score pairs: L and both gradients = hand; L(c, r) - L(r, c) = -mean(d);
    a common shift of both scores leaves L unchanged."""
    chosen, rejected = scores
    loss, grad_c, grad_r = module_loss_and_grads(chosen, rejected)
    hand_c, hand_r = hand_rlhf.bradley_terry_grad(chosen, rejected)
    agree("L", hand_rlhf.bradley_terry_loss(chosen, rejected), loss, atol=1e-5)
    agree("dL/dr_c", hand_c, grad_c, atol=1e-6)
    agree("dL/dr_r", hand_r, grad_r, atol=1e-6)
    d = np.subtract(chosen, rejected)
    agree("L(c, r) - L(r, c)", -d.mean(), loss - module_loss_and_grads(rejected, chosen)[0], atol=1e-4)
    shifted = module_loss_and_grads(np.add(chosen, 3.0), np.add(rejected, 3.0))[0]
    agree("L after a common shift", loss, shifted, atol=1e-4)


def test_train_reward_model_uses_chosen_minus_rejected() -> None:
    """One training step over all pairs (epochs 1, one batch): the logged ``rm_final_loss``
    (taken before the step) is the hand Bradley-Terry loss of the untrained reward model's
    scores of (chosen, rejected), read with `sequence_scores`; with chosen and rejected
    swapped it would be L(r, c) = L(c, r) + mean(d)."""
    tokenizer, _, reward_model = tiny_models(seed=3)
    pairs = preference_pairs(make_examples(12, random.Random(0), 2, 3), random.Random(1), 0.0)
    chosen, rejected = encode_pairs(tokenizer, pairs)  # each (ids, lengths)
    with torch.no_grad():  # a louder head: score gaps of order 1 instead of 1e-2
        reward_model.score.weight.mul_(50.0)
    reward_model.eval()
    with torch.no_grad():
        sc = sequence_scores(reward_model, *chosen).double().numpy()
        sr = sequence_scores(reward_model, *rejected).double().numpy()
    stats = train_reward_model(
        reward_model, tokenizer, pairs, epochs=1, batch_size=len(pairs), lr=1e-3, seed=0, log=lambda *_: None
    )
    assert stats["rm_steps"] == 1
    agree("rm_final_loss", hand_rlhf.bradley_terry_loss(sc, sr), stats["rm_final_loss"], atol=1e-6)
    assert abs(np.mean(sc - sr)) > 0.05, "want chosen and rejected scores apart"
    differ("the swapped loss", hand_rlhf.bradley_terry_loss(sr, sc), stats["rm_final_loss"], 0.05)
