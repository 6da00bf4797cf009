"""causalcell: causal modeling of genetic perturbation screens.

Models estimate P(X | T), the expression of all other genes given the observed
post-perturbation level T of the targeted genes, on the intervention graph of a
gene regulatory network; evaluation excludes the targeted genes.
"""

from causalcell import benchmark, data, datasets, errors, evaluate, graph, models
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
