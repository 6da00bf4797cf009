"""E-distance between groups of cells, with the targeted genes excluded pair by pair.

Definition
----------
For two groups of cells X (N cells) and Y (M cells) and a distance d between
cells, the E-distance (Székely & Rizzo 2013; used for perturbation screens by
Peidli et al. 2024, scPerturb) is ::

    E(X, Y) = 2 delta(X, Y) - sigma(X) - sigma(Y)

with ``delta`` the mean of d over the N x M pairs across the groups and
``sigma`` the mean of d over the pairs within a group. Two flavours are in use
and both are implemented, exactly:

``"euclidean"`` (default; pertpy's ``Distance("edistance")``)
    d is the Euclidean distance and ``sigma`` averages over all N^2 ordered
    pairs, the zero self-distances included (V-statistics). This is the
    energy distance of the two empirical distributions: 0 only when they are
    equal, sensitive to every difference of distribution, not only of means.
``"sqeuclidean"`` (the scPerturb package's ``edist``)
    d is the squared Euclidean distance and ``sigma`` averages over the
    N (N - 1) pairs of distinct cells (U-statistics). Then
    ``E = 2 |mean(X) - mean(Y)|^2 - 2 tr S_X / N - 2 tr S_Y / M`` (S the
    unbiased covariance): an unbiased estimate of twice the squared distance
    of the means. It sees only the means; it is offered for comparison with
    scPerturb's numbers. A group of one cell has ``sigma = 0``.

Gene exclusion
--------------
Every quantity of a comparison is taken on that comparison's genes, as in
:func:`causalcell.evaluate.pairwise_retrieval`. Comparing query group i with candidate
group j, with ``exclude="targeted"``, removes the genes targeted in i or j from
both E-distances of the comparison: ``E_{-i,-j}(P_i, T_j)`` against
``E_{-i,-j}(P_i, T_i)``, the within-group terms included.

Algorithm
---------
All cell-to-cell distances come from Gram matrices, never from a loop over
pairs of cells or of perturbations. With each cell zeroed on the genes its
own group excludes, the squared distance of cells a and b over all genes is
``|x_a|^2 + |y_b|^2 - 2 x_a . y_b``, one matrix product per block of query
cells; the genes the *other* group of a comparison excludes are removed by
gathered corrections, exactly as for profiles. Between every query and every
candidate group the cross sums are accumulated block by block
(``O(N_Q N_C g)``: every pair of cells is visited once, in BLAS). The terms
that depend on the comparison only through the genes removed (the true match
and the within-group sums) are computed per group for all comparisons at
once (``O(sum_i N_i M_i (s + n))`` for ``s`` targeted genes per group and
``n`` groups). For the ``"sqeuclidean"`` flavour nothing but means and
variances would be needed; the shared code path keeps one implementation of
the exclusions.

Memory: both sides are held dense (float64, centred on their common mean, which
leaves distances unchanged and keeps the Gram expansion well conditioned), plus
temporaries of about 32 MiB and an (observed cells x groups) table of
corrections; ``max_cells`` bounds all of them.

Rounding: a squared distance from a Gram matrix carries an absolute error of
about ``1e-16 (|x|^2 + |y|^2)``, which a square root would blow up for nearly
identical cells (a prediction that copies observed cells, a resampled control).
Squared distances below :data:`REFINE_RTOL` times the cells' squared norms are
therefore recomputed from the cells' differences, so such pairs are exact too.
Comparisons whose two E-distances differ by less than :data:`TIE_RTOL` times the
sum of their absolute terms count as ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell._validation import DEPRECATED, renamed
from causalcell.data._interventions import Interventions
from causalcell.data.contract import PERTURBATION, PERTURBATION_TYPE, expression_matrix
from causalcell.data.lazy import LOAD_IN_MEMORY, is_dask_array
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate._align import Aligned, align
from causalcell.evaluate._exclude import (
    EXCLUDE_COLUMN,
    EXCLUDE_DOC,
    METRIC_EXCLUDES,
    RETRIEVAL_EXCLUDES,
    exclude_rule,
    exclude_rules,
    fill_doc,
)

__all__ = [
    "CELL_DISTANCES",
    "EDISTANCES",
    "REFINE_RTOL",
    "TIE_RTOL",
    "CellGroups",
    "cell_groups",
    "edistance",
    "edistance_ranks",
    "group_edistances",
    "pairwise_edistances",
]

CELL_DISTANCES = ("euclidean", "sqeuclidean")
# Retrieval distance names -> cell distance of the E-distance.
EDISTANCES = {"edistance": "euclidean", "edistance_sqeuclidean": "sqeuclidean"}
TIE_RTOL = 1e-9
REFINE_RTOL = 1e-3
_BLOCK_ELEMENTS = 1 << 22  # float64 elements of one (block x cells) temporary
_SHOWN = 10


def _check_cell_distance(cell_distance: object) -> str:
    if cell_distance not in CELL_DISTANCES:
        raise ParameterError(f"cell_distance must be one of {', '.join(map(repr, CELL_DISTANCES))}"
                             f"; got {cell_distance!r}.")
    return str(cell_distance)


@dataclass(frozen=True)
class CellGroups:
    """Cells sorted by group: ``values[starts[i]:starts[i + 1]]`` are group i's cells.

    Attributes
    ----------
    values : numpy.ndarray or scipy.sparse.csr_array, shape (cells, genes)
    starts : numpy.ndarray of int, shape (n_groups + 1,)
    """

    values: Any
    starts: np.ndarray

    @classmethod
    def from_codes(cls, values: Any, codes: np.ndarray, n_groups: int,
                   names: Any = None, side: str = "cells") -> CellGroups:
        """Group the rows of ``values`` by ``codes`` (0..n_groups-1; -1 drops a row).

        Raises
        ------
        DataContractError
            A group without cells (named by ``names[i]`` when given).
        """
        codes = np.asarray(codes, dtype=np.int64)
        if values.shape[0] != len(codes):
            raise DataContractError(f"{side}: {values.shape[0]} rows but {len(codes)} group "
                                    f"codes.")
        keep = np.flatnonzero(codes >= 0)
        order = keep[np.argsort(codes[keep], kind="stable")]
        counts = np.bincount(codes[keep], minlength=n_groups)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            shown = [str(names[i]) if names is not None else str(i) for i in empty[:_SHOWN]]
            raise DataContractError(
                f"The E-distance needs cells of every group: {len(empty)} group(s) have no "
                f"{side}: {', '.join(shown)}."
            )
        if sp.issparse(values):
            rows = sp.csr_array(values)[order]
            rows = sp.csr_array(rows, dtype=np.float64)
        else:
            rows = np.asarray(values, dtype=np.float64)[order]
        starts = np.zeros(n_groups + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        return cls(rows, starts)

    @property
    def n_groups(self) -> int:
        return len(self.starts) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.starts)

    def group_of_rows(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_groups), self.sizes)

    def dense(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi as a dense float64 array (a copy)."""
        block = self.values[lo:hi]
        return block.toarray() if sp.issparse(block) else np.array(block, dtype=np.float64)

    def columns(self, keep: np.ndarray) -> CellGroups:
        values = self.values[:, keep]
        return CellGroups(sp.csr_array(values) if sp.issparse(values) else values, self.starts)

    def zeroed(self, mask: sp.csr_array | None) -> CellGroups:
        """A copy whose cells are 0 on the genes their group excludes (``mask`` row i)."""
        if mask is None or mask.nnz == 0:
            return self
        per_cell = sp.csr_array(mask[self.group_of_rows()], dtype=bool)
        if sp.issparse(self.values):
            values = self.values - self.values.multiply(per_cell)
            values = sp.csr_array(values)
            values.eliminate_zeros()
        else:
            values = self.values.copy()
            rows = np.repeat(np.arange(per_cell.shape[0]), np.diff(per_cell.indptr))
            values[rows, per_cell.indices] = 0.0
        return CellGroups(values, self.starts)


