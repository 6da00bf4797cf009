"""Differential expression of each perturbation against the control cells.

Two tests per (perturbation, gene), each group of perturbed cells against the
one set of control cells, vectorized across genes and perturbations on dense
or sparse cell-level data:

- **Welch's t-test** (unequal variances): group sums and sums of squares come
  from one sparse indicator product (groups x cells) @ X, so a sparse X is
  never densified. The p-value is two-sided with Welch-Satterthwaite degrees
  of freedom. Equal to ``scipy.stats.ttest_ind(group, control, equal_var=False)``.
- **Wilcoxon rank-sum / Mann-Whitney U** with the tie correction and the
  normal approximation with continuity correction. The U statistic of a group
  against the controls needs, for each group value v, only the number of
  control values below v and equal to v (the ranks within the group add
  ``n1 (n1 + 1) / 2`` and cancel in ``U = R1 - n1 (n1 + 1) / 2``). So the
  control column of every gene is sorted once and every group value is looked
  up by binary search, instead of ranking control + group again for each
  perturbation; implicit zeros of sparse data are counted, not stored. Equal
  to ``scipy.stats.mannwhitneyu(group, control, method="asymptotic",
  use_continuity=True)``.

q-values are Benjamini-Hochberg, per perturbation across genes
(``statsmodels.stats.multitest.fdrcorrection``).

References
----------
Welch, B. L. (1947). The generalization of Student's problem when several
different population variances are involved. Biometrika 34, 28-35.
Mann, H. B. & Whitney, D. R. (1947). On a test of whether one of two random
variables is stochastically larger than the other. Ann. Math. Stat. 18, 50-60.
Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate.
J. R. Stat. Soc. B 57, 289-300.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy import special
from statsmodels.stats.multitest import fdrcorrection

from causalcell.data import Interventions
from causalcell.data.contract import IS_CONTROL, PERTURBATION, PERTURBATION_TYPE
from causalcell.data.lazy import check_row_chunks, is_dask_array, map_row_blocks
from causalcell.errors import DataContractError, ParameterError

__all__ = [
    "DASK_RANK_MEMORY",
    "METHODS",
    "DEResult",
    "bh_qvalues",
    "differential_expression",
    "rank_sum_test",
    "welch_ttest",
]

METHODS = ("t-test", "wilcoxon")

# Dense rows converted to float64 at once in the Welch accumulation, and
# stored entries handled at once in the rank-sum test: bounds the temporaries
# (a few hundred MB at most) whatever the screen size.
_DENSE_BLOCK_ENTRIES = 1 << 24
_RANK_BLOCK_ENTRIES = 1 << 23
# Largest combined (gene, value, group) sort key; beyond it a lexsort is used.
_KEY_LIMIT = 1 << 62
# Default bytes of one dense float64 column slab (cells x genes) that the
# rank-sum test computes to memory at a time from a Dask X.
DASK_RANK_MEMORY = 1 << 30


# --------------------------------------------------------------------------- checks


def _check_groups(
    X, groups: np.ndarray, control: np.ndarray, n_groups: int | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate the cell -> group codes and the control mask; return them as arrays."""
    n_cells = X.shape[0]
    groups = np.asarray(groups)
    control = np.asarray(control)
    if groups.shape != (n_cells,) or not np.issubdtype(groups.dtype, np.integer):
        raise ParameterError(
            f"groups must be an integer array with one code per cell ({n_cells}), "
            f"got dtype {groups.dtype} and shape {groups.shape}."
        )
    if control.shape != (n_cells,) or control.dtype != bool:
        raise ParameterError(
            f"control must be a boolean array with one entry per cell ({n_cells}), got "
            f"dtype {control.dtype} and shape {control.shape}."
        )
    if (control & (groups >= 0)).any():
        raise ParameterError("A cell is both a control and a member of a group (code >= 0).")
    if not control.any():
        raise DataContractError("No control cell: every test compares a group with controls.")
    top = int(groups.max()) + 1 if n_cells else 0
    if n_groups is None:
        n_groups = top
    elif top > n_groups:
        raise ParameterError(f"groups has code {top - 1} but n_groups={n_groups}.")
    return groups.astype(np.int64), control, int(max(n_groups, 0))


