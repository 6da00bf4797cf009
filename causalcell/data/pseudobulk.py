"""Per-perturbation mean profiles (pseudobulk), the control reference, changes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell.data.contract import (
    IS_CONTROL,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    expression_matrix,
)
from causalcell.data.interventions import Interventions, format_levels
from causalcell.errors import DataContractError

__all__ = ["changes", "control_mean", "pseudobulk"]

_ROW_BLOCK = 4096  # rows of dense X converted to float64 at a time


def _group_means(X, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of the rows of ``X`` per group, as a dense float64 array.

    One sparse indicator product: works on dense and sparse ``X`` without
    densifying a sparse one, and without a loop over groups.
    """
    n = X.shape[0]
    counts = np.bincount(groups, minlength=n_groups).astype(float)
    weights = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)[groups]
    indicator = sp.csr_array((weights, (groups, np.arange(n))), shape=(n_groups, n))
    if sp.issparse(X):
        out = indicator @ sp.csr_array(X).astype(np.float64)
        return np.asarray(out.todense())
    # Dense X (often float32): accumulate in float64 over row blocks so no
    # float64 copy of the whole matrix is ever made.
    X = np.asarray(X)
    out = np.zeros((n_groups, X.shape[1]))
    indicator = indicator.tocsc()
    for start in range(0, n, _ROW_BLOCK):
        stop = min(start + _ROW_BLOCK, n)
        out += indicator[:, start:stop] @ X[start:stop].astype(np.float64, copy=False)
    return out


def pseudobulk(
    adata: AnnData,
    *,
    layer: str | None = None,
    groupby: str | Sequence[str] | None = None,
    min_cells: int = 1,
) -> AnnData:
    """Average the cells of each perturbation into one profile.

    Cells are grouped by condition (the set of targeted genes and the kind;
    ``"A,B"`` and ``"B,A"`` are one condition), and additionally by the obs
    columns in ``groupby`` (e.g. a replicate). Controls are grouped by their
    label.

    Parameters
    ----------
    adata
        Cells following the data contract.
    layer
        Layer to average; ``None`` averages ``X``.
    groupby
        Extra obs column(s) to split groups by.
    min_cells
        Groups with fewer cells are dropped.

    Returns
    -------
    AnnData
        One row per group, X the mean profile (dense float64), obs with the
        contract columns (canonical labels; levels are the per-gene means of
        the cells' levels, NaN when unknown), ``n_cells``, and the
        ``groupby`` columns; var copied from ``adata``.

    Raises
    ------
    DataContractError
        If obs breaks the contract, the layer or a ``groupby`` column is
        missing, or no group has ``min_cells`` cells.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, seed=0)
    >>> pb = cc.data.pseudobulk(sim.adata)
    >>> int(pb.obs["n_cells"].sum()) == sim.adata.n_obs
    True
    """
    interventions = Interventions.from_adata(adata, warn_unmeasured=False)
    X = expression_matrix(adata, layer)
    extra = [groupby] if isinstance(groupby, str) else list(groupby or [])
    for column in extra:
        if column not in adata.obs.columns:
            raise DataContractError(
                f"groupby column {column!r} is not in obs; available: {list(adata.obs.columns)}."
            )
    keys = [interventions.codes] + [adata.obs[c].astype(str).to_numpy() for c in extra]
    groups, uniques = pd.factorize(pd.MultiIndex.from_arrays(keys))
    n_groups = len(uniques)
    n_cells = np.bincount(groups, minlength=n_groups)
    means = _group_means(X, groups, n_groups)

    cond_codes = np.asarray(uniques.get_level_values(0), dtype=np.int64)
    cond = interventions.conditions.iloc[cond_codes]
    obs = pd.DataFrame(
        {
            PERTURBATION: cond[PERTURBATION].to_numpy(),
            IS_CONTROL: cond[IS_CONTROL].to_numpy(dtype=bool),
            PERTURBATION_TYPE: cond[PERTURBATION_TYPE].to_numpy(),
            LEVEL: _mean_levels(interventions, groups, n_groups, cond),
            "n_cells": n_cells,
        }
    )
    names = cond.index.to_numpy().astype(str)
    for pos, column in enumerate(extra, start=1):
        values = uniques.get_level_values(pos).to_numpy()
        obs[column] = values
        names = np.char.add(np.char.add(names, f" | {column}="), values.astype(str))
    obs.index = pd.Index(names, dtype=str)
    keep = n_cells >= min_cells
    if not keep.any():
        raise DataContractError(
            f"No group has at least min_cells={min_cells} cells (largest: {n_cells.max()})."
        )
    out = AnnData(X=means[keep], obs=obs.loc[keep], var=adata.var.copy())
    out.uns["pseudobulk"] = {"layer": layer, "groupby": extra, "min_cells": min_cells}
    return out


