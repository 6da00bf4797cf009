"""Modules depend downwards only: data <- graph <- models, evaluate <- benchmark <- plot / cli.

`evaluate` never imports `models`: it scores any predictor's output, ours or not.
`benchmark` is the top layer that fits models and scores them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "causalcell"
# package -> packages it must not import
FORBIDDEN = {
    "data": {"graph", "models", "evaluate", "plot", "cli", "demo", "datasets", "benchmark"},
    "graph": {"models", "evaluate", "plot", "cli", "demo", "benchmark"},
    "models": {"evaluate", "plot", "cli", "demo", "benchmark"},
    "evaluate": {"models", "plot", "cli", "demo", "benchmark"},
    "datasets": {"models", "evaluate", "plot", "cli", "demo", "benchmark"},
    "benchmark": {"plot", "cli", "demo"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {n.split(".")[1] for n in names if n.startswith("causalcell.") and n.count(".") >= 1}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    files = sorted((PACKAGE / package).glob("*.py"))
    assert files
    for path in files:
        bad = imported_modules(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {sorted(bad)}"


def test_benchmark_imports_no_private_names():
    """The top layer uses the public API of the layers below (and of its own
    private modules): no ``_name`` crosses a module line."""
    for path in sorted((PACKAGE / "benchmark").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("causalcell"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