@dataclass(frozen=True)
class _Sets:
    """Per-group gene sets in CSR layout (one segment per group), for gathers."""

    indices: np.ndarray  # (nnz,) gene columns
    starts: np.ndarray  # (n,) segment starts into indices
    lengths: np.ndarray  # (n,) segment lengths

    @classmethod
    def of(cls, mask: sp.csr_array | None) -> _Sets | None:
        if mask is None or mask.nnz == 0:
            return None
        indptr = mask.indptr.astype(np.int64)
        return cls(mask.indices.astype(np.int64), indptr[:-1], np.diff(indptr))

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per-set sums of ``values[..., indices]``: last axis (nnz) -> (n)."""
        padded = np.concatenate([values, np.zeros((*values.shape[:-1], 1))], axis=-1)
        out = np.add.reduceat(padded, self.starts, axis=-1)
        out[..., self.lengths == 0] = 0.0  # reduceat returns one element for an empty set
        return out

    def entries(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row r, gene) of every gene of set ``ids[r]``, without a loop."""
        lengths = self.lengths[ids]
        rows = np.repeat(np.arange(len(ids)), lengths)
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return rows, self.indices[np.repeat(self.starts[ids], lengths) + offsets]


def _apply(d2: np.ndarray, cell_distance: str) -> np.ndarray:
    if cell_distance == "euclidean":
        return np.sqrt(np.maximum(d2, 0.0, out=d2), out=d2)
    return d2


