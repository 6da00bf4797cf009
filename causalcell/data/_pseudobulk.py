"""Per-perturbation mean profiles (pseudobulk), the control reference, changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell._validation import check_anndata, is_int
from causalcell.data._interventions import Interventions
from causalcell.data._schema import format_levels
from causalcell.data._stats import (
    GroupMoments,
    group_moments,
    normalized,
    weighted_column_sums,
)
from causalcell.data._tidy import tidy_obs
from causalcell.data.contract import (
    IS_CONTROL,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    expression_matrix,
)
from causalcell.data.lazy import is_dask_array
from causalcell.errors import DataContractError, ParameterError

__all__ = [
    "CellGroups",
    "changes",
    "check_min_cells",
    "control_mean",
    "control_weights",
    "pseudobulk",
    "pseudobulk_cells",
    "row_weights",
]


def _where(layer: str | None) -> str:
    return "X" if layer is None else f"layers[{layer!r}]"


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
        Cells following the data contract. ``X`` (or the layer) may be a
        Dask array chunked along cells (e.g. from
        :func:`causalcell.data.read_lazy`): it is read once, in row blocks,
        on the active Dask client (else Dask's threaded scheduler); the
        result is in memory either way (groups x genes is small).
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
        missing, no group has ``min_cells`` cells, or a Dask ``X`` is
        chunked along genes.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> pb = cc.data.pseudobulk(sim.adata)
    >>> int(pb.obs["n_cells"].sum()) == sim.adata.n_obs
    True
    """
    return pseudobulk_cells(adata, layer=layer, groupby=groupby, min_cells=min_cells)[0]


@dataclass(frozen=True)
class CellGroups:
    """The pass over the cells behind a :func:`pseudobulk`: what else it can serve.

    Attributes
    ----------
    groups : numpy.ndarray of int64, shape (n_cells,)
        The pseudobulk group of each cell (every group, before ``min_cells``).
    moments : GroupMoments
        Unweighted per-group sums (and sums of squares, when asked for) of
        the cells' expression: coarser groupings of the same cells (the
        controls pooled, for a test against them) are merged from it
        (:meth:`GroupMoments.merged`) instead of read again.
    """

    groups: np.ndarray
    moments: GroupMoments


def pseudobulk_cells(
    adata: AnnData,
    *,
    layer: str | None = None,
    groupby: str | Sequence[str] | None = None,
    min_cells: int = 1,
    squares: bool = False,
) -> tuple[AnnData, CellGroups]:
    """:func:`pseudobulk` and the group moments it averaged (one pass over the cells).

    ``squares=True`` also sums the squares in the same pass (for variances,
    e.g. a Welch test of the same cells).
    """
    check_anndata(adata)
    check_min_cells(min_cells)
    interventions = Interventions.from_adata(adata, warn_unmeasured=False)
    X = expression_matrix(adata, layer)
    if groupby is not None and (not isinstance(groupby, str | Sequence) or not all(
            isinstance(c, str) for c in ([groupby] if isinstance(groupby, str) else groupby))):
        raise ParameterError(
            f"groupby={groupby!r} must be an obs column name or a list of them (e.g. "
            f"groupby='replicate')."
        )
    extra = [groupby] if isinstance(groupby, str) else list(groupby or [])
    for column in extra:
        if column not in adata.obs.columns:
            raise DataContractError(
                f"groupby column {column!r} is not in obs; available: {list(adata.obs.columns)}."
            )
    groups, key_codes, key_values = _group_codes(interventions.codes, adata.obs, extra)
    n_groups = len(key_codes[0])
    moments = group_moments(X, groups, n_groups, squares=squares, what=_where(layer))
    n_cells = moments.count.astype(np.int64)
    means = moments.mean()

    cond = interventions.conditions.iloc[key_codes[0]]
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
        values = key_values[pos][key_codes[pos]]
        obs[column] = values
        names = np.char.add(np.char.add(names, f" | {column}="), values.astype(str))
    obs.index = pd.Index(names, dtype=str)
    _check_finite(means, obs.index, _where(layer))
    keep = n_cells >= min_cells
    if not keep.any():
        raise DataContractError(
            f"No group has at least min_cells={min_cells} cells (largest: {n_cells.max()})."
        )
    out = AnnData(X=means[keep], obs=tidy_obs(obs.loc[keep].copy()), var=adata.var.copy())
    out.uns["pseudobulk"] = {"layer": layer, "groupby": extra, "min_cells": min_cells}
    return out, CellGroups(groups, moments)


