"""Item 12 — token-level GAE with masking: make_advantage(cfg.params(GAEParams), critic) on
the [B, T] layout of `token_steps`, rewards from `shape_rewards`, then `PPOUpdate`.

Step t of a completion of n real tokens is a transition from state sequence[:start + t]
(V_t = V(that state)) by the token at position start + t. `RLHFConfig` has gamma = 1:

    delta_t = r_t + V_{t+1} - V_t           t < n - 1
    delta_t = r_t - V_t                     t = n - 1: EOS (or the length limit) is terminal
    A_t     = sum_{k=0}^{n-1-t} lam^k delta_{t+k},     value_target = A + V

Padding (t >= n, ``("collector", "mask")`` False) is never read by the hand side. The
module runs GAE over the whole [B, T] grid, where every pad is a terminated one-step episode
and ``done`` at the last real token cuts the recursion, so nothing finite at a pad reaches
a real token; `PPOUpdate` then drops the pad steps before shuffling and the loss.

Worked example, lam = 0.5 (rewards of item 11's example):
    row 0, n = 3: r = [-0.02, 0.01, 1.47], V = [0.5, 1.0, 2.0] (V after EOS = 7: unused)
        delta = [-0.02 + 1 - 0.5, 0.01 + 2 - 1, 1.47 - 2] = [0.48, 1.01, -0.53]
        A = [0.48 + 0.5 * 0.745, 1.01 + 0.5 * (-0.53), -0.53] = [0.8525, 0.745, -0.53]
        value_target = [1.3525, 1.745, 1.47]
    row 1, n = 4: r = [0, 0.05, -0.05, -1.03], V = [1, 0, -1, 0.5]
        delta = [-1, -0.95, 1.45, -1.53],  A = [-1.30375, -0.6075, 0.685, -1.53]
    lam = 1: A_t = (rewards to go) - V_t: row 0 [1.46, 1.48, 1.47] - V = [0.96, 0.48, -0.53].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ppo_torchrl.core.params import GAEParams, LossParams
from specs import hand_rlhf
from specs.cases import floats
from specs.cases_rlhf import LENGTHS, LOGP, REF, SCORES, STARTS, Completions, completions
from specs.check import agree, differ
from specs.rig_rlhf import f32, layout, ppo_update, rlhf_config, sequences, shaped, step_actor, step_critic
from specs.rig_rlhf import token_gae as rlhf_gae

NAN = np.nan
# V by (row, position); row 0 writes positions 2, 3, 4 (EOS), row 1 positions 1..4. NaN
# marks a position no step reads (the critic's table holds 123 there).
VALUES = [
    [NAN, NAN, 0.5, 1.0, 2.0, 7.0, 9.0],
    [NAN, 1.0, 0.0, -1.0, 0.5, 4.0, NAN],
]
A_HALF = [[0.8525, 0.745, -0.53], [-1.30375, -0.6075, 0.685, -1.53]]


def module_gae(lam: float, batch: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """advantage and value_target [B, T] from the RLHF stage's GAE (rig_rlhf.token_gae)."""
    rlhf_gae(rlhf_config(lam=lam), step_critic(np.nan_to_num(values, nan=123.0)))(batch)
    return batch["advantage"][..., 0].double().numpy(), batch["value_target"][..., 0].double().numpy()


def example_batch():
    return shaped(STARTS, LENGTHS, LOGP, REF, SCORES, 0.1, "k1")[0]


def real(x: np.ndarray, lengths) -> list[np.ndarray]:
    return [x[b, :n] for b, n in enumerate(lengths)]


def row_values(values: Any, starts, lengths) -> np.ndarray:
    """V_t = values[b, start_b + t] on the [B, T] grid (NaN where padding)."""
    v = np.asarray(values, dtype=np.float64)
    T = max(lengths)
    out = np.full((len(starts), T), np.nan)
    for b, (s, n) in enumerate(zip(starts, lengths, strict=True)):
        out[b, :n] = v[b, s : s + n]
    return out


def test_rlhf_params_are_gamma_one() -> None:
    """Token-level RL discounts nothing by default: gamma = 1; gamma, lam and the rest come
    from RLHFConfig; PPO normalises advantages per minibatch, GRPO does not (its own are
    already normalised)."""
    cfg = rlhf_config(lam=0.7, algo="ppo")
    gae, loss = cfg.params(GAEParams), cfg.params(LossParams)
    assert (gae.gamma, gae.lam, loss.normalize_advantage) == (1.0, 0.7, True)
    assert rlhf_config(gamma=0.9).params(GAEParams).gamma == 0.9
    assert (
        rlhf_config(algo="grpo", group_size=2, prompts_per_update=4).params(LossParams).normalize_advantage
        is False
    )


