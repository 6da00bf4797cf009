"""Prediction requests for held-out cells: what was done to them, and at what level T."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell.data import LEVEL, Interventions, pseudobulk

__all__ = ["observed_request"]


def _format(values: list[float]) -> str:
    return ",".join("nan" if np.isnan(v) else repr(float(v)) for v in values)


def observed_request(cells: AnnData, *, layer: str | None = None) -> pd.DataFrame:
    """One request row per perturbation of ``cells``, told the observed level T.

    Models estimate P(X | T): the level of each targeted gene is an input of
    the prediction, not something to predict. Each row carries, per targeted
    gene, the mean level recorded in ``expression_level_after_perturbation``
    (knockouts: 0), or where no level is recorded, the mean measured
    expression of the targeted gene in these cells. Unmeasured targets get
    NaN (a model cannot clamp them).

    Parameters
    ----------
    cells
        The held-out cells (or pseudobulk rows), following the data contract.
        Controls, if any, become control rows of the request.
    layer
        Layer holding the expression the levels are read from (``None``: X).

    Returns
    -------
    pandas.DataFrame
        The obs of the pseudobulk of ``cells`` (``perturbation``,
        ``is_control``, ``perturbation_type``, ``n_cells``), indexed by the
        condition key, with the levels T in
        ``expression_level_after_perturbation``. Pass it to a model's
        ``predict``.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0, record_levels=False)
    >>> request = observed_request(sim.adata[sim.adata.obs["perturbation"] == "TF01"])
    >>> request.loc["TF01", "expression_level_after_perturbation"] != "nan"
    True
    """
    profiles = pseudobulk(cells, layer=layer)
    iv = Interventions.from_adata(profiles, warn_unmeasured=False)
    levels = iv.levels.astype(np.float64).copy()
    rows = np.repeat(np.arange(iv.mask.shape[0]), np.diff(iv.mask.indptr))
    unknown = np.isnan(levels)
    X = np.asarray(profiles.X)
    levels[unknown] = X[rows[unknown], iv.mask.indices[unknown]]
    genes = iv.genes
    obs = profiles.obs.copy()
    text = []
    for i in range(iv.n_samples):  # one iteration per perturbation, not per cell
        entries = slice(iv.mask.indptr[i], iv.mask.indptr[i + 1])
        known = dict(zip(genes[iv.mask.indices[entries]], levels[entries], strict=True))
        text.append(_format([known.get(g, np.nan) for g in iv.targets(i)]))
    obs[LEVEL] = np.where(iv.is_control, "nan", np.array(text, dtype=object))
    return obs