def check_min_cells(min_cells: object) -> int:
    """``min_cells`` as an int >= 0, else a ParameterError naming it."""
    if not is_int(min_cells) or min_cells < 0:
        raise ParameterError(
            f"min_cells={min_cells!r} must be a whole number of cells >= 0 (e.g. 1)."
        )
    return int(min_cells)


def _check_finite(means: np.ndarray, groups: pd.Index, where: str) -> None:
    """Refuse group means that are NaN or infinite: some cell of the group was (the
    check costs one look at the means, not a pass over the cells)."""
    bad = np.flatnonzero(~np.isfinite(means).all(axis=1))
    if len(bad):
        raise DataContractError(
            f"{where} contains NaN or infinite values in the cells of {groups[bad[0]]!r} "
            f"({len(bad)} group(s) in all). Expression must be finite: impute or drop those "
            f"cells / genes first."
        )


def _group_codes(
    conditions: np.ndarray, obs: pd.DataFrame, extra: list[str]
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Group of each cell: its condition crossed with the ``extra`` obs columns.

    Integer codes only: each column is factorized once and the codes are
    combined into one integer per cell (no tuple per cell). Returns the group
    of each cell and, per key, the code of each group (first appearance order)
    and the distinct values the codes index.
    """
    codes, values = [np.asarray(conditions, dtype=np.int64)], [None]
    for column in extra:
        c, v = pd.factorize(obs[column].astype(str).to_numpy())
        codes.append(c.astype(np.int64))
        values.append(np.asarray(v, dtype=object))
    if len(codes) == 1:
        groups, conditions_of_group = pd.factorize(codes[0])
        return groups.astype(np.int64), [conditions_of_group.astype(np.int64)], values
    groups = codes[0]
    for c in codes[1:]:
        # Re-factorized after each column: the combined codes stay below n_cells * size.
        groups = pd.factorize(groups * (int(c.max()) + 1) + c)[0].astype(np.int64)
    # factorize numbers groups in order of first appearance: a group's first cell is
    # where the running maximum of the codes grows, and gives the group's keys.
    grows = np.ones(len(groups), dtype=bool)
    grows[1:] = groups[1:] > np.maximum.accumulate(groups)[:-1]
    first = np.flatnonzero(grows)
    return groups, [c[first] for c in codes], values


def _mean_levels(
    interventions: Interventions, groups: np.ndarray, n_groups: int, cond: pd.DataFrame
) -> np.ndarray:
    """Per group and measured target, the mean of the known levels, formatted
    in canonical target order ("nan" for unknown or unmeasured targets)."""
    n_genes = len(interventions.genes)
    # Mean known level per (group, measured target), keyed group * n_genes + gene.
    entry_key = groups[interventions.entry_rows] * n_genes + interventions.mask.indices
    means = pd.Series(interventions.levels).groupby(entry_key, sort=False).mean()
    # Every group's targets in canonical order, measured or not, flattened.
    targets = cond["targets"].to_numpy()
    lengths = np.fromiter(map(len, targets), dtype=np.int64, count=len(targets))
    flat = [gene for t in targets for gene in t]
    cols = interventions.genes.get_indexer(flat) if flat else np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(n_groups), lengths)
    keys = np.where(cols >= 0, owner * n_genes + cols, -1)
    values = means.reindex(keys).to_numpy(dtype=np.float64)  # NaN: unknown or unmeasured
    ends = np.cumsum(lengths)
    out = np.empty(n_groups, dtype=object)
    # One string per group (the obs column); no look-ups inside the loop.
    for g, (stop, length) in enumerate(zip(ends.tolist(), lengths.tolist(), strict=True)):
        out[g] = format_levels(values[stop - length : stop]) if length else "nan"
    return out


def row_weights(adata: AnnData) -> np.ndarray:
    """Weight of each row: ``obs["n_cells"]`` for pseudobulk rows, else 1 per row.

    Parameters
    ----------
    adata
        Cells or pseudobulk rows.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_obs,)``, float64.

    Raises
    ------
    DataContractError
        If ``n_cells`` holds a negative, missing or non-numeric value.
    """
    if "n_cells" not in adata.obs.columns:
        return np.ones(adata.n_obs)
    weights = pd.to_numeric(adata.obs["n_cells"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataContractError(
            f"obs['n_cells'] must hold non-negative cell counts (it weights pseudobulk "
            f"rows); row {adata.obs_names[first]!r} has {adata.obs['n_cells'].iloc[first]!r}. "
            f"Fix the column or drop it to weight every row equally."
        )
    return weights


def control_weights(adata: AnnData, interventions: Interventions) -> np.ndarray:
    """Per-sample weights w such that ``w @ X`` is the control mean profile.

    Control rows weigh their ``n_cells`` (pseudobulk rows) or 1 (cells),
    normalized to sum to 1; other rows weigh 0 (all zeros without controls).

    Parameters
    ----------
    adata
        Cells or pseudobulk rows following the data contract.
    interventions
        ``Interventions.from_adata(adata)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_obs,)``, float64.
    """
    return normalized(np.where(interventions.is_control, row_weights(adata), 0.0))


def control_mean(adata: AnnData, *, layer: str | None = None) -> np.ndarray:
    """Mean profile of the control samples (weighted by ``n_cells`` when present).

    Parameters
    ----------
    adata
        Cells or pseudobulk rows following the data contract. ``X`` (or the
        layer) may be a Dask array chunked along cells: it is read once, in
        row blocks, on the active Dask client (else the threaded scheduler).
    layer
        Layer to average; ``None`` averages ``X``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_genes,)``, float64.

    Raises
    ------
    DataContractError
        If there is no control sample, or a Dask ``X`` is chunked along genes.
    """
    interventions = Interventions.from_adata(adata, warn_unmeasured=False)
    if not interventions.is_control.any():
        raise DataContractError(
            f"No control sample: column {IS_CONTROL!r} is False everywhere. Mark the "
            f"non-targeting / untreated samples with is_control=True."
        )
    X = expression_matrix(adata, layer)
    mean = weighted_column_sums(X, control_weights(adata, interventions), _where(layer))
    _check_finite(mean[None, :], pd.Index(["the controls"]), _where(layer))
    return mean


def changes(adata: AnnData, *, layer: str | None = None, min_cells: int = 1) -> AnnData:
    """Per-perturbation mean change against the control mean.

    Cells are averaged per perturbation first (:func:`pseudobulk`); data that
    is already pseudobulk (obs has ``n_cells``) is used as it is.

    Parameters
    ----------
    adata
        Cells or pseudobulk rows following the data contract, with controls.
        ``X`` (or the layer) may be a Dask array chunked along cells: cells
        are averaged in one pass over the row blocks on the active Dask
        client (else the threaded scheduler); Dask pseudobulk rows are
        computed to memory.
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
        If there is no control sample, or a Dask ``X`` is chunked along genes.
    """
    check_anndata(adata)
    check_min_cells(min_cells)
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
    if is_dask_array(values):  # pseudobulk rows are few: compute them
        values = values.compute()
    values = values.toarray() if sp.issparse(values) else np.asarray(values, dtype=np.float64)
    out = AnnData(X=values - reference, obs=pb.obs.loc[keep].copy(), var=pb.var.copy())
    out.uns["control_mean"] = reference
    return out