def test_token_steps_layout() -> None:
    """starts [2, 1], lengths [3, 4], T = 4: positions [[2, 3, 4, 5], [1, 2, 3, 4]],
    valid [[1, 1, 1, 0], [1, 1, 1, 1]], terminated = done [[0, 0, 1, 1], [0, 0, 0, 1]] (the
    EOS and the pad after it; a row that hit the limit ends on its last token too),
    truncated never, action = sequence[b, position], next position = position + 1."""
    seq = sequences(STARTS, LENGTHS, 4)
    batch = layout(STARTS, LENGTHS)
    hand = hand_rlhf.token_layout(STARTS, LENGTHS, 4)
    assert hand["position"].tolist() == [[2, 3, 4, 5], [1, 2, 3, 4]]
    assert hand["terminated"].astype(int).tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]
    check_layout(batch, hand, seq)


def check_layout(batch: Any, hand: dict[str, np.ndarray], seq: np.ndarray) -> None:
    assert batch["position"].tolist() == hand["position"].tolist()
    assert batch["next", "position"].tolist() == hand["next_position"].tolist()
    assert batch["collector", "mask"].tolist() == hand["valid"].tolist()
    assert batch["next", "terminated"][..., 0].tolist() == hand["terminated"].tolist()
    assert batch["next", "done"][..., 0].tolist() == hand["terminated"].tolist()
    assert not batch["next", "truncated"].any()
    assert batch["action"].tolist() == np.take_along_axis(seq, hand["position"], 1).tolist()
    assert batch["seq_id"].tolist() == [[b] * batch.shape[1] for b in range(batch.shape[0])]


@settings(max_examples=30, deadline=None)
@given(completions())
def test_token_steps_layout_property(case: Completions) -> None:
    seq = sequences(case.starts, case.lengths, case.steps)
    check_layout(
        layout(case.starts, case.lengths), hand_rlhf.token_layout(case.starts, case.lengths, case.steps), seq
    )


def test_worked_example() -> None:
    """The docstring's numbers, lam = 0.5 and lam = 1 (lam = 0: A = delta)."""
    v = row_values(VALUES, STARTS, LENGTHS)
    rewards = hand_rlhf.shaped_rewards(LOGP, REF, LENGTHS, SCORES, 0.1, "k1")[0]
    hand_a, hand_target = hand_rlhf.token_gae(rewards, v, LENGTHS, 0.5)
    for b in range(2):
        agree(f"hand A, row {b}", A_HALF[b], hand_a[b])
    agree("hand value_target, row 0", [1.3525, 1.745, 1.47], hand_target[0])

    a, target = module_gae(0.5, example_batch(), VALUES)
    for b in range(2):
        agree(f"A (lam = 0.5), row {b}", A_HALF[b], real(a, LENGTHS)[b])
        agree(f"value_target (lam = 0.5), row {b}", hand_target[b], real(target, LENGTHS)[b])

    a1, _ = module_gae(1.0, example_batch(), VALUES)
    agree("A (lam = 1), row 0", [0.96, 0.48, -0.53], real(a1, LENGTHS)[0])
    agree("A (lam = 1), row 1", [-2.03, -1.03, -0.08, -1.53], real(a1, LENGTHS)[1])
    for b in range(2):
        n = LENGTHS[b]
        agree(
            f"lam = 1 = rewards to go - V, row {b}",
            hand_rlhf.rewards_to_go_minus_value(rewards[b, :n], v[b, :n]),
            a1[b, :n],
        )

    a0, _ = module_gae(0.0, example_batch(), VALUES)
    agree("A (lam = 0) = delta, row 0", [0.48, 1.01, -0.53], real(a0, LENGTHS)[0])

    # What the module leaves at row 0's pad (dropped before the loss): a terminated
    # one-step episode of its own, A = r - V(pad state) = 0 - 7.
    agree("the pad's own A", -7.0, a[0, 3])


def test_eos_does_not_bootstrap() -> None:
    """V of the state after the last real token (7 and 4 above) never enters: set it to
    +-1000 and nothing real changes. Marking row 0's EOS not terminated (done still True)
    would bootstrap: delta_2 = 1.47 + V(after EOS) - 2 = 1.47 + 7 - 2 = 6.47."""
    a, _ = module_gae(0.5, example_batch(), VALUES)
    for far in (1000.0, -1000.0):
        values = np.array(VALUES)
        values[0, 5], values[1, 5] = far, -far
        moved, _ = module_gae(0.5, example_batch(), values)
        for b in range(2):
            agree(f"A with V(after EOS) = {far}, row {b}", real(a, LENGTHS)[b], real(moved, LENGTHS)[b])

    batch = example_batch()
    batch["next", "terminated"][0, 2] = False
    bootstrapped, _ = module_gae(0.5, batch, VALUES)
    agree("EOS not terminated: A_2 = delta_2", 6.47, bootstrapped[0, 2])
    differ("terminated vs not at EOS", a[0, :3], bootstrapped[0, :3], 1.0)


