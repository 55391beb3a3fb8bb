"""PPOConfig: defaults, coercion, validation and YAML config files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ppo_torchrl.fields import ConfigError, load_config_file
from ppo_torchrl.run.config import PPOConfig

REQUIRED_FIELDS = [
    "env",
    "seed",
    "num_envs",
    "frames",
    "episodes",
    "lr",
    "gamma",
    "lam",
    "clip_epsilon",
    "entropy_coef",
    "critic_coef",
    "normalize_advantage",
    "epochs",
    "minibatch_size",
    "max_grad_norm",
]


def test_required_fields_exist_with_help_text() -> None:
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(PPOConfig)}
    for name in REQUIRED_FIELDS:
        assert name in fields, name
    for f in fields.values():
        assert f.metadata.get("help"), f"{f.name} has no help text"


def test_defaults_are_valid_and_round_trip() -> None:
    cfg = PPOConfig()
    assert PPOConfig(**cfg.to_dict()) == cfg
    assert cfg.frames_per_batch == cfg.num_envs * cfg.rollout_steps


def test_numbers_from_strings_are_coerced() -> None:
    cfg = PPOConfig(lr="3e-4", frames="1e5", seed="7", hidden_sizes=["32", "16"])
    assert cfg.lr == pytest.approx(3e-4)
    assert cfg.frames == 100_000 and isinstance(cfg.frames, int)
    assert cfg.seed == 7
    assert cfg.hidden_sizes == (32, 16)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("lr", -1e-3, "lr: must be > 0"),
        ("lr", 0.0, "lr: must be > 0"),
        ("lr", math.inf, "lr: must be a finite number"),
        ("lr", math.nan, "lr: must be a finite number"),
        ("lr", "abc", "lr: must be a number"),
        ("clip_epsilon", 0.0, "clip_epsilon: must be in (0.0, 1.0)"),
        ("clip_epsilon", 1.0, "clip_epsilon: must be in (0.0, 1.0)"),
        ("clip_epsilon", 1.5, "clip_epsilon: must be in (0.0, 1.0)"),
        ("gamma", 1.01, "gamma: must be in [0.0, 1.0]"),
        ("gamma", -0.1, "gamma: must be in [0.0, 1.0]"),
        ("lam", 2.0, "lam: must be in [0.0, 1.0]"),
        ("lam", math.nan, "lam: must be a finite number"),
        ("num_envs", 0, "num_envs: must be >= 1"),
        ("frames", -5, "frames: must be >= 1"),
        ("episodes", -1, "episodes: must be >= 0"),
        ("epochs", 2.5, "epochs: must be a whole number"),
        ("seed", "x1", "seed: must be a whole number"),
        ("entropy_coef", -0.1, "entropy_coef: must be >= 0"),
        ("critic_loss", "l3", "critic_loss: must be one of"),
        ("normalize_advantage", "yes", "normalize_advantage: must be true or false"),
        ("hidden_sizes", [64, 0], "hidden_sizes: layer widths must be >= 1"),
        ("env", "", "env: must be a non-empty string"),
    ],
)
def test_bad_values_name_the_field_and_the_rule(field: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        PPOConfig(**{field: value})
    message = str(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_minibatch_larger_than_batch_is_rejected() -> None:
    with pytest.raises(ConfigError, match="minibatch_size: must be at most"):
        PPOConfig(num_envs=2, rollout_steps=8, minibatch_size=64)


def test_config_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("env: Acrobot-v1\nclip-epsilon: 0.1\nhidden_sizes: [32, 32]\n")
    assert load_config_file(path, PPOConfig) == {
        "env": "Acrobot-v1",
        "clip_epsilon": 0.1,
        "hidden_sizes": [32, 32],
    }


def test_config_path_that_is_a_folder_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config: cannot read"):
        load_config_file(tmp_path, PPOConfig)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "config: file not found"),
        ("lr: [1, 2\n", "is not valid YAML"),
        ("- a\n- b\n", "must hold a mapping"),
        ("learning_rate: 0.1\n", "config: unknown key 'learning_rate'"),
        (b"\xff\xfe\x00bad", "config: cannot read"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str | bytes | None, expected: str) -> None:
    path = tmp_path / "c.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[")):
        load_config_file(path, PPOConfig)
