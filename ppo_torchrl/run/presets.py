"""Per-env presets: tuned PPOConfig fields shipped with the package, one YAML file per env id.

A run whose env has a preset takes it automatically, underneath everything the user
says: defaults < preset < ``--config`` file < flags. ``--preset none`` turns it off;
``--preset FILE.yaml`` or ``--preset ENV_ID`` takes another. Each file's header records
where its values come from and what they measured here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ppo_torchrl.fields import ConfigError, load_config_file
from ppo_torchrl.run.config import PPOConfig

PRESETS = Path(__file__).resolve().parents[1] / "presets"


def preset_file(env_id: str) -> Path:
    """Where the preset of ``env_id`` lives (``ALE/Pong-v5`` -> ``ALE_Pong-v5.yaml``)."""
    return PRESETS / (env_id.rpartition(":")[2].replace("/", "_") + ".yaml")


def available() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def resolve_preset(choice: str, env_id: str) -> tuple[str | None, dict[str, Any]]:
    """The preset's name and its fields: ``auto`` (the env's own, if any), ``none``, an env
    id that has one, or a YAML file. ConfigError naming what is available otherwise."""
    if choice == "none":
        return None, {}
    if choice == "auto":
        path = preset_file(env_id)
        return (path.stem, _read(path)) if path.is_file() else (None, {})
    path = Path(choice)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"preset: file not found: {path}")
        return str(path), _read(path)
    path = preset_file(choice)
    if not path.is_file():
        raise ConfigError(f"preset: no preset named {choice!r} (available: {', '.join(available())}, none)")
    return path.stem, _read(path)


def _read(path: Path) -> dict[str, Any]:
    values = load_config_file(path, PPOConfig)
    values.pop("env", None)  # a preset tunes an env; which env runs is the user's choice
    return values