def test_padding_has_no_influence() -> None:
    """Pad rewards 1e4 and pad values -1e4 (finite junk): real advantages unchanged."""
    a, target = module_gae(0.5, example_batch(), VALUES)
    batch, values = example_batch(), np.array(VALUES)
    batch["next", "reward"][0, 3] = 1e4
    values[0, 5:] = -1e4
    junk_a, junk_target = module_gae(0.5, batch, values)
    for b in range(2):
        agree(f"A, row {b}", real(a, LENGTHS)[b], real(junk_a, LENGTHS)[b])
        agree(f"value_target, row {b}", real(target, LENGTHS)[b], real(junk_target, LENGTHS)[b])


def test_nonfinite_padding_does_reach_the_last_token() -> None:
    """The guarantee above is for finite pads. TorchRL's GAE masks by multiplying,
    A_t = delta_t + lam * (1 - done_t) * A_{t+1}, and 0 * NaN = NaN: a NaN reward at the pad
    after EOS makes the EOS token's advantage NaN. `shape_rewards` writes 0 at pads
    (`torch.where`) and the critic's values are finite, so the pipeline never feeds one."""
    batch = example_batch()
    batch["next", "reward"][0, 3] = float("nan")
    a, _ = module_gae(0.5, batch, VALUES)
    assert np.isnan(a[0, :3]).all()
    agree("row 1 (no pad) unaffected", A_HALF[1], a[1])


@settings(max_examples=30, deadline=None)
@given(completions(), floats(0, 1), st.sampled_from(["k1", "k2", "k3"]), floats(0, 1))
def test_token_gae_property(case: Completions, lam: float, kind: str, beta: float) -> None:
    """Random completions, lam, estimator, beta and value table: module = hand on every real
    token, and junk rewards and values on the padding (and after EOS) change nothing real."""
    batch, _ = shaped(case.starts, case.lengths, case.logp, case.ref, case.scores, beta, kind)
    rewards = hand_rlhf.shaped_rewards(case.logp, case.ref, case.lengths, case.scores, beta, kind)[0]
    hand_a, hand_target = hand_rlhf.token_gae(
        rewards, row_values(case.values, case.starts, case.lengths), case.lengths, lam
    )
    a, target = module_gae(lam, batch, case.values)
    for b, n in enumerate(case.lengths):
        agree(f"A, row {b}", hand_a[b], a[b, :n], atol=1e-4)
        agree(f"value_target, row {b}", hand_target[b], target[b, :n], atol=1e-4)

    junk, values = batch.clone(), case.values.copy()
    junk["next", "reward"] = torch.where(
        torch.as_tensor(case.pads)[..., None], f32(case.garbage)[..., None], junk["next", "reward"]
    )
    for b, (s, n) in enumerate(zip(case.starts, case.lengths, strict=True)):
        values[b, s + n :] = case.garbage[b, 0]
    junk_a, junk_target = module_gae(lam, junk, values)
    for b, n in enumerate(case.lengths):
        agree(f"A with junk pads, row {b}", a[b, :n], junk_a[b, :n])
        agree(f"value_target with junk pads, row {b}", target[b, :n], junk_target[b, :n])


# --- PPOUpdate drops the padded steps ---------------------------------------------------------------


def run_update(case: Completions, junk: bool, mask_pads: bool = True, seed: int = 0, **fields: Any):
    """PPOUpdate(GAE + ClipPPOLoss) as RLStage wires it, on the token batch of ``case``; with
    ``junk`` the padded steps carry reward 1e4, V -1e4, log pi_old -30 and another action."""
    B, W = len(case.lengths), case.values.shape[1]
    logits = np.random.default_rng(seed).normal(size=(B, W, 5))
    values = case.values.copy()
    batch, _ = shaped(case.starts, case.lengths, case.logp, case.ref, case.scores, 0.1, "k1")
    with torch.no_grad():  # log pi_old: the actor's own log-probs, nudged so ratios move off 1
        batch["action_log_prob"] = step_actor(logits).get_dist(batch).log_prob(batch["action"]) - 0.1 * f32(
            case.logp
        )
    pads = torch.as_tensor(case.pads)
    if junk:
        batch["next", "reward"][pads] = 1e4
        batch["action_log_prob"][pads] = -30.0
        batch["action"][pads] = 3
        for b, (s, n) in enumerate(zip(case.starts, case.lengths, strict=True)):
            values[b, s + n :] = -1e4
    if not mask_pads:
        batch["collector", "mask"] = torch.ones_like(pads)
    actor, critic = step_actor(logits), step_critic(values)
    fields = {"algo": "ppo", "lam": 0.9, "epochs": 2, "rl_lr": 0.05, "entropy_coef": 0.01, **fields}
    cfg = rlhf_config(max_new_tokens=max(case.steps, 2), **fields)
    metrics = ppo_update(cfg, actor, critic, seed=seed)(batch)
    real_values = np.concatenate(
        [
            critic.module.table.detach().numpy()[b, s : s + n, 0]
            for b, (s, n) in enumerate(zip(case.starts, case.lengths, strict=True))
        ]
    )
    return metrics, actor.module[0].module.table.detach().numpy(), real_values, batch


