"""The package's layout is its architecture: imports point one way, down, and never in a circle.

    entry points      train.py, evaluate.py, export.py, track.py, sweep/__main__.py,
                      rlhf/__main__.py, __init__.py
    sweep/ rlhf/      many runs as one experiment; token-level RLHF on the core
    cli/              the command lines: flags from config classes, the train command
    run/              one training run: trainer, evaluation, checkpoints, progress
    tracking/         MLflow, off the critical path: imports nothing above fields.py
    core/ envs/ models/   the PPO core, env adapters, networks: none imports another
    fields.py device.py files.py   validated parameter dataclasses; the device setting;
                      atomic writes and the disk's one-line errors

Every import statement is read from the source (those inside functions and TYPE_CHECKING
blocks too), so a lazy import cannot hide a wrong-way dependency. docs/architecture.md
states the same rules for readers.
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
    "ppo_torchrl.export",
    "ppo_torchrl.track",
    "ppo_torchrl.sweep.__main__",
    "ppo_torchrl.rlhf.__main__",
    "ppo_torchrl.rlhf.stages",  # the command of `python -m ppo_torchrl.rlhf sft | reward-model`
}
# What each layer may import from the package (besides itself).
ALLOWED = {
    "fields": set(),
    "files": set(),
    "lazy": set(),
    "device": {"fields"},
    "core": {"fields", "lazy"},
    "envs": {"fields"},
    "models": set(),
    "tracking": {"fields"},
    "run": {"fields", "files", "device", "core", "envs", "models", "tracking"},
    "cli": {"fields", "files", "device", "run", "tracking"},
    "rlhf": {"fields", "files", "device", "core", "tracking"},
    "sweep": {"fields", "files", "envs", "cli", "run", "tracking"},
}
# The training code itself: what a sweep runs as processes of its own, never imports.
TRAINERS = {
    "ppo_torchrl.run.trainer",
    "ppo_torchrl.run.seeds_trainer",
    "ppo_torchrl.run.seeds_run",
    "ppo_torchrl.run.collection",
    "ppo_torchrl.cli.train",
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


def reachable(module: str) -> set[str]:
    """Every package module ``module`` imports, directly or through others (lazy imports too)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_walk_sees_the_whole_package() -> None:
    assert {"ppo_torchrl.core.update", "ppo_torchrl.rlhf.toy.stage"} <= GRAPH.keys()
    assert "ppo_torchrl.core.update" in GRAPH["ppo_torchrl.run.trainer"]  # a real edge is found
    assert "ppo_torchrl.run.trainer" in reachable("ppo_torchrl.cli.train")  # and a path through others
    unruled = {m for m in GRAPH if m not in ENTRY_POINTS and layer(m) not in ALLOWED}
    assert not unruled, f"modules in a layer the rules do not name: {sorted(unruled)}"


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


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) == "tracking"))
def test_tracking_imports_nothing_above_fields(module: str) -> None:
    """Callers hand the tracker what to log: it knows no trainer, checkpoint or config."""
    above = {m for m in reachable(module) if layer(m) not in ("tracking", "fields")}
    assert not above, f"{module} reaches {sorted(above)}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) == "sweep"))
def test_sweeps_never_import_the_trainer(module: str) -> None:
    """A trial is a `python -m ppo_torchrl.train` process: the sweep plans and records it, and
    reaches none of the training code, not even through a lazy import."""
    wrong = reachable(module) & TRAINERS
    assert not wrong, f"{module} reaches {sorted(wrong)}"


def imports_the_train_module(path: Path) -> bool:
    """``import ppo_torchrl.train`` or ``from ppo_torchrl.train import ...`` (not ``from
    ppo_torchrl import train``, the function)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name == "ppo_torchrl.train" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "ppo_torchrl.train":
            return True
    return False


def test_nothing_imports_the_train_command_by_its_module_name() -> None:
    """Importing ``ppo_torchrl.train`` would rebind ``ppo_torchrl.train``, the function, to that
    module; the command's code is ``ppo_torchrl.cli.train``, and the module is only ever run."""
    root = PACKAGE.parent
    paths = [*PACKAGE.rglob("*.py"), *(root / "tests").glob("*.py"), *(root / "specs").glob("*.py")]
    paths += [*(root / "experiments").glob("*.py")]
    assert [p.name for p in paths if imports_the_train_module(p)] == []
