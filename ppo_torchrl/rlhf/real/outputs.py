"""What a real-model RL run leaves: sample tables (MLflow's table layout), the held-out answers
before and after, the trained adapter, the history and the curves. A file the disk refuses
comes back as one line (the run reports it and exits 3); nothing here stops training.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ppo_torchrl.files import DiskWriteError
from ppo_torchrl.rlhf.common import plot_score_and_kl
from ppo_torchrl.rlhf.real.completions import Completions, Row
from ppo_torchrl.rlhf.real.prompts import prompt_text
from ppo_torchrl.tracking.tracker import Tracker

TABLE_ROWS = 16


def write(path: Path, action: Callable[[], object]) -> str | None:
    """Run ``action`` (it writes ``path``): None, or the line that says the disk refused it."""
    try:
        action()
    except Exception as err:  # OSError; safetensors and matplotlib wrap a full disk in their own
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0][:160]
        return f"cannot write {path} ({reason})"
    return None


def log_table(out_dir: Path, tracker: Tracker, name: str, columns: list[str], rows: list[list]) -> None:
    """A table in MLflow's table-artifact layout (columns + data), under ``tables/``."""
    path = out_dir / "tables" / f"{name}.json"
    table = json.dumps({"columns": columns, "data": rows}, indent=1)
    try:
        path.parent.mkdir(exist_ok=True)
        path.write_text(table)
    except OSError as err:
        print(f"warning: {DiskWriteError(path, err)}; table {name} not kept", file=sys.stderr)
        return
    tracker.log_artifact(path, "tables")


def sample_table(
    out_dir: Path, tracker: Tracker, update: int, done: Completions, rewards: torch.Tensor
) -> None:
    """Sample prompts, responses and their rewards of one update."""
    rows = [
        [prompt_text(r["prompt"]), text, round(float(v), 4)]
        for r, text, v in list(zip(done.rows, done.texts, rewards.tolist(), strict=True))[:TABLE_ROWS]
    ]
    log_table(out_dir, tracker, f"samples_update_{update:04d}", ["prompt", "response", "reward"], rows)


def before_after(held_out: list[Row], base: dict, after: dict) -> list[tuple[str, str, float, str, float]]:
    """Each held-out prompt with its base and trained answer and reward."""
    prompts = [prompt_text(r["prompt"]) for r in held_out]
    columns = (base["texts"], base["sample_rewards"], after["texts"], after["sample_rewards"])
    return list(zip(prompts, *columns, strict=True))


def held_out_table(out_dir: Path, tracker: Tracker, held_out: list[Row], base: dict, after: dict) -> None:
    """The held-out prompts' greedy answers and rewards, before and after RL."""
    columns = ["prompt", "base response", "base reward", "trained response", "trained reward"]
    rows = [[p, b, round(bv, 4), a, round(av, 4)] for p, b, bv, a, av in before_after(held_out, base, after)]
    log_table(out_dir, tracker, "held_out", columns, rows)


def save_outputs(
    stage: Any,
    tokenizer: Any,
    out_dir: Path,
    history: list[dict],
    summary: dict[str, Any],
    held_out: list[Row],
    base: dict[str, Any],
    after: dict[str, Any],
    tracker: Tracker,
) -> list[str | None]:
    """The trained adapter (and value head), sample answers, history and curves: written and
    logged; what the disk refuses comes back as lines and is not logged."""
    adapter = out_dir / "adapter"

    def save_adapter() -> None:
        stage.lm.save_pretrained(adapter)
        tokenizer.save_pretrained(adapter)
        if hasattr(stage, "value_head"):
            torch.save(stage.value_head.state_dict(), adapter / "value_head.pt")

    errors = [write(adapter, save_adapter)]
    if errors[0] is None:
        for path in sorted(adapter.iterdir()):
            tracker.log_artifact(path, "adapter")
    lines = [
        f"{p}\n  base ({bv:.3g}): {b!r}\n  trained ({av:.3g}): {a!r}"
        for p, b, bv, a, av in before_after(held_out, base, after)[:24]
    ]
    files = {
        "samples.txt": lambda path: path.write_text("\n".join(lines) + "\n"),
        "history.json": lambda path: path.write_text(json.dumps(history, indent=1) + "\n"),
        "curves.png": lambda path: plot(path, history, summary),
    }
    for name, action in files.items():
        path = out_dir / name
        errors.append(write(path, lambda path=path, action=action: action(path)))
        if errors[-1] is None:
            tracker.log_artifact(path)
    held_out_table(out_dir, tracker, held_out, base, after)
    return errors


def plot(path: Path, history: list[dict], summary: dict) -> None:
    base, final = summary["base_eval_reward"], summary["final_eval_reward"]
    plot_score_and_kl(
        path,
        [h["elapsed_seconds"] / 60 for h in history],
        "minutes of RL",
        ("reward, sampled (weighted total)", [h["reward"] for h in history]),
        [
            (base, f"base, held-out greedy {base:.3g}", ":"),
            (final, f"trained, held-out greedy {final:.3g}", "--"),
        ],
        ("KL to the reference (nats per response)", [h["kl_to_ref"] for h in history]),
    )
