"""The design matrix under intervention: the values every regression reads.

A regression of gene g on its regulators R in perturbation data reads the
expression matrix X *under intervention*: a targeted entry whose level T is
known (knockouts: 0) takes T, because the tool set it; a targeted entry of
unknown level keeps its measured value. Call that matrix Z. And one exclusion
rule holds for every gene g: the samples that target g are left out of g's
statistics (its level there is the tool's, not its regulators' doing).

:class:`Design` holds X as stored (dense, sparse, or a Dask array), the
:class:`~causalcell.data.Interventions` of its samples, and that rule: which
samples exclude which gene (:meth:`Design.excluded`, :attr:`Design.n_included`),
and reads of Z (:meth:`Design.values`, :meth:`Design.block`) and of X
(:meth:`Design.measured`). The pass over the samples and the per-gene
downdates built on it are in :mod:`causalcell.data._moments`; structure
learning, the conditional model and the baselines all go through here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from causalcell.data._interventions import Interventions
from causalcell.data._sparse import as_csr, gather_entries
from causalcell.data._stats import weighted_column_sums

__all__ = ["Design"]


class Design:
    """Expression matrix plus interventions: Z (T substituted) and the exclusion rule.

    Parameters
    ----------
    X
        Samples x genes: a NumPy array, a SciPy sparse matrix or a Dask array
        chunked along samples (only passes over its row blocks read a Dask
        X; point reads need X in memory, or the values gathered by a pass).
    interventions
        The interventions of the samples (rows of X), parsed against the
        genes (columns of X).
    """

    def __init__(self, X: Any, interventions: Interventions) -> None:
        if X.shape != interventions.shape:
            raise ValueError(
                f"X has shape {X.shape} but the interventions describe {interventions.shape} "
                f"(samples x genes)."
            )
        self.X = X
        self.interventions = interventions
        self.mask = interventions.mask
        self.levels = np.asarray(interventions.levels, dtype=np.float64)
        # The rule: gene g excludes the samples that target it (CSC of the mask).
        excluded = sp.csc_array(self.mask)
        excluded.sort_indices()
        self._excluded_indptr = excluded.indptr.astype(np.int64)
        self._excluded_rows = excluded.indices.astype(np.int64)
        self._lookup: sp.csr_array | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_samples, n_genes)``."""
        return self.X.shape

    # ----------------------------------------------------------------- exclusion
    @property
    def n_targeted(self) -> np.ndarray:
        """Per gene, the number of samples that target it (and are left out)."""
        return np.diff(self._excluded_indptr)

    @property
    def n_included(self) -> np.ndarray:
        """Per gene, the number of samples its statistics use."""
        return self.X.shape[0] - self.n_targeted

    def excluded(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples each gene leaves out, padded: ``(m, k_max)`` rows (-1 padding), counts."""
        genes = np.asarray(genes, dtype=np.int64)
        indptr = self._excluded_indptr
        counts = indptr[genes + 1] - indptr[genes]
        out = np.full((len(genes), int(counts.max(initial=0))), -1, dtype=np.int64)
        total = int(counts.sum())
        if total:
            which = np.repeat(np.arange(len(genes)), counts)
            offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            out[which, offset] = self._excluded_rows[np.repeat(indptr[genes], counts) + offset]
        return out, counts

    def excluded_rows(self, gene: int) -> np.ndarray:
        """The sorted samples that target ``gene`` (alone or in a combination)."""
        indptr = self._excluded_indptr
        return self._excluded_rows[indptr[gene] : indptr[gene + 1]]

    def included_means(self, weights: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        """Per gene g, the weighted mean of column g of X over the samples not targeting g.

        The weighted column sums minus the contributions of the targeted
        entries: one pass over X plus one gather of the targeted entries. A
        gene whose samples all target it (no weight left) takes
        ``fallback[g]``.
        """
        weights = np.asarray(weights, dtype=np.float64)
        iv = self.interventions
        rows, cols = iv.entry_rows, self.mask.indices
        p = self.X.shape[1]
        removed = np.bincount(cols, weights=weights[rows] * self.measured(rows, cols),
                              minlength=p)
        removed_weight = np.bincount(cols, weights=weights[rows], minlength=p)
        total = float(weights.sum())
        included = total - removed_weight
        # Below this share of the total weight, what is left is rounding.
        empty = included <= 1e-12 * total
        sums = weighted_column_sums(self.X, weights) - removed
        return np.where(empty, fallback, sums / np.where(empty, 1.0, included))

    # ----------------------------------------------------------------- reads
    @property
    def entry_lookup(self) -> sp.csr_array:
        """Sparse matrix with the structure of the mask storing entry index + 1.

        Looking up a (sample, gene) pair gives 0 when it is not a targeted
        entry and otherwise the position of its level in ``levels`` plus one.
        """
        if self._lookup is None:
            data = np.arange(1, self.mask.nnz + 1, dtype=np.int64)
            self._lookup = sp.csr_array(
                (data, self.mask.indices, self.mask.indptr), shape=self.mask.shape
            )
        return self._lookup

    def measured(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``X[rows[i], cols[i]]`` (the measured values, no substitution), float64."""
        return gather_entries(self.X, rows, cols)

    def values(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``Z[rows, cols]`` elementwise (any shape): T where known, else measured."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        shape = rows.shape
        r, c = rows.ravel(), cols.ravel()
        values = self.measured(r, c) if len(r) else np.zeros(0)
        if self.mask.nnz and len(r):
            hit = np.asarray(self.entry_lookup[r, c]).ravel()
            where = np.flatnonzero(hit)
            if where.size:
                level = self.levels[hit[where] - 1]
                known = ~np.isnan(level)
                values[where[known]] = level[known]
        return values.reshape(shape)

    def block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Dense ``Z[rows][:, cols]`` (a rectangular block), float64."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        X = self.X
        if sp.issparse(X):
            # Select along the compressed axis first (cheap), then the other.
            sub = sp.csc_array(X)[:, cols][rows] if X.format == "csc" else as_csr(X)[rows][:, cols]
            out = sub.toarray().astype(np.float64, copy=False)
        else:
            out = np.asarray(np.asarray(X)[np.ix_(rows, cols)], dtype=np.float64)
        sub_mask = self.mask[rows][:, cols].tocoo()
        if sub_mask.nnz:
            # Entry indices of the selected (row, col) pairs, then their levels.
            idx = np.asarray(
                self.entry_lookup[rows[sub_mask.row], cols[sub_mask.col]]
            ).ravel() - 1
            level = self.levels[idx]
            known = ~np.isnan(level)
            out[sub_mask.row[known], sub_mask.col[known]] = level[known]
        return out

    def with_values(self, X: Any) -> Design:
        """The same interventions over another matrix of values (e.g. the values a
        pass over a Dask X gathered, for the point reads of the downdates)."""
        other = Design.__new__(Design)
        other.__dict__.update(self.__dict__)
        other.X = X
        return other