def _sq_norms(block: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", block, block)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = a @ b.T
    d2 *= -2.0
    d2 += _sq_norms(a)[:, None]
    d2 += _sq_norms(b)[None, :]
    return d2


def _rows_per_block(width: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(width, 1))


def _small(d2: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Flat indices of the squared distances too small to trust from a Gram matrix.

    A squared distance from a Gram matrix carries an absolute error of about
    ``1e-16 * scale`` (the cells' squared norms); below ``REFINE_RTOL * scale`` that
    error would dominate its square root, so those are recomputed by :func:`_exact`.
    """
    return np.flatnonzero(d2 < REFINE_RTOL * np.broadcast_to(scale, d2.shape))


def _exact(A: np.ndarray, ia: np.ndarray, B: np.ndarray, ib: np.ndarray,
           drops: Sequence[tuple[_Sets | None, np.ndarray]]) -> np.ndarray:
    """Squared distances of cells ``A[ia[r]]`` and ``B[ib[r]]`` from their differences,
    without the genes of set ``ids[r]`` of every ``(sets, ids)`` in ``drops``."""
    out = np.empty(len(ia))
    step = _rows_per_block(A.shape[1])
    for lo in range(0, len(ia), step):
        hi = min(lo + step, len(ia))
        diff = A[ia[lo:hi]] - B[ib[lo:hi]]
        for sets, ids in drops:
            if sets is not None:
                rows, cols = sets.entries(ids[lo:hi])
                diff[rows, cols] = 0.0
        out[lo:hi] = _sq_norms(diff)
    return out


def _between_all(Q: CellGroups, C: CellGroups, q_excl: _Sets | None, c_excl: _Sets | None,
                 cell_distance: str) -> np.ndarray:
    """S[i, j]: sum of d over cells of query group i x candidate group j on the genes
    outside ``q_excl[i]`` and ``c_excl[j]``; Q is zeroed on q_excl, C on c_excl."""
    n = Q.n_groups
    out = np.zeros((n, C.n_groups))
    C_vals = C.values
    c_norms = _sq_norms(C_vals)
    c_group = C.group_of_rows()
    q_group = Q.group_of_rows()
    # B[b, i]: candidate cell b's squares on query group i's excluded genes.
    B = None if q_excl is None else q_excl.sums(np.square(C_vals[:, q_excl.indices]))
    step = _rows_per_block(C_vals.shape[0])
    for lo in range(0, Q.values.shape[0], step):
        hi = min(lo + step, Q.values.shape[0])
        Xb = Q.values[lo:hi]
        x_norms = _sq_norms(Xb)
        d2 = _sq_dists(Xb, C_vals)
        if c_excl is not None:  # A[a, j]: query cell a's squares on group j's genes
            d2 -= c_excl.sums(np.square(Xb[:, c_excl.indices]))[:, c_group]
        if B is not None:
            d2 -= B[:, q_group[lo:hi]].T
        if cell_distance == "euclidean":
            flat = _small(d2, x_norms[:, None] + c_norms[None, :])
            r, c = np.unravel_index(flat, d2.shape)
            d2.flat[flat] = _exact(Xb, r, C_vals, c, ((q_excl, q_group[lo + r]),
                                                      (c_excl, c_group[c])))
        per_group = np.add.reduceat(_apply(d2, cell_distance), C.starts[:-1], axis=1)
        rows = q_group[lo:hi]
        indicator = sp.csr_array((np.ones(hi - lo), (rows, np.arange(hi - lo))),
                                 shape=(n, hi - lo))
        out += indicator @ per_group
    return out


def _matched_sums(Q: CellGroups, C: CellGroups, excl: _Sets | None,
                  cell_distance: str) -> np.ndarray:
    """S[i, e]: sum of d over cells of query group i x candidate group i, on the genes
    outside set e (every e of ``excl``; one column without ``excl``)."""
    n = Q.n_groups
    n_sets = 1 if excl is None else len(excl.starts)
    out = np.zeros((n, n_sets))
    for i in range(n):  # one group (perturbation) at a time: its cells x its cells
        X = Q.values[Q.starts[i] : Q.starts[i + 1]]
        Y = C.values[C.starts[i] : C.starts[i + 1]]
        m = Y.shape[0]
        d0 = _sq_dists(X, Y)
        scale = _sq_norms(X)[:, None] + _sq_norms(Y)[None, :]
        if excl is None:
            if cell_distance == "euclidean":
                flat = _small(d0, scale)
                r, c = np.unravel_index(flat, d0.shape)
                d0.flat[flat] = _exact(X, r, Y, c, ())
            out[i, 0] = _apply(d0, cell_distance).sum()
            continue
        xs, ys = X[:, excl.indices], Y[:, excl.indices]
        step = _rows_per_block(m * (len(excl.indices) + n_sets))
        for lo in range(0, X.shape[0], step):
            hi = min(lo + step, X.shape[0])
            d2 = d0[lo:hi, :, None] - excl.sums(np.square(xs[lo:hi, None, :] - ys[None]))
            if cell_distance == "euclidean":
                flat = _small(d2, scale[lo:hi, :, None])
                r, c, e = np.unravel_index(flat, d2.shape)
                d2.flat[flat] = _exact(X, lo + r, Y, c, ((excl, e),))
            out[i] += _apply(d2, cell_distance).sum(axis=(0, 1))
    return out


def _within_sums(G: CellGroups, excl: _Sets | None, cell_distance: str) -> np.ndarray:
    """W[i, e]: sum of d over the ordered pairs of distinct cells of group i, on the
    genes outside set e (one column without ``excl``)."""
    n = G.n_groups
    n_sets = 1 if excl is None else len(excl.starts)
    out = np.zeros((n, n_sets))
    for i in range(n):  # one group at a time: the pairs of its cells
        Y = G.values[G.starts[i] : G.starts[i + 1]]
        if Y.shape[0] < 2:
            continue
        a, b = np.triu_indices(Y.shape[0], k=1)
        norms = _sq_norms(Y)
        d0 = _sq_dists(Y, Y)[a, b]
        scale = norms[a] + norms[b]
        if excl is None:
            if cell_distance == "euclidean":
                flat = _small(d0, scale)
                d0[flat] = _exact(Y, a[flat], Y, b[flat], ())
            out[i, 0] = 2.0 * _apply(d0, cell_distance).sum()
            continue
        ys = Y[:, excl.indices]
        step = _rows_per_block(len(excl.indices) + n_sets)
        for lo in range(0, len(a), step):
            hi = min(lo + step, len(a))
            d2 = d0[lo:hi, None] - excl.sums(np.square(ys[a[lo:hi]] - ys[b[lo:hi]]))
            if cell_distance == "euclidean":
                flat = _small(d2, scale[lo:hi, None])
                p, e = np.unravel_index(flat, d2.shape)
                d2.flat[flat] = _exact(Y, a[lo + p], Y, b[lo + p], ((excl, e),))
            out[i] += 2.0 * _apply(d2, cell_distance).sum(axis=0)
    return out


def _within_weight(sizes: np.ndarray, cell_distance: str) -> np.ndarray:
    """Number of pairs ``sigma`` averages over: N^2 (V-statistic, euclidean) or N (N - 1)
    (U-statistic, sqeuclidean; a single cell gives sigma = 0)."""
    sizes = sizes.astype(np.float64)
    pairs = sizes * sizes if cell_distance == "euclidean" else sizes * (sizes - 1.0)
    return np.where(pairs > 0, pairs, 1.0)


def _centered(query: CellGroups, candidates: CellGroups) -> tuple[CellGroups, CellGroups]:
    """Both sides as dense float64, minus their common column mean: distances do not
    change, and the Gram expansion no longer cancels a shared offset."""
    dense = [g.values.toarray() if sp.issparse(g.values) else np.array(g.values, dtype=float)
             for g in (query, candidates)]
    mean = (dense[0].sum(axis=0) + dense[1].sum(axis=0)) / (len(dense[0]) + len(dense[1]))
    return CellGroups(dense[0] - mean, query.starts), CellGroups(dense[1] - mean,
                                                                 candidates.starts)


def _check_pair(query: CellGroups, candidates: CellGroups, targets: Any) -> sp.csr_array:
    if query.n_groups != candidates.n_groups:
        raise DataContractError(
            f"query has {query.n_groups} groups but candidates have {candidates.n_groups}; "
            f"group i of both must be the same perturbation."
        )
    if query.values.shape[1] != candidates.values.shape[1]:
        raise DataContractError(
            f"query cells have {query.values.shape[1]} genes but candidate cells "
            f"{candidates.values.shape[1]}; give both on the same genes."
        )
    n, g = query.n_groups, query.values.shape[1]
    if targets is None:
        return sp.csr_array((n, g), dtype=bool)
    mask = sp.csr_array(targets, dtype=bool)
    if mask.shape != (n, g):
        raise DataContractError(f"targets must have shape (groups, genes) = ({n}, {g}); got "
                                f"{mask.shape}.")
    mask.eliminate_zeros()
    mask.sum_duplicates()
    mask.sort_indices()
    return mask


def group_edistances(query: CellGroups, candidates: CellGroups, targets: Any = None, *,
                     cell_distance: str = "euclidean") -> np.ndarray:
    """E-distance between group i of ``query`` and group i of ``candidates``, without
    the genes ``targets[i]``.

    Parameters
    ----------
    query, candidates
        Cells of the same n groups (e.g. predicted and observed cells of each
        perturbation), on the same genes.
    targets
        Sparse bool (n, genes): genes left out of comparison i; None keeps
        every gene.
    cell_distance
        ``"euclidean"`` (pertpy) or ``"sqeuclidean"`` (scPerturb); see the
        module documentation.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``.
    """
    cell_distance = _check_cell_distance(cell_distance)
    mask = _check_pair(query, candidates, targets)
    query, candidates = _centered(query, candidates)
    Q, C = query.zeroed(mask), candidates.zeroed(mask)
    n_q, n_c = Q.sizes.astype(np.float64), C.sizes.astype(np.float64)
    between = _matched_sums(Q, C, None, cell_distance)[:, 0] / (n_q * n_c)
    sigma_q = _within_sums(Q, None, cell_distance)[:, 0] / _within_weight(Q.sizes, cell_distance)
    sigma_c = _within_sums(C, None, cell_distance)[:, 0] / _within_weight(C.sizes, cell_distance)
    return 2.0 * between - sigma_q - sigma_c


@fill_doc(exclude=EXCLUDE_DOC)
def pairwise_edistances(query: CellGroups, candidates: CellGroups, targets: Any = None,
                        exclude: str = "targeted", *, cell_distance: str = "euclidean",
                        exclusion: Any = DEPRECATED,
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every comparison of retrieval on E-distances, each on its own genes.

    Parameters
    ----------
    query, candidates
        Cells of the same n groups, on the same genes; group i of both is
        perturbation i (the true match).
    targets
        Sparse bool (n, genes): the genes targeted in each group.
    exclude
        ``"targeted"`` (default), ``"query"``, ``"none"`` or ``"all"``.
        {exclude}
    cell_distance
        ``"euclidean"`` or ``"sqeuclidean"``.
    exclusion
        Deprecated name of ``exclude`` (FutureWarning).

    Returns
    -------
    candidate : numpy.ndarray, shape (n, n)
        ``E_R(Q_i, C_j)`` on comparison (i, j)'s genes R.
    true : numpy.ndarray, shape (n, n)
        ``E_R(Q_i, C_i)`` on the same genes R.
    scale : numpy.ndarray, shape (n, n)
        Sum of the absolute terms of both E-distances (the tie scale).
    """
    cell_distance = _check_cell_distance(cell_distance)
    exclude = renamed("pairwise_edistances", "exclusion", exclusion, "exclude", exclude,
                      "targeted")
    exclude = exclude_rule("pairwise_edistances", exclude, RETRIEVAL_EXCLUDES)
    mask = _check_pair(query, candidates, targets)
    query, candidates = _centered(query, candidates)
    if exclude == "all":
        dropped = np.zeros(mask.shape[1], dtype=bool)
        dropped[mask.indices] = True
        keep = np.flatnonzero(~dropped)
        query, candidates = query.columns(keep), candidates.columns(keep)
        mask = sp.csr_array((mask.shape[0], len(keep)), dtype=bool)
        exclude = "none"
    q_mask = mask if exclude in ("targeted", "query") else None
    c_mask = mask if exclude == "targeted" else None
    Rq, Rc = _Sets.of(q_mask), _Sets.of(c_mask)
    Q = query.zeroed(q_mask)
    C_cand = candidates.zeroed(c_mask)
    C_true = candidates.zeroed(q_mask)
    n = Q.n_groups

    s_cand = _between_all(Q, C_cand, Rq, Rc, cell_distance)
    s_true = _matched_sums(Q, C_true, Rc, cell_distance)  # [i, j] or [i, 0]
    w_query = _within_sums(Q, Rc, cell_distance)  # [i, j]: Q_i without R^c_j
    w_cand = _within_sums(C_cand, Rq, cell_distance)  # [j, i]: C_j without R^q_i
    same = exclude == "targeted" or (Rq is None and Rc is None)
    w_true = w_cand if same else _within_sums(C_true, Rc, cell_distance)  # [i, j]

    n_q, n_c = Q.sizes.astype(np.float64), candidates.sizes.astype(np.float64)
    wq = _within_weight(Q.sizes, cell_distance)[:, None]
    wc = _within_weight(candidates.sizes, cell_distance)
    full = np.ones((n, n))
    delta_c = s_cand / np.outer(n_q, n_c)
    delta_t = (s_true / (n_q * n_c)[:, None]) * full
    sigma_q = (w_query / wq) * full
    sigma_c = (w_cand / wc[:, None]).T * full  # [i, j] = sigma of C_j without R^q_i
    sigma_t = (w_true / wc[:, None]) * full  # [i, j] = sigma of C_i without R^c_j
    candidate = 2.0 * delta_c - sigma_q - sigma_c
    true = 2.0 * delta_t - sigma_q - sigma_t
    scale = 2.0 * (np.abs(delta_c) + np.abs(delta_t)) + 2.0 * np.abs(sigma_q) \
        + np.abs(sigma_c) + np.abs(sigma_t)
    return candidate, true, scale


def edistance_ranks(query: CellGroups, candidates: CellGroups, targets: Any = None,
                    exclude: str = "targeted", *, cell_distance: str = "euclidean",
                    return_matrix: bool = False):
    """Retrieval ranks on E-distances: share of candidates j closer to query i than its
    true match (ties count half), as :func:`~causalcell.evaluate.pairwise_retrieval`.

    Returns
    -------
    numpy.ndarray
        Ranks, shape (n,); with ``return_matrix`` also the (n, n) float32 matrix
        of beats (1: j beats i's true match, 0.5: tie, 0: not).
    """
    candidate, true, scale = pairwise_edistances(query, candidates, targets, exclude,
                                                 cell_distance=cell_distance)
    n = candidate.shape[0]
    if n < 2:
        raise DataContractError(
            f"Retrieval needs at least 2 perturbations (the true match and a candidate); got "
            f"{n}."
        )
    gap = true - candidate
    tol = TIE_RTOL * scale
    beats = (gap > tol).astype(np.float64)
    beats[np.abs(gap) <= tol] = 0.5
    np.fill_diagonal(beats, 0.0)
    ranks = beats.sum(axis=1) / (n - 1)
    return (ranks, beats.astype(np.float32)) if return_matrix else ranks


# --------------------------------------------------------------------------- AnnData


def _condition_codes(adata: AnnData, labels: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Row i of ``adata`` -> index of its (canonical label, kind) in ``(labels, kinds)``;
    -1 for controls and perturbations not listed."""
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    cond = iv.conditions
    keys = pd.MultiIndex.from_arrays([cond[PERTURBATION].to_numpy()[iv.codes],
                                      cond[PERTURBATION_TYPE].to_numpy()[iv.codes]])
    wanted = pd.MultiIndex.from_arrays([np.asarray(labels, dtype=object),
                                        np.asarray(kinds, dtype=object)])
    codes = wanted.get_indexer(keys)
    codes[iv.is_control] = -1
    return codes


def _subsample(codes: np.ndarray, n_groups: int, max_cells: int | None,
               rng: np.random.Generator) -> np.ndarray:
    """Codes with all but ``max_cells`` random cells of each group set to -1."""
    if max_cells is None:
        return codes
    order = np.lexsort((rng.random(len(codes)), codes))  # random order within each group
    sorted_codes = codes[order]
    first = np.searchsorted(sorted_codes, sorted_codes, side="left")
    rank = np.arange(len(codes)) - first
    out = codes.copy()
    out[order[(rank >= max_cells) & (sorted_codes >= 0)]] = -1
    return out


def cell_groups(aligned: Aligned, predicted: AnnData, observed: AnnData, *,
                layer: str | None = None, predicted_layer: str | None = None,
                max_cells: int | None = None, random_state: int | None = 0,
                ) -> tuple[CellGroups, CellGroups]:
    """The predicted and observed cells of each aligned perturbation, on the aligned genes.

    Parameters
    ----------
    aligned
        :func:`~causalcell.evaluate.align` of the same data (rows, genes, targets).
    predicted, observed
        Cells (a prediction with one row per perturbation is a group of one cell).
    layer, predicted_layer
        Layers holding the expression (None: X).
    max_cells
        Keep at most this many random cells per group and side (seeded by
        ``random_state``); None keeps every cell.

    Returns
    -------
    (CellGroups, CellGroups)
        Predicted and observed cells, group i = ``aligned`` row i.
    """
    if max_cells is not None and (isinstance(max_cells, bool)
                                  or not isinstance(max_cells, int | np.integer)
                                  or max_cells < 1):
        raise ParameterError(f"max_cells must be a positive int or None; got {max_cells!r}.")
    rng = np.random.default_rng(random_state)
    n = len(aligned)
    out = []
    for side, adata, lay in (("predicted", predicted, predicted_layer),
                             ("observed", observed, layer)):
        codes = _condition_codes(adata, aligned.labels, aligned.perturbation_type)
        codes = _subsample(codes, n, max_cells, rng)
        cols = adata.var_names.get_indexer(aligned.genes)
        values = expression_matrix(adata, lay, what=f"the {side} data")
        if is_dask_array(values) and max_cells is None:
            raise DataContractError(
                f"The E-distance compares cells pair by pair and the {side} cells are out of "
                f"core: {LOAD_IN_MEMORY}, or pass max_cells to work on a subsample."
            )
        rows = np.flatnonzero(codes >= 0)
        values = values[rows][:, cols]
        if is_dask_array(values):  # the subsample only is read
            values = values.compute()
        out.append(CellGroups.from_codes(values, codes[rows], n, names=aligned.perturbations,
                                         side=f"{side} cells"))
    return out[0], out[1]


@fill_doc(exclude=EXCLUDE_DOC)
def edistance(
    predicted: AnnData,
    observed: AnnData,
    *,
    exclude: str | Sequence[str] = METRIC_EXCLUDES,
    cell_distance: str = "euclidean",
    join: str = "exact",
    control_label: str | None = None,
    layer: str | None = None,
    predicted_layer: str | None = None,
    max_cells: int | None = None,
    random_state: int | None = 0,
) -> pd.DataFrame:
    """E-distance between the predicted and the observed cells of each perturbation.

    The distance perturbation studies report (scPerturb, pertpy ``Distance``):
    ``E = 2 delta - sigma_predicted - sigma_observed`` (see the module
    documentation for both flavours and their exact definitions), here
    between the cells a model predicts for a perturbation and the cells
    observed for it, without the perturbation's targeted genes
    (``exclude="targeted"``) or on every gene (``"none"``).

    Parameters
    ----------
    predicted
        Predicted cells (e.g. :func:`causalcell.data.sample_cells`, or
        another tool's cell-level output); a prediction with one row per
        perturbation is a group of one cell (``sigma = 0``).
    observed
        Observed cells with the obs contract.
    exclude
        ``"targeted"``, ``"none"`` or both (default; one block of rows each,
        labelled by the rule in the ``exclude`` column).
        {exclude}
    cell_distance
        ``"euclidean"`` (pertpy's E-distance, the energy distance) or
        ``"sqeuclidean"`` (scPerturb's).
    join, control_label, layer, predicted_layer
        As in :func:`~causalcell.evaluate.align` (the perturbations and
        genes compared, the targets of each).
    max_cells
        Use at most this many random cells per perturbation and side (the
        cost is quadratic in cells); None uses every cell.
    random_state
        Seed of that subsample.

    Returns
    -------
    pandas.DataFrame
        One row per perturbation and exclusion rule: ``perturbation``,
        ``perturbation_type``, ``exclude``, ``cell_distance``,
        ``edistance``, ``n_cells_predicted``, ``n_cells_observed``,
        ``n_genes_scored``.

    Raises
    ------
    DataContractError
        A perturbation without cells on a side, Dask-backed cells, and every
        error of :func:`~causalcell.evaluate.align`.
    ParameterError
        An unknown ``exclude`` or ``cell_distance``, an invalid ``max_cells``.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> truth = sim.truth[~sim.truth.obs["is_control"]]
    >>> cells = cc.data.sample_cells(truth, sim.adata, random_state=0)
    >>> table = cc.evaluate.edistance(cells, sim.adata, exclude="targeted")
    >>> bool((table["edistance"] >= 0).all())  # the energy distance is never negative
    True
    """
    cell_distance = _check_cell_distance(cell_distance)
    settings = exclude_rules("edistance", exclude)
    aligned = align(predicted, observed, join=join, control_label=control_label, layer=layer,
                    predicted_layer=predicted_layer, aggregate_predicted=True)
    P, T = cell_groups(aligned, predicted, observed, layer=layer,
                       predicted_layer=predicted_layer, max_cells=max_cells,
                       random_state=random_state)
    frames = []
    for setting in settings:
        targets = aligned.targets if setting == "targeted" else None
        values = group_edistances(P, T, targets, cell_distance=cell_distance)
        n_out = np.diff(aligned.targets.indptr) if setting == "targeted" else 0
        frames.append(pd.DataFrame({
            PERTURBATION: aligned.perturbations.to_numpy(),
            PERTURBATION_TYPE: aligned.perturbation_type,
            EXCLUDE_COLUMN: setting,
            "cell_distance": cell_distance,
            "edistance": values,
            "n_cells_predicted": P.sizes,
            "n_cells_observed": T.sizes,
            "n_genes_scored": len(aligned.genes) - n_out,
        }))
    table = pd.concat(frames, ignore_index=True)
    table.attrs["unpredicted"] = list(aligned.unpredicted)
    table.attrs["max_cells"] = max_cells
    return table
