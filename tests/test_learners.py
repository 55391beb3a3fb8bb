"""One trainer, two routes (run/learners.py): ``train --seed S`` on a torch-native env is the
N = 1 case of the many-seeds program; every other env or option learns on TorchRL's
Collector. Each test trains for real, for a few batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils._pytree import tree_leaves

from ppo_torchrl.cli.train import main as train_main
from ppo_torchrl.run.checkpoint import load_checkpoint, save_checkpoint
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.learners import CollectorLearner, ProgramLearner
from ppo_torchrl.run.seeds_trainer import SeedsTrainer
from ppo_torchrl.run.trainer import Trainer

SMALL = dict(num_envs=4, rollout_steps=32, minibatch_size=64, epochs=2, eval_every_frames=0, track=False)


@pytest.mark.parametrize(
    ("fields", "route"),
    [
        ({}, ProgramLearner),
        ({"env": "Acrobot-v1"}, ProgramLearner),
        ({"env_backend": "gymnasium"}, CollectorLearner),
        ({"normalize_observations": True}, CollectorLearner),
        ({"normalize_rewards": True}, CollectorLearner),
        ({"env": "Pendulum-v1"}, CollectorLearner),
    ],
)
def test_the_route_follows_the_env_and_options(fields: dict, route: type) -> None:
    trainer = Trainer(PPOConfig(**{**SMALL, **fields}))
    assert isinstance(trainer.learner, route)
    trainer.learner.shutdown()


@pytest.mark.parametrize("fields", [{}, {"env_backend": "gymnasium"}])
def test_anneal_frames_sets_the_decay_horizon_on_both_routes(fields: dict) -> None:
    """The learning rate decays over ``anneal_frames`` when given (CleanRL's Atari schedule
    stopped part-way), over the frame budget otherwise; each update runs at the rate for the
    frames before it."""
    for horizon, lrs in ((0, [1e-3, 5e-4]), (512, [1e-3, 7.5e-4])):
        trainer = Trainer(PPOConfig(**{**SMALL, **fields}, lr=1e-3, frames=256, anneal_frames=horizon))
        got = [trainer._learn()["lr"] for _ in range(2)]
        trainer.learner.shutdown()
        assert got == pytest.approx(lrs), horizon
    assert PPOConfig(**SMALL, lr=1e-3, anneal_lr=False, anneal_frames=512).lr_at(400) == 1e-3


def test_train_seed_s_is_seed_s_of_num_seeds() -> None:
    """Seed 6 trained alone and seed 6 as the second of three seeds in one program end two
    iterations with the same weights: one step function, seeds a batch dimension."""
    alone = Trainer(PPOConfig(**SMALL, seed=6, frames=256))
    for _ in range(2):
        alone._learn()
    many = SeedsTrainer(PPOConfig(**SMALL, seed=5, num_seeds=3, frames=256), torch.device("cpu"))
    for iteration in range(2):
        many.iterate(iteration)
    mine = alone.learner.program.learners.params
    theirs = many.program.learners.params
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a[0], b[1], rtol=0, atol=1e-6)
    assert not torch.allclose(theirs[0][0], theirs[0][1])  # (the seeds do differ)


def test_the_program_route_resumes_bit_exactly(tmp_path: Path) -> None:
    """Four updates straight, or two, a checkpoint on disk, a new trainer and two more: the
    same weights, Adam moments, envs and stream positions (the program's whole state)."""
    cfg = PPOConfig(**SMALL, frames=512, anneal_lr=False, checkpoint_dir=str(tmp_path))
    whole = Trainer(cfg)
    for _ in range(4):
        whole._learn()
    half = Trainer(cfg)
    for _ in range(2):
        half._learn()
    path = save_checkpoint(tmp_path / "last.pt", half.state_dict())
    state = load_checkpoint(path)
    assert state["program"] is not None and state["optimizer"]["state"][0]["exp_avg"].shape == (64, 4)
    resumed = Trainer(cfg, program=True)
    resumed.load_state_dict(state, path)
    for _ in range(2):
        resumed._learn()
    mine, theirs = (tree_leaves(t.learner.program.state_dict()) for t in (whole, resumed))
    assert len(mine) == len(theirs) > 0
    assert all(torch.equal(torch.as_tensor(x), torch.as_tensor(y)) for x, y in zip(mine, theirs, strict=True))
    # The ordinary actor the run evaluates and logs holds the program's weights.
    obs = torch.randn(5, 4)
    logits = resumed.actor.module[0](obs)
    torch.testing.assert_close(
        logits, resumed.learner.program.policy(mine[0], obs[None])[0], atol=1e-6, rtol=0
    )


def test_compile_off_the_program_route_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert train_main(["--no-track", "--compile", "--env-backend", "gymnasium"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compile" in err[0] and "Collector" in err[0], err
    assert not (tmp_path / "checkpoints").exists()