def example_case() -> Completions:
    B, T = 2, 4
    lengths = np.array([2, 4])
    rng = np.random.default_rng(1)
    return Completions(
        starts=np.array(STARTS),
        lengths=lengths,
        logp=np.array(LOGP),
        ref=np.array(REF),
        scores=np.array(SCORES),
        values=rng.normal(size=(B, max(STARTS) + T + 1)),
        garbage=np.zeros((B, T)),
    )


def test_ppo_update_drops_padding() -> None:
    """Rows of 2 and 4 tokens (2 pads), epochs 2, minibatch 3, PPO's normalised advantages.
    With junk on the pads (reward 1e4, V -1e4, log pi_old -30, a different action) the update
    is the same: same metrics, same actor table, same critic values at the real steps. The
    logged advantage mean and std are those of the hand GAE over the 6 real tokens.
    Unmask the pads and the junk takes over (the control)."""
    case = example_case()
    clean, actor_clean, critic_clean, batch = run_update(case, junk=False, minibatch_size=3)
    junk, actor_junk, critic_junk, _ = run_update(case, junk=True, minibatch_size=3)
    assert clean.keys() == junk.keys()
    for key in clean:
        agree(key, clean[key], junk[key], rtol=1e-6, atol=1e-7)
    agree("actor after the update", actor_clean, actor_junk, rtol=0, atol=0)
    agree("critic at real steps after the update", critic_clean, critic_junk, rtol=0, atol=0)

    rewards = hand_rlhf.shaped_rewards(case.logp, case.ref, case.lengths, case.scores, 0.1, "k1")[0]
    hand_a, _ = hand_rlhf.token_gae(
        rewards, row_values(case.values, case.starts, case.lengths), case.lengths, 0.9
    )
    flat = np.concatenate(hand_a)
    agree("advantage_mean over real tokens", flat.mean(), clean["advantage_mean"], atol=1e-5)
    agree("advantage_std over real tokens", flat.std(ddof=1), clean["advantage_std"], atol=1e-5)

    # The same update from a flat batch of only the 6 real steps, advantages precomputed.
    steps = batch.reshape(-1)[batch["collector", "mask"].reshape(-1)]
    B, W = len(case.lengths), case.values.shape[1]
    actor = step_actor(np.random.default_rng(0).normal(size=(B, W, 5)))
    critic = step_critic(case.values)
    cfg = rlhf_config(
        algo="ppo", lam=0.9, epochs=2, rl_lr=0.05, entropy_coef=0.01, minibatch_size=3, max_new_tokens=4
    )
    flat_metrics = ppo_update(cfg, actor, critic, gae=False)(steps)
    for key in clean:
        agree(f"{key} (flat, no pads)", clean[key], flat_metrics[key], rtol=1e-6, atol=1e-7)
    agree("actor (flat, no pads)", actor_clean, actor.module[0].module.table.detach().numpy(), rtol=0, atol=0)

    unmasked, *_ = run_update(case, junk=True, mask_pads=False, minibatch_size=3)
    differ("advantage_mean with pads unmasked", clean["advantage_mean"], unmasked["advantage_mean"], 100.0)


@settings(max_examples=10, deadline=None)
@given(completions(max_rows=3, max_steps=5), st.integers(0, 2**16))
def test_ppo_update_drops_padding_property(case: Completions, seed: int) -> None:
    """Random completions, tables and shuffles: junk on the padded steps never changes the update."""
    assume(case.lengths.sum() >= 2)  # one real step: advantage_std (n - 1) would be NaN
    clean, actor_clean, critic_clean, _ = run_update(case, junk=False, seed=seed, minibatch_size=2, epochs=1)
    junk, actor_junk, critic_junk, _ = run_update(case, junk=True, seed=seed, minibatch_size=2, epochs=1)
    for key in clean:
        agree(key, clean[key], junk[key], rtol=1e-6, atol=1e-7)
    agree("actor", actor_clean, actor_junk, rtol=0, atol=0)
    agree("critic at real steps", critic_clean, critic_junk, rtol=0, atol=0)
