"""Imports run one way (DESIGN.md): the core maths imports nothing else of fokker; samplers and objectives
import only the core; nothing below the trainer imports it, and nothing but the CLI imports the CLI. Read from
the source, lazy imports inside functions included (imports for type checking alone are not imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
CORE = {"errors", "files", "noise", "schedules", "processes", "denoiser", "flow", "grids", "divergence", "timesteps"}
OBJECTIVES = {"losses", "vlb"}
TRAINER_USERS = {"cli", "train", "distill.progressive", "distill.consistency"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC / "fokker").with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """The fokker modules `path` imports (without the 'fokker.' prefix), skipping `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {n.removeprefix("fokker.") for n in names if n.startswith("fokker.")}


MODULES = {module_name(p): imported(p) for p in sorted((SRC / "fokker").rglob("*.py"))}


def top(name: str) -> str:
    return name.split(".")[0]


def test_the_scan_sees_the_modules():
    assert {"processes", "samplers.ddpm", "losses.base", "cli.sample", "train.loop"} <= set(MODULES)
    assert "processes" in MODULES["samplers.ddpm"] and "train" in MODULES["cli.train"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if top(m) in CORE))
def test_the_core_imports_only_the_core(module):
    assert {top(n) for n in MODULES[module]} <= CORE, f"fokker.{module} imports above the core"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if top(m) in OBJECTIVES | {"samplers"}))
def test_samplers_and_objectives_import_only_the_core(module):
    own = top(module)
    assert {top(n) for n in MODULES[module]} <= CORE | {own} | ({"vlb"} if own == "losses" else set()), module


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_cli_imports_the_cli_and_only_runners_import_the_trainer(module):
    tops = {top(n) for n in MODULES[module]}
    if top(module) not in ("cli", "__main__"):
        assert "cli" not in tops, f"fokker.{module} imports the CLI"
    if top(module) not in TRAINER_USERS and module not in TRAINER_USERS:
        assert "train" not in tops, f"fokker.{module} imports the trainer"
