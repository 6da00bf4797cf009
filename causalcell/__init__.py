"""causalcell: causal modeling of genetic perturbation screens.

Models estimate P(X | T), the expression of all other genes given the observed
post-perturbation level T of the targeted genes, on the intervention graph of a
gene regulatory network; evaluation excludes the targeted genes.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# _progress first (the names are imported in this order): it imports tqdm.auto without
# tqdm's notebook warning, before any module that shows progress bars.
from causalcell import _progress, benchmark, data, datasets, errors, evaluate, graph, models  # noqa: F401
from causalcell._version import __version__
from causalcell.data import Interventions

__all__ = [
    "Interventions",
    "__version__",
    "benchmark",
    "data",
    "datasets",
    "errors",
    "evaluate",
    "graph",
    "models",
]

# Imported on first use (``cc.plot``): matplotlib is not loaded by ``import causalcell``.
_LAZY_MODULES = ("plot",)


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY_MODULES:
        module = importlib.import_module(f"causalcell.{name}")
        globals()[name] = module  # later lookups skip this function
        return module
    raise AttributeError(f"module 'causalcell' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_MODULES})
