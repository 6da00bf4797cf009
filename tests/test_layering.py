"""Modules depend downwards only: data <- graph <- models <- evaluate <- plot / cli.

`evaluate` never imports `models`: it scores any predictor's output, ours or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "causalcell"
# package -> packages it must not import
FORBIDDEN = {
    "data": {"graph", "models", "evaluate", "plot", "cli", "demo", "datasets"},
    "graph": {"models", "evaluate", "plot", "cli", "demo"},
    "models": {"evaluate", "plot", "cli", "demo"},
    "evaluate": {"models", "plot", "cli", "demo"},
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
