"""Helpers shared by test modules (imported as ``from _helpers import ...``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from causalcell.data import Interventions


def interventions_from_mask(mask, levels=None, *, kind: str = "knockdown") -> Interventions:
    """Interventions whose targeted entries are the stored entries of ``mask``.

    Genes are named ``g0, g1, ...``; rows without a target are controls. With
    ``levels`` (one per stored entry, CSR order), those are the levels T.
    """
    mask = sp.csr_array(mask, dtype=bool)
    mask.sort_indices()
    n, p = mask.shape
    genes = [f"g{j}" for j in range(p)]
    counts = np.diff(mask.indptr)
    labels = [
        ",".join(genes[j] for j in mask.indices[mask.indptr[i] : mask.indptr[i + 1]]) or "control"
        for i in range(n)
    ]
    obs = pd.DataFrame(
        {
            "perturbation": labels,
            "is_control": counts == 0,
            "perturbation_type": np.where(counts == 0, "control", kind),
        },
        index=[f"s{i}" for i in range(n)],
    )
    iv = Interventions.from_obs(obs, genes, warn_unmeasured=False)
    return iv if levels is None else iv.with_levels(levels)
