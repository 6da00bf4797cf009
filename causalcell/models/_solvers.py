"""Batched exact linear solvers for per-gene regressions with sample exclusion.

:class:`~causalcell.models.ConditionalGRNRegressor` regresses every gene g on
its regulators R_g using only the samples where g is *not* targeted, with
targeted regulators entering at their level T. Fitting one scikit-learn model
per gene repeats the same work thousands of times (copy the columns, center
them, form X^T X). Here the work is shared:

1. **One pass over the samples** (:func:`cross_products`) forms, with
   ``Z`` the expression matrix with targeted entries of known level replaced
   by T, ``W = Z - 1 mu^T`` (a per-gene shift ``mu`` that only improves
   conditioning; taken from the first row block, 0 for sparse X) and ``Y``
   equal to ``W`` with every targeted entry set to 0:

   - ``cross = W_U^T Y`` (regulators x all genes, U = union of all regulator
     sets), the regulator/target cross-products *already without* the
     samples in which each target is targeted; computed as
     ``Y_U^T Y + S_U^T Y`` with S the (sparse) targeted entries of W, so no
     copy of ``W_U`` is made;
   - ``W_U^T W_V`` for the targeted regulators V (where ``Y != W``), so that
     the regulator Gram ``W_U^T W_U`` is available;
   - column sums of ``W_U`` and of ``Y``, and ``sum Y**2``.

   Dense X is read in row blocks (a float64 copy of one block at a time);
   sparse X uses sparse products per row block (never densified whole;
   sparse X denser than 15 % overall is multiplied as dense row blocks).
2. **Per gene**, the regulator Gram is downdated by the few excluded rows
   (those in which g is targeted): ``G_g = W_R^T W_R - V^T V`` with ``V`` the
   regulator values of the excluded rows, and the sums likewise. The target
   side needs no downdate (``Y`` is already zero there), so a gene's
   coefficients never read its own values in the samples that target it:
   exclusion is exact, bit for bit.
3. **Solves are batched**: genes with the same number of regulators are
   stacked and solved in one LAPACK call per stack; genes that share one
   regulator set (a regulator list such as the human TFs) share one
   factorization; when every gene is regressed on all other members of a
   pool, the precision-matrix identity gives every untargeted member's ridge
   regression from one inverse (see :func:`_pool_solve`).

The centred normal equations solved are those of scikit-learn's ``Ridge``
with ``fit_intercept=True`` (unpenalized intercept): with S the scatter
matrix of the included samples about their mean,
``beta = (S_RR + alpha I)^{-1} S_Rg`` and
``intercept = mean_g - mean_R . beta``.

Complexity, with n samples, p genes, u regulators in all, r_g regulators of
gene g and k_g samples targeting g: the pass costs ``2 n u (p + v)`` flops
(v targeted regulators) and ``8 u (p + v)`` bytes; each stacked gene costs
``r_g^3 / 3 + 2 k_g r_g^2`` flops (x4 for ``alpha="gcv"``, which needs an
eigendecomposition); a shared regulator set or pool of size f costs
``f^3`` once. Targeted genes of a large pool are the expensive case
(``f^3`` each): :func:`fit_linear` estimates the cost first and raises a
:class:`~causalcell.errors.ParameterError` when it would not fit in memory
or take hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from causalcell.data._sparse import entry_rows, gather_entries
from causalcell.data.lazy import (
    check_row_chunks,
    is_dask_array,
    map_row_blocks,
    physical_memory,
    row_blocks,
)
from causalcell.errors import DataContractError, ParameterError, PredictionError

__all__ = [
    "CrossProducts",
    "LinearFit",
    "SteadyState",
    "cross_products",
    "dense_block",
    "fit_linear",
    "propagate_linear",
    "regulator_values",
]

# Row blocks of the pass over the samples hold about this many float64 values.
_BLOCK_VALUES = 1 << 22
# Sparse X denser than this is read as dense blocks: BLAS beats sparse products.
_SPARSE_DENSITY = 0.15
# Working memory for one stack of per-gene systems (float64 values).
_STACK_VALUES = 1 << 24
# Cost model for the early feasibility check (2-core machine, BLAS-bound work).
_FLOPS_PER_SECOND = 1e10
MAX_SECONDS = 4 * 3600.0
MAX_MEMORY_FRACTION = 0.8


# --------------------------------------------------------------------------- values
def _as_csr(X: Any) -> sp.csr_array:
    """Sparse X as a csr_array (shares the arrays of a CSR input)."""
    return X if isinstance(X, sp.csr_array) else sp.csr_array(X)


def _entry_lookup(mask: sp.csr_array) -> sp.csr_array:
    """Sparse matrix with the structure of ``mask`` storing entry index + 1.

    Looking up a (row, col) pair gives 0 when it is not a targeted entry and
    otherwise the position of its level in ``levels`` plus one.
    """
    data = np.arange(1, mask.nnz + 1, dtype=np.int64)
    return sp.csr_array((data, mask.indices, mask.indptr), shape=mask.shape)


def regulator_values(
    X: Any,
    mask: sp.csr_array,
    levels: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    lookup: sp.csr_array | None = None,
) -> np.ndarray:
    """Regulator values ``Z[rows, cols]`` (elementwise pairs): T where known.

    A targeted entry with a known level T (knockouts: 0) takes T; a targeted
    entry whose level is unknown (NaN) keeps its measured value; other
    entries are the measured values.

    Parameters
    ----------
    X
        Expression matrix (dense or sparse), samples x genes.
    mask, levels
        Targeted entries (``Interventions.mask``) and their levels (aligned
        with the mask's stored entries, NaN when unknown).
    rows, cols
        Integer arrays of the same shape.
    lookup
        Optional precomputed ``_entry_lookup(mask)``.

    Returns
    -------
    numpy.ndarray
        float64 values with the shape of ``rows``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    shape = rows.shape
    r, c = rows.ravel(), cols.ravel()
    if sp.issparse(X):
        values = np.asarray(_as_csr(X)[r, c], dtype=np.float64).ravel()
    else:
        values = np.asarray(X[r, c], dtype=np.float64)
    if mask.nnz:
        lookup = _entry_lookup(mask) if lookup is None else lookup
        hit = np.asarray(lookup[r, c]).ravel()
        where = np.flatnonzero(hit)
        if where.size:
            level = levels[hit[where] - 1]
            known = ~np.isnan(level)
            values[where[known]] = level[known]
    return values.reshape(shape)


def dense_block(
    X: Any, mask: sp.csr_array, levels: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Dense ``Z[rows][:, cols]`` (a rectangular block) with known levels substituted."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if sp.issparse(X):
        # Select along the compressed axis first (cheap), then the other.
        block = sp.csc_array(X)[:, cols][rows] if X.format == "csc" else _as_csr(X)[rows][:, cols]
        block = block.toarray().astype(np.float64, copy=False)
    else:
        block = np.asarray(X[np.ix_(rows, cols)], dtype=np.float64)
    sub = mask[rows][:, cols].tocoo()
    if sub.nnz:
        # Entry indices of the selected (row, col) pairs, then their levels.
        pairs_rows = rows[sub.row]
        pairs_cols = cols[sub.col]
        idx = np.asarray(_entry_lookup(mask)[pairs_rows, pairs_cols]).ravel() - 1
        level = levels[idx]
        known = ~np.isnan(level)
        block[sub.row[known], sub.col[known]] = level[known]
    return block


# --------------------------------------------------------------------------- the pass
@dataclass
class CrossProducts:
    """Sufficient statistics of all per-gene regressions (see the module docstring).

    ``W = Z - 1 shift^T`` with Z the substituted expression; ``Y`` is ``W``
    with targeted entries zeroed. Regulator quantities are indexed by
    position in :attr:`regulators`; target quantities by gene.
    """

    n: int
    regulators: np.ndarray  # (u,) gene indices
    position: np.ndarray  # (p,) position of a gene in `regulators`, -1 if none
    shift: np.ndarray  # (p,)
    n_included: np.ndarray  # (p,) samples in which the gene is not targeted
    regulator_sums: np.ndarray  # (u,) sum_i W[i, U]
    target_sums: np.ndarray  # (p,) sum_i Y[i, g]
    target_squares: np.ndarray  # (p,) sum_i Y[i, g]^2
    cross: np.ndarray  # (u, p) W_U^T Y
    targeted_gram: np.ndarray  # (u, v) W_U^T W_V for the targeted regulators V
    targeted_column: np.ndarray  # (p,) column of a targeted regulator in targeted_gram
    gathered: sp.csr_array | None = None  # measured X at the `gather` pattern
    weighted_sum: np.ndarray | None = None  # row_weights @ X

    def gram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Regulator Gram entries ``W_U[a]^T W_U[b]`` (a, b: broadcastable positions)."""
        a, b = np.broadcast_arrays(a, b)
        genes_b = self.regulators[b]
        out = self.cross[a, genes_b]
        col = self.targeted_column[genes_b]
        hit = np.nonzero(col >= 0)
        if hit[0].size:
            # Y differs from W only in the columns of targeted genes.
            out[hit] = self.targeted_gram[a[hit], col[hit]]
        return out


def _block_rows(n_cols: int, block_rows: int | None) -> int:
    if block_rows is not None:
        return max(1, int(block_rows))
    return max(64, _BLOCK_VALUES // max(1, n_cols))


def cross_products(
    X: Any,
    mask: sp.csr_array,
    levels: np.ndarray,
    regulators: np.ndarray,
    *,
    block_rows: int | None = None,
    gather: sp.csr_array | None = None,
    row_weights: np.ndarray | None = None,
    verbose: bool = False,
) -> CrossProducts:
    """One pass over the samples: the statistics every per-gene solve needs.

    Parameters
    ----------
    X
        Expression, samples x genes: a NumPy array, a SciPy sparse matrix,
        or a Dask array chunked along samples (its blocks are processed
        where Dask computes, see :func:`causalcell.data.lazy.map_row_blocks`,
        and only the statistics come back).
    mask, levels
        ``Interventions.mask`` (sparse bool) and the levels of its entries
        (NaN when unknown: the measured value is used for the regulator side).
    regulators
        Sorted gene indices of every gene that regulates some gene (U).
    block_rows
        Rows per block of in-memory X (default: about 4M values per block;
        a Dask array's own chunks are its blocks).
    gather
        Sparse (samples x genes) pattern whose measured values are collected
        during the pass into :attr:`CrossProducts.gathered` (for out-of-core
        X, where reading single entries later would cost a pass each).
    row_weights
        Per-sample weights; :attr:`CrossProducts.weighted_sum` is then
        ``row_weights @ X`` (e.g. the control mean), computed in the pass.
    verbose
        Show a progress bar.

    Returns
    -------
    CrossProducts

    Raises
    ------
    DataContractError
        If X holds NaN or infinite values (checked per block for Dask X), or
        a Dask X is chunked along genes.
    """
    n, p = X.shape
    mask = sp.csr_array(mask, dtype=bool)
    mask.sort_indices()
    regulators = np.asarray(regulators, dtype=np.int64)
    u = len(regulators)
    position = np.full(p, -1, dtype=np.int64)
    position[regulators] = np.arange(u)
    n_targeted = np.bincount(mask.indices, minlength=p)
    targeted_regs = regulators[n_targeted[regulators] > 0]
    targeted_column = np.full(p, -1, dtype=np.int64)
    targeted_column[targeted_regs] = np.arange(len(targeted_regs))
    lay = _Layout(regulators, position, targeted_regs, np.zeros(p))
    sums = _Sums(np.zeros(u), np.zeros(p), np.zeros(p), np.zeros((u, p)),
                 np.zeros((u, len(targeted_regs))))
    gathered = weighted = None
    if is_dask_array(X):
        sums, gathered, weighted = _dask_pass(X, mask, levels, lay, gather, row_weights, verbose)
    else:
        sparse_path = sp.issparse(X) and _density(X) <= _SPARSE_DENSITY
        step = _block_rows(p, block_rows)
        if not sparse_path:
            stop = min(step, n)
            lay.shift = _first_block_shift(_dense_rows(X, 0, stop),
                                           _Entries.of(mask, levels, 0, stop))
        _memory_pass(X, mask, levels, lay, sums, step, sparse_path, verbose)
        if gather is not None:
            g = sp.csr_array(gather, dtype=bool)
            g.sort_indices()
            values = gather_entries(X, entry_rows(g.indptr), g.indices)
            gathered = sp.csr_array((values, g.indices, g.indptr), shape=(n, p))
        if row_weights is not None:
            weighted = np.asarray(_as_csr(X).T @ row_weights if sp.issparse(X)
                                  else np.asarray(X, dtype=np.float64).T @ row_weights).ravel()
    return CrossProducts(
        n=n,
        regulators=regulators,
        position=position,
        shift=lay.shift,
        n_included=n - n_targeted,
        regulator_sums=sums.regulator_sums,
        target_sums=sums.target_sums,
        target_squares=sums.target_squares,
        cross=sums.cross,
        targeted_gram=sums.targeted_gram,
        targeted_column=targeted_column,
        gathered=gathered,
        weighted_sum=weighted,
    )


@dataclass
class _DaskPart:
    """What one Dask block sends back: its sums, gathered values, weighted row sum."""

    sums: _Sums
    gathered: list[np.ndarray]
    weighted: np.ndarray | None

    def combine(self, other: _DaskPart) -> _DaskPart:
        self.sums += other.sums
        self.gathered.extend(other.gathered)
        if self.weighted is not None:
            self.weighted += other.weighted
        return self


def _finite_block(block: Any, start: int) -> None:
    values = block.data if sp.issparse(block) else block
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        if sp.issparse(block):
            coo = sp.coo_array(block)
            row = int(coo.row[~np.isfinite(coo.data)][0])
        else:
            row = int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
        raise DataContractError(
            f"X contains NaN or infinite values, first in sample {start + row} (row index). "
            f"Expression must be finite: impute or drop those cells / genes first."
        )


def _dask_block(
    block: Any, start: int, stop: int, e: _Entries, lay: _Layout, g_rows: np.ndarray,
    g_cols: np.ndarray, w_rows: np.ndarray | None, w: np.ndarray | None,
) -> _DaskPart:
    """Statistics of one Dask block, computed on the worker that holds it."""
    _finite_block(block, start)
    sparse = sp.issparse(block)
    if sparse:
        block = sp.csr_array(block)
    gathered = gather_entries(block, g_rows, g_cols)
    weighted = None
    if w is not None:
        sub = block[w_rows]
        weighted = np.asarray(sub.T @ w if sparse else np.asarray(sub, np.float64).T @ w).ravel()
    sparse_path = sparse and block.nnz <= _SPARSE_DENSITY * max(1, block.shape[0] * block.shape[1])
    return _DaskPart(_block_sums(block, e, lay, sparse_path), [gathered], weighted)


def _dask_pass(
    X: Any, mask: sp.csr_array, levels: np.ndarray, lay: _Layout,
    gather: sp.csr_array | None, row_weights: np.ndarray | None, verbose: bool,
) -> tuple[_Sums, sp.csr_array | None, np.ndarray | None]:
    """The pass over a Dask array: one task per row block, statistics folded in order."""
    check_row_chunks(X)
    n, p = X.shape
    # Sparse blocks keep shift 0 (a shift would densify them); dense blocks are
    # centred on the first block, as in memory.
    if not sp.issparse(X._meta):
        first = row_blocks(X)[0]
        block = X.blocks[0].compute()
        _finite_block(block, 0)
        lay.shift = _first_block_shift(_as_dense(block), _Entries.of(mask, levels, *first))
    g = sp.csr_array((n, p), dtype=bool) if gather is None else sp.csr_array(gather, dtype=bool)
    g.sort_indices()
    w = None if row_weights is None else np.asarray(row_weights, dtype=np.float64)

    def block_args(start: int, stop: int) -> tuple[Any, ...]:
        lo, hi = g.indptr[start], g.indptr[stop]
        g_rows = np.repeat(np.arange(stop - start), np.diff(g.indptr[start : stop + 1]))
        if w is None:
            w_rows, w_b = None, None
        else:
            w_rows = np.flatnonzero(w[start:stop])
            w_b = w[start:stop][w_rows]
        return (_Entries.of(mask, levels, start, stop), lay, g_rows, g.indices[lo:hi], w_rows,
                w_b)

    total = map_row_blocks(_dask_block, X, block_args=block_args, combine=_DaskPart.combine,
                           verbose=verbose, desc="Gram (sample blocks)")
    gathered = None
    if gather is not None:
        data = np.concatenate(total.gathered) if total.gathered else np.zeros(0)
        gathered = sp.csr_array((data, g.indices, g.indptr), shape=(n, p))
    return total.sums, gathered, total.weighted


def _density(X: Any) -> float:
    n, p = X.shape
    return X.nnz / max(1, n * p)


def _dense_rows(X: Any, start: int, stop: int) -> np.ndarray:
    """Rows start:stop of X as a new float64 array."""
    return _as_dense(X[start:stop])


def _as_dense(block: Any) -> np.ndarray:
    """A block of rows (NumPy or SciPy sparse) as a new float64 array."""
    if sp.issparse(block):
        return block.toarray().astype(np.float64, copy=False)
    return np.array(block, dtype=np.float64)


@dataclass
class _Entries:
    """The targeted entries of one row block: block-local rows, genes, levels."""

    rows: np.ndarray
    cols: np.ndarray
    levels: np.ndarray
    known: np.ndarray

    @classmethod
    def of(cls, mask: sp.csr_array, levels: np.ndarray, start: int, stop: int) -> _Entries:
        lo, hi = mask.indptr[start], mask.indptr[stop]
        rows = np.repeat(np.arange(stop - start), np.diff(mask.indptr[start : stop + 1]))
        lv = levels[lo:hi]
        return cls(rows, mask.indices[lo:hi].astype(np.int64), lv, ~np.isnan(lv))


@dataclass
class _Layout:
    """What every block's statistics are indexed by (shared by all blocks)."""

    regulators: np.ndarray  # U
    position: np.ndarray  # position of a gene in U, -1 if none
    targeted_regs: np.ndarray  # V
    shift: np.ndarray  # (p,); zeros on the sparse path


@dataclass
class _Sums:
    """Additive statistics of some rows (one block, or all blocks summed)."""

    regulator_sums: np.ndarray
    target_sums: np.ndarray
    target_squares: np.ndarray
    cross: np.ndarray
    targeted_gram: np.ndarray

    def __iadd__(self, other: _Sums) -> _Sums:
        self.regulator_sums += other.regulator_sums
        self.target_sums += other.target_sums
        self.target_squares += other.target_squares
        self.cross += other.cross
        self.targeted_gram += other.targeted_gram
        return self


def _first_block_shift(Z: np.ndarray, e: _Entries) -> np.ndarray:
    """Per gene, the mean over the block's samples that do not target it.

    Conditioning only; it never reads a gene's values where it is targeted.
    """
    n, p = Z.shape
    Z = Z.copy()
    Z[e.rows, e.cols] = 0.0
    counts = n - np.bincount(e.cols, minlength=p).astype(np.float64)
    return np.divide(Z.sum(axis=0), counts, out=np.zeros(p), where=counts > 0)


def _dense_sums(Z: np.ndarray, e: _Entries, lay: _Layout) -> _Sums:
    """Statistics of one dense block; ``Z`` (float64, raw values) is overwritten."""
    r, c, k = e.rows, e.cols, e.known
    Z[r[k], c[k]] = e.levels[k]
    Z -= lay.shift
    # W = Y + S with S the targeted entries only (sparse), so that
    # W_U^T Y = Y_U^T Y + S_U^T Y without a copy of W_U.
    values = Z[r, c]
    WV = Z[:, lay.targeted_regs]
    Z[r, c] = 0.0  # Z is now Y
    U = lay.regulators
    YU = Z if len(U) == Z.shape[1] else Z[:, U]  # U = every gene: Y_U is Y itself
    in_u = lay.position[c] >= 0
    S_U = sp.csr_array(
        (values[in_u], (lay.position[c[in_u]], r[in_u])), shape=(len(U), Z.shape[0])
    )
    cross = YU.T @ Z
    cross += S_U @ Z
    tg = YU.T @ WV
    tg += S_U @ WV
    reg_sums = YU.sum(axis=0)
    reg_sums += np.bincount(lay.position[c[in_u]], weights=values[in_u], minlength=len(U))
    return _Sums(reg_sums, Z.sum(axis=0), np.einsum("ij,ij->j", Z, Z), cross, tg)


def _sparse_sums(Xb: Any, e: _Entries, lay: _Layout) -> _Sums:
    """Statistics of one sparse block (no shift: it would densify)."""
    Xb = sp.csr_array(Xb).astype(np.float64)
    p = Xb.shape[1]
    Mb = sp.csr_array((np.ones(len(e.rows)), (e.rows, e.cols)), shape=Xb.shape)
    # Y: the measured values with every targeted entry removed.
    Yb = (Xb - Xb * Mb).tocsr()
    Yb.eliminate_zeros()
    # Z: Y plus the regulator value of each targeted entry: T when known,
    # otherwise the measured value.
    measured = (
        np.asarray(Xb[e.rows, e.cols], dtype=np.float64).ravel() if len(e.rows) else np.zeros(0)
    )
    value = np.where(e.known, e.levels, measured)
    Zb = (Yb + sp.csr_array((value, (e.rows, e.cols)), shape=Xb.shape)).tocsr()
    ZU = Zb[:, lay.regulators]
    ZUt = ZU.T.tocsr()
    v = len(lay.targeted_regs)
    return _Sums(
        np.asarray(ZU.sum(axis=0)).ravel(),
        np.bincount(Yb.indices, weights=Yb.data, minlength=p),
        np.bincount(Yb.indices, weights=Yb.data**2, minlength=p),
        (ZUt @ Yb).toarray(),
        (ZUt @ Zb[:, lay.targeted_regs]).toarray() if v else np.zeros((len(lay.regulators), 0)),
    )


def _block_sums(block: Any, e: _Entries, lay: _Layout, sparse_path: bool) -> _Sums:
    if sparse_path:
        return _sparse_sums(block, e, lay)
    return _dense_sums(_as_dense(block), e, lay)


def _memory_pass(
    X: Any, mask: sp.csr_array, levels: np.ndarray, lay: _Layout, sums: _Sums, step: int,
    sparse_path: bool, verbose: bool,
) -> None:
    n = X.shape[0]
    if sparse_path:
        X = _as_csr(X)
    for start in tqdm(
        range(0, n, step), desc="Gram (samples)", unit="block", disable=not verbose, leave=False
    ):
        stop = min(start + step, n)
        sums += _block_sums(X[start:stop], _Entries.of(mask, levels, start, stop), lay,
                            sparse_path)


# --------------------------------------------------------------------------- solutions
@dataclass
class LinearFit:
    """The fitted per-gene linear models.

    Attributes
    ----------
    coef : scipy.sparse.csr_array
        (p, p), ``coef[r, g]`` the weight of regulator r in gene g's model;
        the stored entries are exactly the fitted (regulator, target) pairs.
    intercept : numpy.ndarray
        (p,)
    alpha : numpy.ndarray
        (p,) ridge penalty used per gene (0 for OLS).
    n_samples : numpy.ndarray
        (p,) samples used per gene.
    rss : numpy.ndarray
        (p,) residual sum of squares.
    stderr : scipy.sparse.csr_array or None
        Standard errors with the structure of ``coef`` (OLS inference only).
    dof : numpy.ndarray
        (p,) residual degrees of freedom ``n_samples - r - 1``.
    """

    coef: sp.csr_array
    intercept: np.ndarray
    alpha: np.ndarray
    n_samples: np.ndarray
    rss: np.ndarray
    stderr: sp.csr_array | None
    dof: np.ndarray
    samples: CrossProducts | None = None


class _Collector:
    """Accumulates per-gene results of the different solve paths."""

    def __init__(self, p: int, inference: bool) -> None:
        self.p = p
        self.inference = inference
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.ses: list[np.ndarray] = []
        self.intercept = np.zeros(p)
        self.alpha = np.zeros(p)
        self.rss = np.zeros(p)
        self.n_samples = np.zeros(p, dtype=np.int64)
        self.n_regs = np.zeros(p, dtype=np.int64)

    def add(
        self,
        genes: np.ndarray,
        regs: np.ndarray,
        beta: np.ndarray,
        *,
        intercept,
        alpha,
        rss,
        n_samples,
        diag: np.ndarray | None = None,
    ) -> None:
        """Record genes (m,) with regulators ``regs`` (m, r) and coefficients (m, r).

        ``diag`` (broadcastable to (m, r)): the diagonal of ``S_RR^{-1}``; with
        it, OLS standard errors ``sqrt(diag * rss / (n - r - 1))`` are stored.
        """
        m, r = beta.shape
        se = None
        if diag is not None:
            sigma2 = rss / (np.asarray(n_samples, dtype=np.float64) - r - 1)
            se = np.sqrt(np.maximum(diag, 0.0) * sigma2[:, None])
        self.rows.append(regs.reshape(-1))
        self.cols.append(np.repeat(genes, r))
        self.vals.append(beta.reshape(-1))
        if self.inference:
            self.ses.append(se.reshape(-1) if se is not None else np.full(m * r, np.nan))
        self.intercept[genes] = intercept
        self.alpha[genes] = alpha
        self.rss[genes] = rss
        self.n_samples[genes] = n_samples
        self.n_regs[genes] = r

    def result(self) -> LinearFit:
        p = self.p

        def build(values: list[np.ndarray]) -> sp.csr_array:
            rows = np.concatenate(self.rows) if self.rows else np.zeros(0, np.int64)
            cols = np.concatenate(self.cols) if self.cols else np.zeros(0, np.int64)
            data = np.concatenate(values) if values else np.zeros(0)
            # Distinct (row, col) pairs: COO -> CSR only sorts, zeros stay stored.
            return sp.csr_array((data, (rows, cols)), shape=(p, p))

        coef = build(self.vals)
        stderr = build(self.ses) if self.inference else None
        dof = self.n_samples - self.n_regs - 1
        return LinearFit(
            coef=coef,
            intercept=self.intercept,
            alpha=self.alpha,
            n_samples=self.n_samples,
            rss=self.rss,
            stderr=stderr,
            dof=dof,
        )


@dataclass(frozen=True)
class _Solver:
    method: Literal["ridge", "ols"]
    alpha: float
    alphas: np.ndarray | None  # GCV choice among these when not None
    inference: bool


def _gcv_choice(
    lam: np.ndarray, z: np.ndarray, syy: np.ndarray, n: np.ndarray, alphas: np.ndarray
) -> np.ndarray:
    """Index of the GCV-best alpha per system (Golub, Heath & Wahba 1979).

    For centred data with eigendecomposition S_RR = Q diag(lam) Q^T and
    z = Q^T S_Rg (``lam``, ``z``: (m, r)), ridge with penalty a has
    ``RSS = S_gg - sum z^2 (lam + 2a) / (lam + a)^2`` and hat-matrix trace
    ``df = 1 + sum lam / (lam + a)`` (the 1: the unpenalized intercept);
    ``GCV = n RSS / (n - df)^2``. Nothing here reads the samples.
    """
    a = alphas[None, :, None]
    lam3 = lam[:, None, :]
    denom = lam3 + a
    rss = syy[:, None] - np.sum(z[:, None, :] ** 2 * (lam3 + 2 * a) / denom**2, axis=2)
    df = 1.0 + np.sum(lam3 / denom, axis=2)
    resid_df = n[:, None] - df
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(resid_df > 0, n[:, None] * np.maximum(rss, 0.0) / resid_df**2, np.inf)
    return np.argmin(score, axis=1)


def _solve_systems(
    S: np.ndarray, b: np.ndarray, syy: np.ndarray, n: np.ndarray, solver: _Solver
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Solve stacked centred systems S (m, r, r), b (m, r).

    Returns beta (m, r), alpha (m,), rss (m,), and the diagonal of S^{-1}
    (m, r) for OLS inference (else None).
    """
    m, r = b.shape
    if solver.method == "ols":
        try:
            np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            raise _singular_error() from None
        inv = np.linalg.inv(S)
        beta = np.einsum("mij,mj->mi", inv, b)
        rss = syy - np.einsum("mi,mi->m", beta, b)
        diag = np.diagonal(inv, axis1=1, axis2=2).copy() if solver.inference else None
        return beta, np.zeros(m), rss, diag
    if solver.alphas is None:
        A = S.copy()
        A[:, np.arange(r), np.arange(r)] += solver.alpha
        beta = np.linalg.solve(A, b[..., None])[..., 0]
        alpha = np.full(m, solver.alpha)
    else:
        lam, Q = np.linalg.eigh(S)
        lam = np.maximum(lam, 0.0)
        z = np.einsum("mij,mi->mj", Q, b)
        choice = _gcv_choice(lam, z, syy, n, solver.alphas)
        alpha = solver.alphas[choice]
        beta = np.einsum("mij,mj->mi", Q, z / (lam + alpha[:, None]))
    # RSS = S_gg - 2 beta.b + beta^T S beta
    Sbeta = np.einsum("mij,mj->mi", S, beta)
    rss = syy - 2 * np.einsum("mi,mi->m", beta, b) + np.einsum("mi,mi->m", beta, Sbeta)
    return beta, alpha, rss, None


def _singular_error() -> ParameterError:
    return ParameterError(
        "regressor='ols': a gene's regulator matrix is singular (collinear regulators, or "
        "fewer samples than regulators). Use regressor='ridge' with alpha > 0, or a network "
        "with fewer regulators per gene."
    )


def _stack_chunks(m: int, r: int, k_max: int, factor: int) -> int:
    """Genes per stack so that a stack's arrays stay within the working budget."""
    per_gene = factor * r * r + k_max * r + 8 * r
    return max(1, _STACK_VALUES // max(1, per_gene))


def _excluded_rows(
    excl_indptr: np.ndarray, excl_rows: np.ndarray, genes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Padded (m, k_max) matrix of the rows targeting each gene (-1 padding)."""
    counts = excl_indptr[genes + 1] - excl_indptr[genes]
    k_max = int(counts.max(initial=0))
    out = np.full((len(genes), k_max), -1, dtype=np.int64)
    total = int(counts.sum())
    if total:
        which = np.repeat(np.arange(len(genes)), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        offset = np.arange(total) - starts
        out[which, offset] = excl_rows[np.repeat(excl_indptr[genes], counts) + offset]
    return out, counts


def _stack_solve(
    ctx: _Context, genes: np.ndarray, regs: np.ndarray, solver: _Solver, out: _Collector
) -> None:
    """Build and solve the systems of genes (m,) with regulators regs (m, r)."""
    cp = ctx.cp
    pos = cp.position[regs]
    G = cp.gram(pos[:, :, None], pos[:, None, :])
    s_r = cp.regulator_sums[pos]
    b = cp.cross[pos, genes[:, None]]
    n_g = cp.n_included[genes].astype(np.float64)
    rows, counts = _excluded_rows(ctx.excl_indptr, ctx.excl_rows, genes)
    if counts.any():
        # Downdate: remove the excluded rows' regulator values (never the target's).
        valid = rows >= 0
        rr = np.broadcast_to(rows[:, :, None], (*rows.shape, regs.shape[1]))
        cc = np.broadcast_to(regs[:, None, :], rr.shape)
        V = np.zeros(rr.shape)
        sel = np.broadcast_to(valid[:, :, None], rr.shape)
        V[sel] = regulator_values(ctx.X, ctx.mask, ctx.levels, rr[sel], cc[sel], ctx.lookup)
        V[sel] -= np.broadcast_to(cp.shift[regs][:, None, :], rr.shape)[sel]
        G = G - np.einsum("mki,mkj->mij", V, V, optimize=True)
        s_r = s_r - V.sum(axis=1)
    s_y = cp.target_sums[genes]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_n = np.where(n_g > 0, 1.0 / n_g, 0.0)
    S = G - s_r[:, :, None] * s_r[:, None, :] * inv_n[:, None, None]
    S = 0.5 * (S + S.transpose(0, 2, 1))
    rhs = b - s_r * (s_y * inv_n)[:, None]
    syy = cp.target_squares[genes] - s_y**2 * inv_n
    beta, alpha, rss, diag = _solve_systems(S, rhs, syy, n_g, solver)
    mean_r = cp.shift[regs] + s_r * inv_n[:, None]
    mean_y = cp.shift[genes] + s_y * inv_n
    intercept = mean_y - np.einsum("mi,mi->m", mean_r, beta)
    out.add(genes, regs, beta, intercept=intercept, alpha=alpha, rss=rss,
            n_samples=cp.n_included[genes], diag=diag)


@dataclass
class _Context:
    X: Any
    mask: sp.csr_array
    levels: np.ndarray
    lookup: sp.csr_array
    cp: CrossProducts
    excl_indptr: np.ndarray
    excl_rows: np.ndarray


def _solve_by_size(
    ctx: _Context,
    genes: np.ndarray,
    regs_of: Any,
    sizes: np.ndarray,
    solver: _Solver,
    out: _Collector,
    verbose: bool,
) -> None:
    """Stacked solves of ``genes`` grouped by regulator count.

    Genes that are never targeted and targeted genes (which need downdates,
    sorted by their number of excluded rows to limit padding) are stacked
    separately. ``regs_of(genes_chunk, r)`` returns the (m, r) regulator
    matrix.
    """
    counts = ctx.excl_indptr[genes + 1] - ctx.excl_indptr[genes]
    order = np.lexsort((counts, counts > 0, sizes))
    genes, sizes, counts = genes[order], sizes[order], counts[order]
    key = sizes * 2 + (counts > 0)
    bounds = np.flatnonzero(np.diff(key)) + 1
    factor = 3 if solver.alphas is None else 5
    work = []
    for grp in np.split(np.arange(len(genes)), bounds) if len(genes) else []:
        r = int(sizes[grp[0]])
        i = 0
        while i < len(grp):  # chunks (not genes): sized by the chunk's largest exclusion
            guess = _stack_chunks(len(grp), r, int(counts[grp[i]]), factor)
            last = grp[min(i + guess, len(grp)) - 1]
            step = _stack_chunks(len(grp), r, int(counts[last]), factor)
            work.append((grp[i : i + step], r))
            i += step
    # Small systems: LAPACK per matrix is faster single-threaded (no thread start-up).
    threads = 1 if int(sizes.max(initial=0)) < 256 else None
    with threadpool_limits(limits=threads):
        for chunk, r in tqdm(
            work, desc="Solving genes", unit="stack", disable=not verbose, leave=False
        ):
            g = genes[chunk]
            _stack_solve(ctx, g, regs_of(g, r), solver, out)


def _shared_solve(
    ctx: _Context, genes: np.ndarray, pool: np.ndarray, solver: _Solver, out: _Collector
) -> None:
    """Untargeted genes (not in the pool) regressed on the whole pool: one factorization."""
    cp = ctx.cp
    pos = cp.position[pool]
    n = float(cp.n)
    s_r = cp.regulator_sums[pos]
    S = cp.gram(pos[:, None], pos[None, :]) - np.outer(s_r, s_r) / n
    S = 0.5 * (S + S.T)
    s_y = cp.target_sums[genes]
    B = cp.cross[pos][:, genes] - np.outer(s_r, s_y) / n  # (f, m)
    syy = cp.target_squares[genes] - s_y**2 / n
    m, f = len(genes), len(pool)
    diag = None
    if solver.method == "ols" or solver.alphas is None:
        a = 0.0 if solver.method == "ols" else solver.alpha
        try:
            factor = la.cho_factor(S + a * np.eye(f), lower=True)
        except la.LinAlgError:
            raise _singular_error() from None
        beta = la.cho_solve(factor, B).T  # (m, f)
        alpha = np.full(m, a)
        if solver.inference:
            diag = np.diag(la.cho_solve(factor, np.eye(f)))
    else:
        lam, Q = np.linalg.eigh(S)
        lam = np.maximum(lam, 0.0)
        z = (Q.T @ B).T  # (m, f)
        choice = _gcv_choice(np.broadcast_to(lam, z.shape), z, syy, np.full(m, n), solver.alphas)
        alpha = solver.alphas[choice]
        beta = (z / (lam[None, :] + alpha[:, None])) @ Q.T
    # RSS = S_gg - 2 beta.b + beta^T S beta
    rss = syy - 2 * np.einsum("mf,fm->m", beta, B) + np.einsum("mf,mf->m", beta, beta @ S)
    mean_r = cp.shift[pool] + s_r / n
    intercept = cp.shift[genes] + s_y / n - beta @ mean_r
    out.add(genes, np.broadcast_to(pool, (m, f)), beta, intercept=intercept, alpha=alpha,
            rss=rss, n_samples=cp.n_included[genes],
            diag=None if diag is None else diag[None, :])


def _pool_solve(
    ctx: _Context, genes: np.ndarray, pool: np.ndarray, solver: _Solver, out: _Collector
) -> None:
    """Untargeted pool members, each regressed on all other pool members.

    Precision-matrix identity: with A = S_FF + a I over the pool F and
    Theta = A^{-1}, the ridge solution of g on R = F minus g is
    ``beta = -Theta[R, g] / Theta[g, g]``, because A_RR beta = S_Rg is the
    first block row of A Theta[:, g] = e_g after dividing by -Theta[g, g]
    (the diagonal entry A_gg does not enter). One f^3 inverse serves all f
    genes instead of f solves of size f - 1. For ``alpha="gcv"`` the
    eigendecomposition S_FF = Q diag(lam) Q^T gives, per alpha and for all g
    at once, Theta_gg, (Theta S)_gg and |Theta[:, g]|^2 and from them RSS and
    the hat-matrix trace of every leave-g-out regression (via
    A_RR^{-1} = Theta_RR - Theta_Rg Theta_gR / Theta_gg).
    """
    cp = ctx.cp
    pos_all = cp.position[pool]
    n = float(cp.n)
    s_r = cp.regulator_sums[pos_all]
    S = cp.gram(pos_all[:, None], pos_all[None, :]) - np.outer(s_r, s_r) / n
    S = 0.5 * (S + S.T)
    f = len(pool)
    cols = np.searchsorted(pool, genes)  # positions of the genes in the pool
    m = len(genes)
    sgg = np.diag(S)[cols]
    if solver.method == "ols" or solver.alphas is None:
        a = 0.0 if solver.method == "ols" else solver.alpha
        try:
            factor = la.cho_factor(S + a * np.eye(f), lower=True)
        except la.LinAlgError:
            raise _singular_error() from None
        E = np.zeros((f, m))
        E[cols, np.arange(m)] = 1.0
        theta = la.cho_solve(factor, E)  # (f, m): Theta[:, genes]
        alpha = np.full(m, a)
        full_theta = la.cho_solve(factor, np.eye(f)) if solver.inference else None
    else:
        lam, Q = np.linalg.eigh(S)
        lam = np.maximum(lam, 0.0)
        Q2 = Q[cols] ** 2  # (m, f): Q_gi^2
        a = solver.alphas[:, None]  # (k, 1)
        d1 = 1.0 / (lam[None, :] + a)  # (k, f)
        t_gg = Q2 @ d1.T  # (m, k)
        ts_gg = Q2 @ (lam[None, :] * d1).T
        t_sq = Q2 @ (d1**2).T
        tr = d1.sum(axis=1)[None, :]  # tr(Theta)
        beta_b = -(ts_gg - t_gg * sgg[:, None]) / t_gg
        beta_sq = (t_sq - t_gg**2) / t_gg**2
        rss = sgg[:, None] - beta_b - a.T * beta_sq
        tr_rr = tr - t_gg - (t_sq - t_gg**2) / t_gg
        df = 1.0 + (f - 1) - a.T * tr_rr
        resid_df = n - df
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(resid_df > 0, n * np.maximum(rss, 0.0) / resid_df**2, np.inf)
        choice = np.argmin(score, axis=1)
        alpha = solver.alphas[choice]
        theta = np.empty((f, m))
        for j in np.unique(choice):  # one product per distinct chosen alpha
            sel = np.flatnonzero(choice == j)
            theta[:, sel] = (Q * (1.0 / (lam + solver.alphas[j]))) @ Q[cols[sel]].T
        full_theta = None
    t_gg = theta[cols, np.arange(m)]
    # Coefficients of g on every other pool member: -Theta[R, g] / Theta[g, g].
    keep = np.ones((m, f), dtype=bool)
    keep[np.arange(m), cols] = False
    beta_full = -(theta / t_gg[None, :]).T  # (m, f), entry g itself dropped below
    beta = beta_full[keep].reshape(m, f - 1)
    regs = np.broadcast_to(pool, (m, f))[keep].reshape(m, f - 1)
    b = S[:, cols].T[keep].reshape(m, f - 1)
    # RSS = S_gg - 2 beta.b + beta^T S_RR beta, with S_RR beta from the full S.
    Sb_full = (beta_full * keep) @ S  # (m, f)
    rss = (
        sgg
        - 2 * np.einsum("mi,mi->m", beta, b)
        + np.einsum("mi,mi->m", beta, Sb_full[keep].reshape(m, f - 1))
    )
    mean_all = cp.shift[pool] + s_r / n
    mean_r = np.broadcast_to(mean_all, (m, f))[keep].reshape(m, f - 1)
    intercept = mean_all[cols] - np.einsum("mi,mi->m", mean_r, beta)
    diag = None
    if full_theta is not None:
        # diag((S_RR)^{-1}) = diag(Theta_RR) - Theta_Rg^2 / Theta_gg
        dg = np.diag(full_theta)[None, :] - (theta**2).T / t_gg[:, None]
        diag = dg[keep].reshape(m, f - 1)
    out.add(genes, regs, beta, intercept=intercept, alpha=alpha, rss=rss,
            n_samples=cp.n_included[genes], diag=diag)


# --------------------------------------------------------------------------- entry point
def _format_bytes(b: float) -> str:
    return f"{b / 2**30:.1f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"


def _check_cost(
    n: int,
    p: int,
    u: int,
    v: int,
    stacked_flops: float,
    pool_flops: float,
    coef_entries: float,
    pool_size: int,
) -> None:
    """Fail early when the fit would not fit in memory or would take hours."""
    memory = 8.0 * u * (p + v) + 8.0 * 3 * pool_size**2 + 16.0 * coef_entries
    memory += 8.0 * (_BLOCK_VALUES * 3 + _STACK_VALUES * 2)
    flops = 2.0 * n * u * (p + v) + stacked_flops + pool_flops
    seconds = flops / _FLOPS_PER_SECOND
    limit = MAX_MEMORY_FRACTION * physical_memory()
    if memory > limit or seconds > MAX_SECONDS:
        raise ParameterError(
            f"Fitting {p} genes on {u} regulators from {n} samples would need about "
            f"{_format_bytes(memory)} of memory (limit {_format_bytes(limit)}) and "
            f"{flops:.2g} floating-point operations (about {seconds / 60:.0f} min at "
            f"{_FLOPS_PER_SECOND:.0e}/s; limit {MAX_SECONDS / 60:.0f} min). Give a network "
            f"(fit(adata, network)) or a shorter regulators= list (e.g. the transcription "
            f"factors, causalcell.datasets.load_tf_names()), or fit on pseudobulk rows "
            f"(causalcell.data.pseudobulk) to reduce the per-gene downdates."
        )


def fit_linear(
    X: Any,
    mask: sp.csr_array,
    levels: np.ndarray,
    *,
    parents: sp.csc_array | None = None,
    pool: np.ndarray | None = None,
    method: Literal["ridge", "ols"] = "ridge",
    alpha: float = 1.0,
    alphas: np.ndarray | None = None,
    inference: bool = False,
    block_rows: int | None = None,
    row_weights: np.ndarray | None = None,
    verbose: bool = False,
    names: Any = None,
) -> LinearFit:
    """Fit every gene's ridge / OLS regression on its regulators, exactly.

    For each gene g: the samples in which g is targeted are left out; the
    regulators take their level T where they are targeted with a known level
    (their measured value otherwise); the intercept is not penalized. The
    result equals a per-gene ``sklearn.linear_model.Ridge`` /
    ``LinearRegression`` fit on those samples (see the module docstring for
    how it is computed).

    Parameters
    ----------
    X
        Expression, samples x genes: a NumPy array, a SciPy sparse matrix or
        a Dask array chunked along samples (read once, block by block, on the
        active Dask client or the threaded scheduler; the values the
        per-gene downdates need are collected during that pass).
    mask, levels
        ``Interventions.mask`` and ``Interventions.levels`` of the samples.
    parents
        (p, p) sparse matrix whose nonzero entries (r, g) are the regulators r
        of g (network mode). The diagonal is ignored.
    pool
        Gene indices: every gene is regressed on all pool members but itself
        (regulator-list mode). Exactly one of ``parents`` and ``pool``.
    method
        ``"ridge"`` or ``"ols"`` (no penalty).
    alpha
        Ridge penalty on the sum of squares (scikit-learn's ``Ridge`` scale).
    alphas
        When given, choose the penalty per gene among these by generalized
        cross-validation (``alpha`` is then ignored).
    inference
        Also compute OLS standard errors (``method="ols"`` only).
    block_rows
        Rows per block of the pass over the samples.
    row_weights
        Dask X only: also compute ``row_weights @ X`` in the same pass
        (``LinearFit.samples.weighted_sum``).
    verbose
        Progress bars.
    names
        Gene names, for messages.

    Returns
    -------
    LinearFit

    Raises
    ------
    ParameterError
        Invalid arguments, a singular OLS system, or a fit too large for this
        machine (with the expected memory and time, and what to do instead).
    """
    n, p = X.shape
    if (parents is None) == (pool is None):
        raise ParameterError("fit_linear: give exactly one of parents= and pool=.")
    if method not in ("ridge", "ols"):
        raise ParameterError(f"fit_linear: method must be 'ridge' or 'ols', got {method!r}.")
    if method == "ridge" and alphas is None and not (math.isfinite(alpha) and alpha >= 0):
        raise ParameterError(f"alpha must be a finite number >= 0, got {alpha!r}.")
    if alphas is not None:
        alphas = np.asarray(alphas, dtype=np.float64).ravel()
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas < 0):
            raise ParameterError(f"alphas must be finite numbers >= 0, got {alphas!r}.")
    solver = _Solver(
        method=method,
        alpha=float(alpha) if method == "ridge" else 0.0,
        alphas=alphas if method == "ridge" else None,
        inference=inference and method == "ols",
    )
    mask = sp.csr_array(mask, dtype=bool)
    mask.sort_indices()
    levels = np.asarray(levels, dtype=np.float64)
    excl = mask.tocsc()
    excl.sort_indices()
    n_targeted = np.diff(excl.indptr)
    targeted = n_targeted > 0

    if parents is not None:
        P = sp.csc_array(parents).astype(bool)
        P.setdiag(False)
        P.eliminate_zeros()
        P.sort_indices()
        sizes = np.diff(P.indptr)
        regulators = np.unique(P.indices)
        pool_idx = np.zeros(0, dtype=np.int64)
        stacked_flops = float(
            np.sum(
                sizes.astype(float) ** 3 / 3 * (4 if alphas is not None else 1)
                + 2 * n_targeted * sizes.astype(float) ** 2
            )
        )
        pool_flops = 0.0
        coef_entries = float(P.nnz)
    else:
        pool_idx = np.unique(np.asarray(pool, dtype=np.int64))
        if pool_idx.size and (pool_idx[0] < 0 or pool_idx[-1] >= p):
            raise ParameterError("fit_linear: pool holds gene indices out of range.")
        regulators = pool_idx
        f = len(pool_idx)
        n_t = float(targeted.sum())
        stacked_flops = (
            n_t * f**3 / 3 * (4 if alphas is not None else 1) + 2.0 * float(n_targeted.sum()) * f**2
        )
        pool_flops = 2.0 * f**3 * (4 if alphas is not None else 1) + 2.0 * f * f * p
        coef_entries = float(f) * p
    v = int(np.count_nonzero(targeted[regulators]))
    _check_cost(n, p, len(regulators), v, stacked_flops, pool_flops, coef_entries, len(pool_idx))

    lazy = is_dask_array(X)
    gather = None
    if lazy:
        # Out of core, single entries cannot be read cheaply later: collect in
        # the pass every value a downdate will need (each targeted sample's
        # regulators of its targeted genes) and the targeted entries themselves.
        if parents is not None:
            need = mask.astype(np.float64) @ P.T.astype(np.float64)
        else:
            rows = np.flatnonzero(np.diff(mask.indptr))
            f = len(pool_idx)
            need = sp.csr_array(
                (np.ones(len(rows) * f), (np.repeat(rows, f), np.tile(pool_idx, len(rows)))),
                shape=(n, p),
            )
        gather = (sp.csr_array(need, dtype=bool) + mask).astype(bool)
        _check_gather(gather.nnz, names)
    cp = cross_products(X, mask, levels, regulators, block_rows=block_rows, gather=gather,
                        row_weights=row_weights if lazy else None, verbose=verbose)
    ctx = _Context(
        X=cp.gathered if lazy else X,
        mask=mask,
        levels=levels,
        lookup=_entry_lookup(mask),
        cp=cp,
        excl_indptr=excl.indptr.astype(np.int64),
        excl_rows=excl.indices.astype(np.int64),
    )
    out = _Collector(p, solver.inference)
    all_genes = np.arange(p)
    if parents is not None:
        has = sizes > 0
        fit_genes = all_genes[has & (cp.n_included > 0)]

        def regs_of(genes: np.ndarray, r: int) -> np.ndarray:
            idx = P.indptr[genes][:, None] + np.arange(r)[None, :]
            return P.indices[idx].astype(np.int64)

        _check_ols_dof(solver, cp.n_included[fit_genes], sizes[fit_genes], fit_genes, names)
        _solve_by_size(ctx, fit_genes, regs_of, sizes[fit_genes], solver, out, verbose)
        fitted = np.zeros(p, dtype=bool)
        fitted[fit_genes] = True
    else:
        f = len(pool_idx)
        in_pool = np.zeros(p, dtype=bool)
        in_pool[pool_idx] = True
        sizes = np.where(in_pool, f - 1, f)
        fitted = (sizes > 0) & (cp.n_included > 0)
        _check_ols_dof(solver, cp.n_included[fitted], sizes[fitted], all_genes[fitted], names)
        shared = all_genes[fitted & ~targeted & ~in_pool]
        members = all_genes[fitted & ~targeted & in_pool]
        rest = all_genes[fitted & targeted]
        if shared.size:
            _shared_solve(ctx, shared, pool_idx, solver, out)
        if members.size:
            _pool_solve(ctx, members, pool_idx, solver, out)
        if rest.size:

            def regs_of(genes: np.ndarray, r: int) -> np.ndarray:
                full = np.broadcast_to(pool_idx, (len(genes), f))
                if r == f:
                    return np.array(full)
                return full[full != genes[:, None]].reshape(len(genes), r)

            _solve_by_size(ctx, rest, regs_of, sizes[rest], solver, out, verbose)
    # Intercept-only genes: the mean over the samples where they are not targeted.
    only = all_genes[~fitted & (cp.n_included > 0)]
    n_only = cp.n_included[only].astype(np.float64)
    out.intercept[only] = cp.shift[only] + cp.target_sums[only] / n_only
    out.rss[only] = cp.target_squares[only] - cp.target_sums[only] ** 2 / n_only
    out.n_samples[only] = cp.n_included[only]
    out.alpha[only] = solver.alpha
    result = out.result()
    result.samples = cp if lazy else None
    return result


def _check_gather(nnz: int, names: Any) -> None:
    """Refuse a Dask fit whose collected downdate values would not fit in memory."""
    need = 16.0 * nnz  # value + column index
    budget = MAX_MEMORY_FRACTION * physical_memory() / 2
    if need > budget:
        raise ParameterError(
            f"fit_linear: the samples that target a gene need their regulators' values for "
            f"the exact leave-out ({nnz:,} values, {_format_bytes(need)}), more than this "
            f"machine can hold ({_format_bytes(budget)}). Use a network with fewer regulators "
            f"per gene than a full regulator pool, or fit on pseudobulk profiles "
            f"(causalcell.data.pseudobulk)."
        )


def _check_ols_dof(
    solver: _Solver, n_used: np.ndarray, sizes: np.ndarray, genes: np.ndarray, names: Any
) -> None:
    if solver.method != "ols":
        return
    bad = np.flatnonzero(n_used <= sizes + 1 if solver.inference else n_used <= sizes)
    if bad.size:
        i = bad[0]
        gene = repr(str(names[genes[i]])) if names is not None else f"#{int(genes[i])}"
        raise ParameterError(
            f"regressor='ols': gene {gene} has {int(sizes[i])} regulators but only "
            f"{int(n_used[i])} samples in which it is not targeted ({bad.size} such genes); "
            f"OLS needs more samples than regulators + 1. Use regressor='ridge', fewer "
            f"regulators, or more samples."
        )


# --------------------------------------------------------------------------- propagation
# Spectral radii of components up to this size are computed densely.
_DENSE_EIGEN = 200
# (I - W^T) is factored densely up to this many genes or above this density.
_DENSE_FACTOR_GENES = 3000
_DENSE_FACTOR_DENSITY = 0.05
_STABLE_MARGIN = 1e-10


def _operand(M: sp.csr_array) -> Any:
    """M for repeated products: a dense array when it is dense enough for BLAS."""
    k = M.shape[0]
    return M.toarray() if M.nnz > 0.2 * k * k else M


def _norm2_bound(M: sp.csr_array) -> float:
    """Upper bound of the spectral norm ||M||_2 (>= the spectral radius of M and of
    every principal submatrix): Frobenius when it suffices, else the largest
    singular value (Lanczos) with a small safety factor."""
    fro = float(np.sqrt(np.sum(M.data**2)))
    if fro < 1.0 - _STABLE_MARGIN or M.nnz == 0:
        return fro
    k = M.shape[0]
    if k <= _DENSE_EIGEN:
        return float(np.linalg.norm(M.toarray(), 2)) * (1 + 1e-12)
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, svds

    try:
        top = svds(_operand(M), k=1, return_singular_vectors=False, tol=1e-10)
    except (ArpackNoConvergence, ArpackError):
        return fro
    return float(np.max(top)) * (1 + 1e-8)


def _spectral_radius(M: sp.csr_array) -> float:
    """Largest eigenvalue modulus of a square sparse matrix.

    Dense eigenvalues for small matrices; ARPACK (a few dozen products with
    M) for larger ones, with a dense fallback when it does not converge.
    """
    k = M.shape[0]
    if k == 0 or M.nnz == 0:
        return 0.0
    if k <= _DENSE_EIGEN:
        return float(np.max(np.abs(np.linalg.eigvals(M.toarray()))))
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigs

    try:
        # Several eigenvalues and a wide Krylov space: k=1 can settle on the
        # wrong one when the largest moduli are close (complex pairs).
        vals = eigs(
            _operand(M),
            k=min(6, k - 2),
            which="LM",
            return_eigenvectors=False,
            tol=1e-10,
            ncv=min(k, 40),
            maxiter=max(1000, 10 * k),
        )
        return float(np.max(np.abs(vals)))
    except (ArpackNoConvergence, ArpackError):
        return float(np.max(np.abs(np.linalg.eigvals(M.toarray()))))


def _perron_bound(A: sp.csr_array, iterations: int = 50) -> float:
    """Upper bound of the spectral radius of a non-negative matrix.

    Collatz-Wielandt: rho(A) <= max_i (A x)_i / x_i for any positive x;
    power iteration from the all-ones vector tightens it. Cheap (a few
    dozen sparse products) and sufficient to prove stability.
    """
    k = A.shape[0]
    if k == 0 or A.nnz == 0:
        return 0.0
    A = _operand(A)
    x = np.ones(k)
    best = np.inf
    for _ in range(iterations):
        y = A @ x
        best = min(best, float(np.max(y / x)))
        if best < 1.0 - _STABLE_MARGIN:
            break
        top = float(np.max(y))
        if top <= 0.0:
            return 0.0
        # Keep x positive (a reducible A can zero entries out).
        x = np.maximum(y / top, 1e-300)
    return best


class SteadyState:
    """Steady states of the linear propagation ``x = start + W_do^T (x - start)``.

    With A = I - W^T, a perturbation clamping targets T at changes d (level
    minus start) has the steady change ``delta = A^{-1}[:, T] (A^{-1}[T, T])^{-1} d``:
    delta solves (A delta)_g = 0 for every non-target g (each non-target
    follows its regulators) and delta_T = d, and A delta is supported on T,
    so delta = A^{-1} u with u_T fixed by delta_T = d. One factorization of A
    serves every request; each distinct target set costs one small |T| x |T|
    solve, vectorized over the requests that share it.

    Stability: the steady state is the limit of the propagation only when
    the spectral radius of the intervention graph's weights (W without the
    edges into targets; only its strongly connected components matter) is
    below 1. A component whose absolute weights already have spectral radius
    below 1 is stable under every intervention (Perron-Frobenius: removing
    nodes and taking absolute values cannot increase it); other components
    are checked exactly for each target set.

    Parameters
    ----------
    W : scipy.sparse.csr_array
        (p, p) regulator x target weights.
    names : sequence of str, optional
        Gene names, for messages.
    """

    def __init__(self, W: sp.csr_array, names: Any = None) -> None:
        from scipy.sparse.csgraph import connected_components

        self.W = sp.csr_array(W, dtype=np.float64)
        self.p = self.W.shape[0]
        self.names = names
        pattern = self.W.copy()
        pattern.eliminate_zeros()
        _, labels = connected_components(pattern, directed=True, connection="strong")
        sizes = np.bincount(labels)
        self._components: list[np.ndarray] = []
        for comp in np.flatnonzero(sizes >= 2):
            nodes = np.flatnonzero(labels == comp)
            # Stable under every intervention if the absolute weights' spectral
            # radius or the spectral norm is below 1 (both bound every
            # principal submatrix's spectral radius).
            sub = pattern[nodes][:, nodes]
            if _perron_bound(abs(sub)) < 1.0 - _STABLE_MARGIN:
                continue
            if _norm2_bound(sub) < 1.0 - _STABLE_MARGIN:
                continue
            if _spectral_radius(abs(sub)) >= 1.0 - _STABLE_MARGIN:
                self._components.append(nodes)
        self._radius: dict[tuple[int, bytes], float] = {}
        self._factor: Any = None

    # ------------------------------------------------------------------ stability
    def check(self, targets: np.ndarray, label: str = "") -> None:
        """Raise PredictionError if the intervention graph of ``targets`` is unstable."""
        for c, nodes in enumerate(self._components):
            keep = nodes[~np.isin(nodes, targets)]
            key = (c, keep.tobytes())
            if key not in self._radius:
                sub = self.W[keep][:, keep]
                bound = _perron_bound(abs(sub))
                self._radius[key] = bound if bound < 1.0 - _STABLE_MARGIN else _spectral_radius(sub)
            rho = self._radius[key]
            if rho >= 1.0 - _STABLE_MARGIN:
                shown = (
                    ", ".join(str(self.names[i]) for i in nodes[:5])
                    if self.names is not None
                    else f"{len(nodes)} genes"
                )
                raise PredictionError(
                    f"The fitted regulation is unstable under {label or 'this perturbation'}: "
                    f"the weights of the feedback loop through {shown} have spectral radius "
                    f"{rho:.3g} >= 1, so the propagation has no steady state. Refit with a "
                    f"larger alpha (or alpha='gcv'), use a network with fewer feedback "
                    f"edges, or predict a finite number of steps (steps=k)."
                )

    # ------------------------------------------------------------------ solve
    def _inverse_columns(self, targets: np.ndarray) -> np.ndarray:
        """Columns ``targets`` of (I - W^T)^{-1}, shape (p, len(targets))."""
        p = self.p
        if self._factor is None:
            A = sp.eye_array(p, format="csr") - self.W.T.tocsr()
            dense = p <= _DENSE_FACTOR_GENES or self.W.nnz > _DENSE_FACTOR_DENSITY * p * p
            if dense:
                lu, piv = la.lu_factor(A.toarray(), check_finite=False)
                if np.any(np.diag(lu) == 0):
                    raise self._singular()
                self._factor = ("dense", (lu, piv))
            else:
                from scipy.sparse.linalg import splu

                try:
                    self._factor = ("sparse", splu(A.tocsc()))
                except RuntimeError:
                    raise self._singular() from None
        kind, fac = self._factor
        E = np.zeros((p, len(targets)))
        E[targets, np.arange(len(targets))] = 1.0
        if kind == "dense":
            return la.lu_solve(fac, E, check_finite=False)
        return fac.solve(E)

    @staticmethod
    def _singular() -> PredictionError:
        return PredictionError(
            "The fitted regulation has an eigenvalue equal to 1 (I - W^T is singular): no "
            "unique steady state. Refit with a larger alpha, or predict a finite number of "
            "steps (steps=k)."
        )

    def changes(self, mask: sp.csr_array, d: np.ndarray, labels: Any = None) -> np.ndarray:
        """Steady changes (n, p) for clamped changes ``d`` at the entries of ``mask``."""
        n, p = mask.shape
        delta = np.zeros((n, p))
        indptr, cols = mask.indptr, mask.indices
        counts = np.diff(indptr)
        if mask.nnz == 0:
            return delta
        # Distinct target sets (rows padded with -1), checked and solved once each.
        width = int(counts.max())
        padded = np.full((n, width), -1, dtype=np.int64)
        which = np.repeat(np.arange(n), counts)
        offset = np.arange(mask.nnz) - np.repeat(indptr[:-1], counts)
        padded[which, offset] = cols
        perturbed = np.flatnonzero(counts > 0)
        sets, first, inverse = np.unique(
            padded[perturbed], axis=0, return_index=True, return_inverse=True
        )
        inverse = inverse.ravel()
        if self._components:
            for s, tset in enumerate(sets):
                label = None if labels is None else repr(str(labels[perturbed[first[s]]]))
                self.check(tset[tset >= 0], label or "")
        targets = np.unique(cols)
        K = self._inverse_columns(targets)
        col_of = np.full(p, -1, dtype=np.int64)
        col_of[targets] = np.arange(len(targets))
        single = perturbed[counts[perturbed] == 1]
        if single.size:
            t = cols[indptr[single]]
            j = col_of[t]
            scale = d[indptr[single]] / K[t, j]
            delta[single] = K[:, j].T * scale[:, None]
        # Combinations: one small solve per distinct target set.
        is_multi = counts[perturbed] > 1
        order = np.argsort(inverse, kind="stable")
        order = order[is_multi[order]]
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        for group in np.split(order, bounds) if order.size else []:
            rows = perturbed[group]
            tset = sets[inverse[group[0]]]
            tgt = tset[tset >= 0]
            j = col_of[tgt]
            m = len(tgt)
            D = d[indptr[rows][:, None] + np.arange(m)[None, :]]  # (rows, m)
            U = np.linalg.solve(K[np.ix_(tgt, j)], D.T)
            delta[rows] = (K[:, j] @ U).T
        return delta


def propagate_linear(
    W: sp.csr_array,
    mask: sp.csr_array,
    levels: np.ndarray,
    start: np.ndarray,
    steps: int | Literal["steady_state"],
    steady: SteadyState | None = None,
    labels: Any = None,
) -> np.ndarray:
    """Clamp targets at their levels and propagate changes on the intervention graph.

    ``x = start + delta`` with ``delta_t = T_t - start_t`` for every target t
    and ``delta_g = sum_r W[r, g] delta_r`` for every other gene (the linear
    model's change from the start state), iterated ``steps`` times or to the
    steady state (closed form, see :class:`SteadyState`). Targets have no
    parents on the intervention graph, so they stay at T; an empty
    intervention returns ``start`` exactly.

    Parameters
    ----------
    W
        (p, p) regulator x target weights.
    mask, levels
        The request's targeted entries (n, p) and their levels (all finite).
    start
        (n, p) start states.
    steps
        Number of propagation steps, or ``"steady_state"``.
    steady
        A :class:`SteadyState` for W (reused across calls: it caches the
        factorization).
    labels
        Per-row labels for messages.

    Returns
    -------
    numpy.ndarray
        (n, p) predicted states; targets equal their levels exactly.
    """
    mask = sp.csr_array(mask, dtype=bool)
    n, p = mask.shape
    rows = np.repeat(np.arange(n), np.diff(mask.indptr))
    cols = mask.indices
    d = levels - start[rows, cols]
    if steps == "steady_state":
        steady = SteadyState(W) if steady is None else steady
        delta = steady.changes(mask, d, labels)
    else:
        delta = np.zeros((n, p))
        delta[rows, cols] = d
        Wc = sp.csr_array(W, dtype=np.float64)
        for _ in range(int(steps)):
            delta = np.asarray(delta @ Wc)
            delta[rows, cols] = d
    out = start + delta
    out[rows, cols] = levels
    return out