def _as_float_csr(X) -> sp.csr_array:
    return sp.csr_array(X, dtype=np.float64)


# --------------------------------------------------------------------------- Welch


def _block_moments(
    block, start: int, stop: int, codes: np.ndarray, n_rows: int, squares: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-group sums (and sums of squares) of one row block, float64.

    ``codes`` are the block's output rows (-1: not counted). The one kernel
    of the in-memory and the Dask passes.
    """
    n_genes = block.shape[1]
    cells = np.flatnonzero(codes >= 0)
    if not len(cells):
        return np.zeros((n_rows, n_genes)), (np.zeros((n_rows, n_genes)) if squares else None)
    indicator = sp.csr_array(
        (np.ones(len(cells)), (codes[cells], cells)), shape=(n_rows, stop - start)
    )
    if sp.issparse(block):
        block = _as_float_csr(block)
        s1 = (indicator @ block).toarray()
        s2 = (indicator @ block.multiply(block)).toarray() if squares else None
    else:
        block = np.asarray(block, dtype=np.float64)
        s1 = indicator @ block
        s2 = indicator @ (block * block) if squares else None
    return s1, s2


def _add_moments(
    a: tuple[np.ndarray, np.ndarray | None], b: tuple[np.ndarray, np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray | None]:
    return a[0] + b[0], (None if a[1] is None else a[1] + b[1])


def _group_moments(
    X, codes: np.ndarray, n_rows: int, *, squares: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-group sums (and sums of squares) of the columns of X, float64.

    ``codes[c]`` is the output row of cell c (-1: not counted). One sparse
    indicator product per block; a sparse X stays sparse. A Dask X is read
    once, in its row blocks, on the active Dask client (else the threaded
    scheduler); the block sums are added in block order.
    """
    if is_dask_array(X):
        check_row_chunks(X)
        return map_row_blocks(
            _block_moments, X, block_args=lambda a, b: (codes[a:b], n_rows, squares),
            combine=_add_moments, desc="Group moments",
        )
    n_cells, n_genes = X.shape
    s1 = np.zeros((n_rows, n_genes))
    s2 = np.zeros((n_rows, n_genes)) if squares else None
    if sp.issparse(X):
        # Sparse products handle all cells at once: memory is O(nnz).
        blocks = [(0, n_cells)]
    else:
        step = max(1, _DENSE_BLOCK_ENTRIES // max(n_genes, 1))
        blocks = [(a, min(a + step, n_cells)) for a in range(0, n_cells, step)]
    for start, stop in blocks:
        c = codes[start:stop]
        if not (c >= 0).any():
            continue
        block = X if stop - start == n_cells else X[start:stop]
        b1, b2 = _block_moments(block, start, stop, c, n_rows, squares)
        s1 += b1
        if s2 is not None:
            s2 += b2
    return s1, s2


def welch_ttest(
    X, groups: np.ndarray, control: np.ndarray, *, n_groups: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's two-sample t-test of every group against the controls, for every gene.

    Parameters
    ----------
    X
        Cells x genes, dense or scipy sparse, or a Dask array chunked along
        cells (e.g. from :func:`causalcell.data.read_lazy`): its group
        moments are row sums, read once in row blocks on the active Dask
        client (else Dask's threaded scheduler).
    groups
        Integer group code of each cell, ``-1`` for cells in no group (the
        controls, or cells left out).
    control
        Boolean mask of the control cells.
    n_groups
        Number of groups (default: ``groups.max() + 1``).

    Returns
    -------
    statistic : numpy.ndarray, shape (n_groups, n_genes)
        t of group minus control: ``(m1 - m0) / sqrt(v1 / n1 + v0 / n0)``
        with unbiased variances. ``±inf`` when both variances are 0 and the
        means differ, NaN when they are equal or a side has one cell.
    pvalue : numpy.ndarray, shape (n_groups, n_genes)
        Two-sided, Welch-Satterthwaite degrees of freedom (1 where they are
        undefined, as scipy does).
    mean_difference : numpy.ndarray, shape (n_groups, n_genes)
        ``m1 - m0``: the log fold change on log-normalized data.

    Raises
    ------
    ParameterError
        If ``groups`` / ``control`` do not match the cells of ``X``.
    DataContractError
        If there is no control cell, or a Dask X is chunked along genes.

    Notes
    -----
    Variances come from sums of squares, ``(S2 - S1^2 / n) / (n - 1)``, in
    float64; negative round-off is clipped to 0. Equal to
    ``scipy.stats.ttest_ind(group, control, equal_var=False)`` to about 1e-9
    relative on log-normalized data.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 1.0], [0.2, 1.1], [1.0, 1.0], [1.3, 0.9], [0.9, 1.2]])
    >>> t, p, d = welch_ttest(X, np.array([-1, -1, 0, 0, 0]),
    ...                       np.array([True, True, False, False, False]))
    >>> t.shape, bool(t[0, 0] > 0)
    ((1, 2), True)
    """
    groups, control, n_groups = _check_groups(X, groups, control, n_groups)
    codes = np.where(control, n_groups, groups)  # the controls are one more row
    s1, s2 = _group_moments(X, codes, n_groups + 1)
    counts = np.bincount(codes[codes >= 0], minlength=n_groups + 1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / counts[:, None]
        var = np.maximum((s2 - s1 * mean) / (counts[:, None] - 1.0), 0.0)
        var[counts <= 1] = np.nan
        se1 = var[:n_groups] / counts[:n_groups, None]
        se0 = var[n_groups] / counts[n_groups]
        diff = mean[:n_groups] - mean[n_groups]
        denom = np.sqrt(se1 + se0)
        t = diff / denom
        df = (se1 + se0) ** 2 / (
            se1**2 / (counts[:n_groups, None] - 1.0) + se0**2 / (counts[n_groups] - 1.0)
        )
    df = np.where(np.isnan(df), 1.0, df)
    # Two-sided p from the t distribution's CDF (what scipy.stats.t.sf uses).
    p = 2.0 * special.stdtr(df, -np.abs(t))
    return t, np.minimum(p, 1.0), diff


# --------------------------------------------------------------------------- Wilcoxon


def _tie_delta(c: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Change of sum(t^3 - t) when m group values join c tied control values."""
    total = c + m
    return (total**3 - total) - (c**3 - c)


def _distinct_triples(
    gene: np.ndarray, code: np.ndarray, grp: np.ndarray, n_uniq: int, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (gene, value code, group) triples, sorted in that order, with counts.

    One int64 key sorted with ``np.sort`` when it cannot overflow (always, in
    practice: blocks bound the number of distinct values); a 3-key lexsort
    otherwise.
    """
    if not len(gene):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0)
    n_genes = int(gene.max()) + 1
    if n_genes * int(n_uniq) * int(n_groups) < _KEY_LIMIT:
        key = np.sort((gene * n_uniq + code) * n_groups + grp)
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        starts = np.flatnonzero(first)
        distinct = key[starts]
        gene_code, d_grp = np.divmod(distinct, n_groups)
        d_gene, d_code = np.divmod(gene_code, n_uniq)
    else:
        order = np.lexsort((grp, code, gene))
        gene, code, grp = gene[order], code[order], grp[order]
        first = np.ones(len(gene), dtype=bool)
        first[1:] = (gene[1:] != gene[:-1]) | (code[1:] != code[:-1]) | (grp[1:] != grp[:-1])
        starts = np.flatnonzero(first)
        d_gene, d_code, d_grp = gene[starts], code[starts], grp[starts]
    mult = np.diff(np.append(starts, len(first))).astype(np.float64)
    return d_gene, d_code, d_grp, mult


def _rank_sum_block(
    B: sp.csc_array, codes: np.ndarray, control: np.ndarray, n_groups: int,
    n_group_cells: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """U of each group vs control and the tie term of the pooled sample, for the
    genes (columns) of ``B`` whose explicit zeros were removed."""
    n_genes = B.shape[1]
    n_control = int(control.sum())
    rows = B.indices.astype(np.int64)
    cols = np.repeat(np.arange(n_genes, dtype=np.int64), np.diff(B.indptr))
    vals = B.data
    # Exact integer codes of the values (0 included), so that (gene, value)
    # pairs become one sortable int64 key without floating-point collisions.
    uniq = np.unique(np.concatenate([vals, [0.0]]))
    n_uniq = len(uniq)
    value_code = np.searchsorted(uniq, vals)
    zero_code = int(np.searchsorted(uniq, 0.0))

    # ---- controls: one sorted key array for all genes of the block
    in_control = control[rows]
    c_cols = cols[in_control]
    control_keys = np.sort(c_cols * n_uniq + value_code[in_control])
    stored_control = np.bincount(c_cols, minlength=n_genes)
    gene_start = np.concatenate([[0], np.cumsum(stored_control)[:-1]])
    control_zeros = (n_control - stored_control).astype(np.float64)
    keys, tie_counts = np.unique(control_keys, return_counts=True)
    tie_counts = tie_counts.astype(np.float64)
    control_tie = np.bincount(keys // n_uniq, weights=tie_counts**3 - tie_counts,
                              minlength=n_genes) + control_zeros**3 - control_zeros

    def lookup(gene: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Control values of ``gene`` below / equal to value ``code``."""
        key = gene * n_uniq + code
        left = np.searchsorted(control_keys, key, side="left")
        right = np.searchsorted(control_keys, key, side="right")
        below = (left - gene_start[gene]).astype(np.float64)
        below += control_zeros[gene] * (uniq[code] > 0.0)  # implicit zeros below v
        equal = (right - left).astype(np.float64)
        equal += control_zeros[gene] * (code == zero_code)
        return below, equal

    # ---- groups: distinct (gene, value, group) triples with multiplicities
    grp = codes[rows]
    in_group = grp >= 0
    g_cols, g_grp = cols[in_group], grp[in_group]
    n_pairs = n_groups * n_genes
    u = np.zeros(n_pairs)
    ties = np.zeros(n_pairs)
    stored_group = np.bincount(g_grp * n_genes + g_cols, minlength=n_pairs).astype(np.float64)
    d_gene, d_code, d_grp, mult = _distinct_triples(g_cols, value_code[in_group], g_grp,
                                                    n_uniq, n_groups)
    if len(d_gene):
        # Triples come sorted by gene, then value: one control lookup per
        # distinct (gene, value), shared by every group holding that value.
        new_value = np.ones(len(d_gene), dtype=bool)
        new_value[1:] = (d_gene[1:] != d_gene[:-1]) | (d_code[1:] != d_code[:-1])
        first = np.flatnonzero(new_value)
        below_v, equal_v = lookup(d_gene[first], d_code[first])
        which = np.cumsum(new_value) - 1
        below, equal = below_v[which], equal_v[which]
        d_pair = d_grp * n_genes + d_gene
        u += np.bincount(d_pair, weights=mult * (below + 0.5 * equal), minlength=n_pairs)
        ties += np.bincount(d_pair, weights=_tie_delta(equal, mult), minlength=n_pairs)
    # Implicit zeros of each group: n_k - stored entries, all tied at 0.
    group_zeros = (n_group_cells[:, None] - stored_group.reshape(n_groups, n_genes))
    gene_index = np.arange(n_genes, dtype=np.int64)
    below0, equal0 = lookup(gene_index, np.full(n_genes, zero_code, dtype=np.int64))
    u = u.reshape(n_groups, n_genes) + group_zeros * (below0 + 0.5 * equal0)
    ties = ties.reshape(n_groups, n_genes) + _tie_delta(control_zeros, group_zeros)
    return u, ties + control_tie


def _rank_sum_columns(
    X, groups: np.ndarray, control: np.ndarray, n_groups: int, n_group_cells: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """U and the pooled tie term of every (group, gene) of an in-memory X, in gene blocks."""
    n_cells, n_genes = X.shape
    csc = sp.csc_array(X, dtype=np.float64) if sp.issparse(X) else None
    u = np.empty((n_groups, n_genes))
    ties = np.empty((n_groups, n_genes))
    # Blocks of genes holding about _RANK_BLOCK_ENTRIES stored values each.
    if csc is not None:
        cuts = np.searchsorted(
            csc.indptr, np.arange(_RANK_BLOCK_ENTRIES, csc.nnz, _RANK_BLOCK_ENTRIES)
        )
        bounds = np.unique(np.concatenate([[0], cuts, [n_genes]])).tolist()
    else:
        step = max(1, _RANK_BLOCK_ENTRIES // max(n_cells, 1))
        bounds = [*range(0, n_genes, step), n_genes]
    for start, stop in pairwise(bounds):
        if csc is not None:
            block = csc[:, start:stop]
        else:
            block = sp.csc_array(np.asarray(X[:, start:stop], dtype=np.float64))
        block = sp.csc_array(block, copy=True)
        block.eliminate_zeros()  # zeros are counted, not stored
        block.sort_indices()
        u[:, start:stop], ties[:, start:stop] = _rank_sum_block(
            block, groups, control, n_groups, n_group_cells
        )
    return u, ties


def _rank_sum_dask(
    X, groups: np.ndarray, control: np.ndarray, n_groups: int, n_group_cells: np.ndarray,
    memory_budget: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_rank_sum_columns` on a Dask X, one block of genes at a time.

    A gene's U needs its whole column (every cell), so the genes are split
    into blocks whose dense float64 column slab (cells x block genes) fits in
    ``memory_budget`` bytes; each slab is computed to memory (on the active
    Dask client, else the threaded scheduler) and handed to the in-memory
    code. A row-chunked X is therefore read once per gene block.
    """
    n_cells, n_genes = X.shape
    step = max(1, int(memory_budget) // max(8 * n_cells, 1))
    u = np.empty((n_groups, n_genes))
    ties = np.empty((n_groups, n_genes))
    for start in range(0, n_genes, step):
        stop = min(start + step, n_genes)
        slab = X[:, start:stop].compute()
        u[:, start:stop], ties[:, start:stop] = _rank_sum_columns(
            slab, groups, control, n_groups, n_group_cells
        )
    return u, ties


def rank_sum_test(
    X, groups: np.ndarray, control: np.ndarray, *, n_groups: int | None = None,
    memory_budget: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wilcoxon rank-sum (Mann-Whitney U) test of every group against the controls.

    Parameters
    ----------
    X
        Cells x genes, dense or scipy sparse, or a Dask array (any
        chunking). A gene's test needs its whole column, so a Dask X is
        processed in blocks of genes: each block's column slab (all cells)
        is computed to memory on the active Dask client (else the threaded
        scheduler) and tested by the in-memory code. A row-chunked X is
        thus read once per gene block: about ``8 * n_cells * n_genes /
        memory_budget`` passes over the data.
    groups
        Integer group code of each cell, ``-1`` for cells in no group.
    control
        Boolean mask of the control cells.
    n_groups
        Number of groups (default: ``groups.max() + 1``).
    memory_budget
        Dask X only: bytes of one dense float64 column slab (cells x genes
        of a block); default :data:`DASK_RANK_MEMORY` (1 GiB). Larger means
        fewer passes over the data. Results do not depend on it.

    Returns
    -------
    statistic : numpy.ndarray, shape (n_groups, n_genes)
        U of the group: the number of (group, control) pairs in which the
        group value is larger, ties counting one half.
    z : numpy.ndarray, shape (n_groups, n_genes)
        ``(U - n1 n0 / 2) / sigma`` with the tie-corrected sigma, signed
        (positive: the group is higher); NaN when every value is tied.
    pvalue : numpy.ndarray, shape (n_groups, n_genes)
        Two-sided, normal approximation with continuity correction.

    Raises
    ------
    ParameterError
        If ``groups`` / ``control`` do not match the cells of ``X``, or
        ``memory_budget`` is not a positive integer.
    DataContractError
        If there is no control cell.

    Notes
    -----
    Exact counting, no ranking of the pooled sample per group: the control
    values of each gene are sorted once (one int64 key per stored value) and
    each distinct group value is located by binary search. The work is
    O(nnz log nnz) for all groups together, in blocks of genes.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [3.0]])
    >>> u, z, p = rank_sum_test(X, np.array([-1, -1, 0, 0, 0]),
    ...                         np.array([True, True, False, False, False]))
    >>> float(u[0, 0])
    6.0
    """
    groups, control, n_groups = _check_groups(X, groups, control, n_groups)
    if memory_budget is not None and (isinstance(memory_budget, bool)
                                      or not isinstance(memory_budget, int | np.integer)
                                      or memory_budget < 1):
        raise ParameterError(
            f"memory_budget must be a positive number of bytes or None; got {memory_budget!r}."
        )
    n_group_cells = np.bincount(groups[groups >= 0], minlength=n_groups).astype(np.float64)
    n_control = float(control.sum())
    if is_dask_array(X):
        u, ties = _rank_sum_dask(X, groups, control, n_groups, n_group_cells,
                                 memory_budget or DASK_RANK_MEMORY)
    else:
        u, ties = _rank_sum_columns(X, groups, control, n_groups, n_group_cells)
    n1 = n_group_cells[:, None]
    n0 = n_control
    n = n1 + n0
    mu = n1 * n0 / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.sqrt(n1 * n0 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0))))
        # Two-sided: the larger of U1 and U2 = n1 n0 - U1, minus the continuity 1/2.
        z_tail = (np.maximum(u, n1 * n0 - u) - mu - 0.5) / sigma
        z = np.where(sigma > 0, (u - mu) / sigma, np.nan)
    p = np.clip(2.0 * special.ndtr(-z_tail), 0.0, 1.0)
    return u, z, p


# --------------------------------------------------------------------------- BH


def bh_qvalues(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of each row (a perturbation across genes).

    Parameters
    ----------
    pvalues
        Array (n_perturbations, n_genes); NaN entries (untestable genes) are
        left out of their row's family and get a NaN q-value.

    Returns
    -------
    numpy.ndarray
        Same shape, ``statsmodels.stats.multitest.fdrcorrection`` per row.

    Examples
    --------
    >>> bh_qvalues(np.array([[0.01, 0.04, np.nan, 0.03]])).round(3).tolist()
    [[0.03, 0.04, nan, 0.04]]
    """
    p = np.atleast_2d(np.asarray(pvalues, dtype=np.float64))
    q = np.full_like(p, np.nan)
    finite = ~np.isnan(p)
    # One family per perturbation; statsmodels works on 1-d arrays, so this
    # loops over perturbations (each call vectorized across genes, ~40 us for
    # 2,000 genes), never over genes.
    for i in np.flatnonzero(finite.any(axis=1)):
        keep = finite[i]
        q[i, keep] = fdrcorrection(p[i, keep], method="indep")[1]
    return q.reshape(np.shape(pvalues))


# --------------------------------------------------------------------------- AnnData


@dataclass(frozen=True, repr=False)
class DEResult:
    """Differential expression of each perturbation against the controls.

    Attributes
    ----------
    perturbations : pandas.Index
        Condition keys (canonical labels, see
        :attr:`causalcell.data.Interventions.conditions`), one per row.
    perturbation_type : numpy.ndarray of str
        Kind of each perturbation.
    genes : pandas.Index
        Columns.
    method : str
        ``"t-test"`` (Welch) or ``"wilcoxon"``.
    statistic : numpy.ndarray
        t (Welch) or U (Wilcoxon), shape (n_perturbations, n_genes).
    score : numpy.ndarray
        Signed standardized statistic used to rank genes: t, or the z of U.
    pvalue, qvalue : numpy.ndarray
        Two-sided p-values and BH q-values (per perturbation).
    mean_difference : numpy.ndarray
        Mean of the perturbed cells minus mean of the controls.
    n_cells : numpy.ndarray of int
        Perturbed cells per perturbation.
    n_control : int
        Control cells.
    """

    perturbations: pd.Index
    perturbation_type: np.ndarray
    genes: pd.Index
    method: str
    statistic: np.ndarray
    score: np.ndarray
    pvalue: np.ndarray
    qvalue: np.ndarray
    mean_difference: np.ndarray
    n_cells: np.ndarray
    n_control: int

    def __repr__(self) -> str:
        return (
            f"DEResult({self.method}, {len(self.perturbations)} perturbations x "
            f"{len(self.genes)} genes vs {self.n_control} control cells)"
        )

    def significant(self, alpha: float = 0.05) -> np.ndarray:
        """Boolean (n_perturbations, n_genes): q-value below ``alpha``."""
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.qvalue, nan=1.0) < alpha

    def select(self, perturbations: pd.Index | list[str], genes: pd.Index | list[str]) -> DEResult:
        """The rows and columns named, in that order.

        Raises
        ------
        DataContractError
            If a perturbation or gene is not in the result.
        """
        rows = self.perturbations.get_indexer(pd.Index(perturbations))
        cols = self.genes.get_indexer(pd.Index(genes))
        for what, idx, names in (("perturbation", rows, perturbations),
                                 ("gene", cols, genes)):
            if (idx < 0).any():
                missing = [str(n) for n, i in zip(names, idx, strict=True) if i < 0][:10]
                raise DataContractError(
                    f"The DE result has no {what} {missing}; compute it on the same "
                    f"observed data that is evaluated."
                )
        pick = np.ix_(rows, cols)
        return DEResult(
            perturbations=self.perturbations[rows],
            perturbation_type=self.perturbation_type[rows],
            genes=self.genes[cols],
            method=self.method,
            statistic=self.statistic[pick],
            score=self.score[pick],
            pvalue=self.pvalue[pick],
            qvalue=self.qvalue[pick],
            mean_difference=self.mean_difference[pick],
            n_cells=self.n_cells[rows],
            n_control=self.n_control,
        )

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per (perturbation, gene).

        Columns ``perturbation``, ``perturbation_type``, ``gene``,
        ``statistic``, ``score``, ``mean_difference``, ``pvalue``, ``qvalue``.
        """
        n, g = self.statistic.shape
        return pd.DataFrame(
            {
                PERTURBATION: np.repeat(self.perturbations.to_numpy(), g),
                PERTURBATION_TYPE: np.repeat(self.perturbation_type, g),
                "gene": np.tile(self.genes.to_numpy(), n),
                "statistic": self.statistic.ravel(),
                "score": self.score.ravel(),
                "mean_difference": self.mean_difference.ravel(),
                "pvalue": self.pvalue.ravel(),
                "qvalue": self.qvalue.ravel(),
            }
        )


def control_rows(interventions: Interventions, control_label: str | None) -> np.ndarray:
    """Boolean mask of the control samples, optionally only those labelled ``control_label``.

    Raises
    ------
    DataContractError
        If there is no control, or ``control_label`` names no control sample.
    """
    control = interventions.is_control
    if control_label is not None:
        labelled = interventions.labels == str(control_label)
        if not (labelled & control).any():
            present = sorted(set(interventions.labels[control].tolist()))[:10]
            hint = (f"control samples are labelled {present}" if present
                    else f"no sample has {IS_CONTROL!r} True")
            extra = (" (those samples are not marked is_control=True)"
                     if labelled.any() else "")
            raise DataContractError(
                f"Control label {control_label!r} not found among the control samples"
                f"{extra}; {hint}. Pass one of those labels, or leave the control label "
                f"unset to use every control."
            )
        control = control & labelled
    if not control.any():
        raise DataContractError(
            f"No control sample: column {IS_CONTROL!r} is False everywhere. Mark the "
            f"non-targeting / untreated samples with is_control=True."
        )
    return control


def differential_expression(
    adata: AnnData,
    *,
    method: str = "t-test",
    layer: str | None = None,
    control_label: str | None = None,
) -> DEResult:
    """Test every perturbation against the control cells, gene by gene.

    Parameters
    ----------
    adata
        Cells (not pseudobulk) following the data contract, with controls.
        Expression is log-normalized, dense or sparse, or a Dask array
        chunked along cells (e.g. from :func:`causalcell.data.read_lazy`):
        the t-test and the mean differences read it once in row blocks on
        the active Dask client (else Dask's threaded scheduler); the
        Wilcoxon test reads it once per block of genes (see
        :func:`rank_sum_test`). The result is in memory.
    method
        ``"t-test"`` (Welch) or ``"wilcoxon"`` (Mann-Whitney U, tie-corrected
        normal approximation).
    layer
        Layer holding the expression; ``None`` uses ``X``.
    control_label
        Use only the control cells with this ``perturbation`` label (e.g.
        ``"non-targeting"`` when several kinds of controls exist); default
        every control.

    Returns
    -------
    DEResult
        One row per perturbation (condition), in order of first appearance.

    Raises
    ------
    DataContractError
        If obs breaks the contract, ``adata`` is pseudobulk (obs has
        ``n_cells``), there are no controls or ``control_label`` is absent,
        no perturbed cell exists, or a Dask expression matrix is chunked
        along genes.
    ParameterError
        If ``method`` is unknown.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, seed=0)
    >>> de = differential_expression(sim.adata)
    >>> de.statistic.shape
    (20, 30)
    """
    if method not in METHODS:
        raise ParameterError(f"method={method!r} is unknown; choose one of {list(METHODS)}.")
    if not isinstance(adata, AnnData):
        raise DataContractError(f"Expected an AnnData object, got {type(adata).__name__}.")
    if "n_cells" in adata.obs.columns:
        raise DataContractError(
            "obs has an 'n_cells' column: these are pseudobulk profiles, but differential "
            "expression needs the individual cells. Pass the cell-level data."
        )
    if layer is not None and layer not in adata.layers:
        raise DataContractError(
            f"Layer {layer!r} not found; available layers: {list(adata.layers.keys())}."
        )
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    control = control_rows(iv, control_label)
    perturbed = ~iv.is_control
    if not perturbed.any():
        raise DataContractError("No perturbed cell: every sample is a control.")
    # Rows: the perturbed conditions in order of first appearance.
    cond_codes, keys = pd.factorize(iv.codes[perturbed])
    groups = np.full(iv.n_samples, -1, dtype=np.int64)
    groups[perturbed] = cond_codes
    X = adata.X if layer is None else adata.layers[layer]
    if is_dask_array(X):
        # Before any pass: the mean differences need whole rows per block.
        check_row_chunks(X, "X" if layer is None else f"layers[{layer!r}]")
    if method == "t-test":
        statistic, pvalue, diff = welch_ttest(X, groups, control, n_groups=len(keys))
        score = statistic
    else:
        statistic, score, pvalue = rank_sum_test(X, groups, control, n_groups=len(keys))
        diff = _mean_difference(X, groups, control, len(keys))
    conditions = iv.conditions.iloc[np.asarray(keys)]
    return DEResult(
        perturbations=pd.Index(conditions.index.to_numpy().astype(str), name="perturbation"),
        perturbation_type=conditions[PERTURBATION_TYPE].to_numpy().astype(str),
        genes=pd.Index(adata.var_names.astype(str)),
        method=method,
        statistic=statistic,
        score=score,
        pvalue=pvalue,
        qvalue=bh_qvalues(pvalue),
        mean_difference=diff,
        n_cells=np.bincount(cond_codes, minlength=len(keys)),
        n_control=int(control.sum()),
    )


def _mean_difference(
    X, groups: np.ndarray, control: np.ndarray, n_groups: int
) -> np.ndarray:
    """Mean of each group minus the control mean, (n_groups, n_genes)."""
    codes = np.where(control, n_groups, groups)
    s1, _ = _group_moments(X, codes, n_groups + 1, squares=False)
    counts = np.bincount(codes[codes >= 0], minlength=n_groups + 1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / counts[:, None]
    return mean[:n_groups] - mean[n_groups]
