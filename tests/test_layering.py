"""Modules depend downwards only, and no module imports itself back.

Layers, bottom to top (a module may import its own layer and the ones below):

- ``errors``, ``_version``, ``_validation``, ``_blas``: no other causalcell module;
- ``data``: the contract, Interventions, the design-matrix engine, statistics;
- ``graph`` and ``datasets`` (on ``data``); ``evaluate`` (on ``data``; never
  ``models``: it scores any predictor's output, ours or not);
- ``models`` (on ``data`` and ``graph``);
- ``benchmark`` (on ``models`` and ``evaluate``: cross-validation and
  comparisons over perturbations), when it exists;
- ``plot``, then ``demo``, then ``cli``.

Every import counts, also those inside functions (a lazy import hides a cycle
at import time but not from a reader).
"""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).parent.parent / "causalcell"
BOTTOM = {"errors", "_version", "_validation", "_blas"}
ALL = {"data", "graph", "datasets", "models", "evaluate", "benchmark", "plot", "demo", "cli"}
# layer -> the layers it must not import
FORBIDDEN = {
    **{name: ALL for name in BOTTOM},
    "data": ALL - {"data"},
    "graph": ALL - {"data", "graph"},
    "datasets": ALL - {"data", "datasets"},
    "evaluate": ALL - {"data", "evaluate"},
    "models": ALL - {"data", "graph", "models"},
    "benchmark": {"plot", "demo", "cli"},
    "plot": {"benchmark", "demo", "cli"},
    "demo": {"cli"},
    "cli": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The causalcell modules a file imports (``from pkg import submodule`` included)."""
    tree = ast.parse(path.read_text())
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "causalcell" or n.startswith("causalcell.")}


def all_modules() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p): p for p in files}
    return {name: {m for m in imported_modules(p) if m in modules} for name, p in modules.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "causalcell"


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_no_upward_imports(name):
    graph = all_modules()
    modules = [m for m in graph if layer(m) == name]
    if name != "benchmark":  # the benchmark layer is planned; checked once it exists
        assert modules, f"no module in layer {name!r}"
    for module in modules:
        bad = {layer(m) for m in graph[module]} & FORBIDDEN[name]
        assert not bad, f"{module} imports {sorted(bad)}"


def test_no_import_cycles():
    """Within a package too: e.g. data.contract and data._interventions do not import
    each other (one of them would see the other half-initialized)."""
    graph = nx.DiGraph()
    for module, imports in all_modules().items():
        graph.add_node(module)
        # A submodule naming its own package (``from causalcell.data import X``) is
        # an edge to the package __init__, which imports the submodule: a cycle.
        graph.add_edges_from((module, m) for m in imports if m != module)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_no_private_name_crosses_a_module_line():
    """Every module uses the names another module exports: no ``_name`` is imported
    from another module (a private *module* may be imported: it is not a name inside
    one). A helper two modules share gets a public-within-package name in one home."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("causalcell"):
                private = [
                    a.name for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                    and f"{node.module}.{a.name}" not in modules
                ]
                assert not private, f"{path} imports {private} from {node.module}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_module_is_shadowed_by_a_name(path):
    """``import causalcell.evaluate.x`` gives a module, and the package attribute of
    the same name is that module (not a function re-exported over it)."""
    name = module_name(path)
    module = importlib.import_module(name)
    assert isinstance(module, types.ModuleType)
    package, _, attribute = name.rpartition(".")
    if package:
        assert getattr(importlib.import_module(package), attribute) is module, (
            f"{package}.{attribute} is not the module {name}"
        )
