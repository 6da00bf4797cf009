"""causalcell: causal modeling of genetic perturbation screens.

Models estimate P(X | T), the expression of all other genes given the observed
post-perturbation level T of the targeted genes, on the intervention graph of a
gene regulatory network; evaluation excludes the targeted genes.
"""

from __future__ import annotations

from causalcell import _lazy
from causalcell._version import __version__

# Subpackages load on first use (``cc.data``, ``cc.plot``): ``import causalcell`` imports
# no numpy, pandas, anndata, scipy, scikit-learn or matplotlib, and the CLI parses its
# arguments before anything heavy loads.
__getattr__, __dir__, _public = _lazy.attach(
    __name__,
    {
        "Interventions": ".data",
        "benchmark": "",
        "data": "",
        "datasets": "",
        "errors": "",
        "evaluate": "",
        "graph": "",
        "models": "",
        "plot": "",
    },
    globals(),
)
__all__ = [name for name in _public if name != "plot"] + ["__version__"]
