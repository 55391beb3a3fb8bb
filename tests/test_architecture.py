"""The package's layout is its architecture: imports point one way, down, and never in a circle.

    entry points   train.py, evaluate.py, cli.py, rlhf/__main__.py, __init__.py
    rlhf/          token-level RLHF on the core (uses run/'s tracking and device helpers)
    run/           trainer, evaluation, checkpoints, tracking, progress, explain
    core/ envs/ models/   the PPO core, env adapters, networks: none imports another
    fields.py      validated parameter dataclasses: imports nothing from the package

Every import statement is read from the source (those inside functions and TYPE_CHECKING
blocks too), so a lazy import cannot hide a wrong-way dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ppo_torchrl"
ENTRY_POINTS = {
    "ppo_torchrl",
    "ppo_torchrl.train",
    "ppo_torchrl.evaluate",
    "ppo_torchrl.sweep",
    "ppo_torchrl.export",
    "ppo_torchrl.track",
    "ppo_torchrl.cli",
    "ppo_torchrl.rlhf.__main__",
}
# What each layer may import from the package (besides itself).
ALLOWED = {
    "fields": set(),
    "core": {"fields"},
    "envs": {"fields"},
    "models": set(),
    "run": {"fields", "core", "envs", "models"},
    "rlhf": {"fields", "core", "run"},
}
# Third-party packages the core must not know: it is given tensors and modules, nothing else.
NOT_IN_CORE = ("gymnasium", "mlflow", "transformers", "matplotlib", "numpy", "yaml")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names (absolute, as the project writes them)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
            # `from ppo_torchrl.core import update` imports the submodule ppo_torchrl.core.update
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in imports_of(p) if i in modules and i != m} for m, p in modules.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1].removesuffix(".py") if len(parts) > 1 else "entry"


GRAPH = package_graph()


def test_the_walk_sees_the_whole_package() -> None:
    assert {"ppo_torchrl.core.update", "ppo_torchrl.run.trainer", "ppo_torchrl.rlhf.ppo"} <= GRAPH.keys()
    assert "ppo_torchrl.core.update" in GRAPH["ppo_torchrl.run.trainer"]  # a real edge is found


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m not in ENTRY_POINTS))
def test_imports_point_down(module: str) -> None:
    own = layer(module)
    wrong = {i for i in GRAPH[module] if layer(i) != own and layer(i) not in ALLOWED[own]}
    assert not wrong, f"{module} ({own}) imports {sorted(wrong)}; {own} may import {sorted(ALLOWED[own])}"


def test_no_import_cycles() -> None:
    """Depth-first search over the module graph; a back edge is a cycle."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycle = [*path[path.index(target) :], target] if target in path else [module, target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_the_core_knows_no_env_tracker_or_language_model(path: Path) -> None:
    foreign = {i for i in imports_of(path) if i.split(".")[0] in NOT_IN_CORE}
    assert not foreign, f"{path.name} imports {sorted(foreign)}"