def _mean_levels(
    interventions: Interventions, groups: np.ndarray, n_groups: int, cond: pd.DataFrame
) -> np.ndarray:
    """Per group and measured target, the mean of the known levels, formatted
    in canonical target order ("nan" for unknown or unmeasured targets)."""
    mask = interventions.mask
    entry_rows = np.repeat(np.arange(mask.shape[0]), np.diff(mask.indptr))
    frame = pd.DataFrame(
        {"group": groups[entry_rows], "gene": mask.indices, "level": interventions.levels}
    )
    means = frame.groupby(["group", "gene"], sort=False)["level"].mean()
    lookup = {(int(g), int(j)): float(v) for (g, j), v in means.items()}
    genes = interventions.genes
    out = np.empty(n_groups, dtype=object)
    # One iteration per group (perturbations, not cells).
    for g, targets in enumerate(cond["targets"]):
        if not targets:
            out[g] = "nan"
            continue
        cols = genes.get_indexer(list(targets))
        out[g] = format_levels([lookup.get((g, int(j)), np.nan) for j in cols])
    return out


def control_mean(adata: AnnData, *, layer: str | None = None) -> np.ndarray:
    """Mean profile of the control samples (weighted by ``n_cells`` when present).

    Parameters
    ----------
    adata
        Cells or pseudobulk rows following the data contract.
    layer
        Layer to average; ``None`` averages ``X``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_genes,)``, float64.

    Raises
    ------
    DataContractError
        If there is no control sample.
    """
    interventions = Interventions.from_adata(adata, warn_unmeasured=False)
    if not interventions.is_control.any():
        raise DataContractError(
            f"No control sample: column {IS_CONTROL!r} is False everywhere. Mark the "
            f"non-targeting / untreated samples with is_control=True."
        )
    X = expression_matrix(adata, layer)
    rows = np.flatnonzero(interventions.is_control)
    weights = (
        adata.obs["n_cells"].to_numpy(dtype=float)[rows]
        if "n_cells" in adata.obs.columns
        else np.ones(len(rows))
    )
    weights = weights / weights.sum()
    sub = X[rows]
    if sp.issparse(sub):
        return np.asarray(sp.csr_array(sub).T @ weights).ravel()
    return np.asarray(sub, dtype=np.float64).T @ weights


def changes(adata: AnnData, *, layer: str | None = None, min_cells: int = 1) -> AnnData:
    """Per-perturbation mean change against the control mean.

    Cells are averaged per perturbation first (:func:`pseudobulk`); data that
    is already pseudobulk (obs has ``n_cells``) is used as it is.

    Parameters
    ----------
    adata
        Cells or pseudobulk rows following the data contract, with controls.
    layer
        Layer holding the expression; ``None`` uses ``X``.
    min_cells
        Perturbations with fewer cells are dropped.

    Returns
    -------
    AnnData
        One row per perturbation (controls dropped): X = mean profile minus
        control mean (dense float64); obs as in :func:`pseudobulk`;
        ``uns["control_mean"]`` holds the reference profile.

    Raises
    ------
    DataContractError
        If there is no control sample.
    """
    if "n_cells" in adata.obs.columns:
        pb = adata
        X = pb.X if layer is None else expression_matrix(pb, layer)
    else:
        pb = pseudobulk(adata, layer=layer)
        X = pb.X
    reference = control_mean(pb, layer=layer if pb is adata else None)
    keep = ~pb.obs[IS_CONTROL].to_numpy(dtype=bool)
    keep &= pb.obs["n_cells"].to_numpy() >= min_cells
    values = X[np.flatnonzero(keep)]
    values = values.toarray() if sp.issparse(values) else np.asarray(values, dtype=np.float64)
    out = AnnData(X=values - reference, obs=pb.obs.loc[keep].copy(), var=pb.var.copy())
    out.uns["control_mean"] = reference
    return out
