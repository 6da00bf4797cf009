"""How far each targeted gene moves compared with every other gene.

This is the observation the whole package is built on: a targeted gene's own
transcript moves far more than anything downstream of it. The table made here
quantifies it per perturbation, on any data set following the contract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell.data import Interventions, changes
from causalcell.data.contract import PERTURBATION, PERTURBATION_TYPE
from causalcell.errors import DataContractError

__all__ = ["target_effect", "target_entries"]

# Entries (perturbation, target) compared against all genes per block, so the
# boolean comparison matrix stays at most _BLOCK x n_genes.
_BLOCK = 2048


def target_entries(
    adata: AnnData, layer: str | None, min_cells: int = 1
) -> tuple[AnnData, Interventions, np.ndarray, np.ndarray]:
    """The changes against the control mean and their (perturbation, measured target)
    entries.

    Shared by :func:`target_effect` and :func:`causalcell.plot.target_effect`, so that
    both rank the same changes. Returns the changes (one row per perturbation, obs
    with ``n_cells``), their :class:`~causalcell.data.Interventions`,
    and the row and gene column of every targeted entry (row-major, as in
    ``Interventions.mask``; empty when no target is measured: the caller says why
    that is an error).
    """
    delta_data = changes(adata, layer=layer, min_cells=min_cells)
    iv = Interventions.from_adata(delta_data, warn_unmeasured=False)
    mask = iv.mask
    entry_row = np.repeat(np.arange(mask.shape[0]), np.diff(mask.indptr))
    return delta_data, iv, entry_row, mask.indices


def target_effect(
    adata: AnnData, *, layer: str | None = None, min_cells: int = 1
) -> pd.DataFrame:
    """Rank of each targeted gene's own change among all genes of its profile.

    The change of a perturbation is its mean profile minus the control mean
    (cells are averaged first; pseudobulk rows are used as they are).

    Parameters
    ----------
    adata
        Cells or pseudobulk rows following the data contract, with controls.
    layer
        Layer holding log-normalized expression; ``None`` uses ``X``.
    min_cells
        Perturbations with fewer cells are left out.

    Returns
    -------
    pandas.DataFrame
        One row per (perturbation, measured target), sorted by perturbation:
        ``perturbation``, ``perturbation_type``, ``target``, ``n_cells``,
        ``target_change`` (mean minus control), ``rank`` (1 + the number of
        genes not targeted in that perturbation whose absolute change is
        larger: 1 means no untargeted gene moves more; co-targets of a
        combination do not compete), ``n_genes``, ``max_other_change`` (largest absolute change of
        a gene that is not targeted in this perturbation) and ``ratio``
        (``|target_change| / max_other_change``).

    Raises
    ------
    DataContractError
        If there are no controls or no perturbation targets a measured gene.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=40, n_tfs=6, random_state=0)
    >>> table = cc.evaluate.target_effect(sim.adata)
    >>> bool((table["rank"] == 1).mean() > 0.9)
    True
    """
    delta_data, iv, entry_row, entry_col = target_entries(adata, layer, min_cells)
    delta = np.asarray(delta_data.X)
    obs = delta_data.obs
    if len(entry_col) == 0:
        raise DataContractError(
            "No perturbation targets a measured gene, so there is no target effect to rank."
        )
    abs_delta = np.abs(delta)
    target_abs = abs_delta[entry_row, entry_col]
    # Largest |change| among genes not targeted in the same perturbation.
    others = abs_delta.copy()
    others[entry_row, entry_col] = -np.inf
    max_other = others.max(axis=1)[entry_row]
    ranks = np.empty(len(entry_col), dtype=np.int64)
    for start in range(0, len(entry_col), _BLOCK):
        stop = start + _BLOCK
        block = others[entry_row[start:stop]]
        ranks[start:stop] = 1 + (block > target_abs[start:stop, None]).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(max_other > 0, target_abs / max_other, np.inf)
    table = pd.DataFrame(
        {
            PERTURBATION: obs[PERTURBATION].to_numpy()[entry_row],
            PERTURBATION_TYPE: obs[PERTURBATION_TYPE].to_numpy()[entry_row],
            "target": iv.genes.to_numpy()[entry_col],
            "n_cells": obs["n_cells"].to_numpy()[entry_row],
            "target_change": delta[entry_row, entry_col],
            "rank": ranks,
            "n_genes": delta.shape[1],
            "max_other_change": max_other,
            "ratio": ratio,
        }
    )
    return table
