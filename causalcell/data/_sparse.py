"""Index arithmetic on CSR structures, shared by everything that walks targeted entries.

An intervention mask is a CSR matrix (samples x genes); its stored entries,
in CSR order, are aligned with the levels T. These helpers turn that layout
into row indices and ragged gathers without a Python loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from causalcell.data.lazy import is_dask_array, map_row_blocks

__all__ = ["as_csr", "entry_rows", "gather_entries", "ragged_gather"]


def entry_rows(indptr: np.ndarray) -> np.ndarray:
    """Row index of every stored entry of a CSR structure with this ``indptr``.

    Entry ``i`` of a CSR matrix ``M`` sits at ``(entry_rows(M.indptr)[i],
    M.indices[i])``.
    """
    indptr = np.asarray(indptr)
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def ragged_gather(
    indptr: np.ndarray, values: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the ragged rows ``rows`` of a CSR-like ``(indptr, values)``.

    Returns the new indptr (one row per element of ``rows``, repeats allowed)
    and the gathered values, without a Python loop.
    """
    lengths = np.diff(indptr)[rows]
    new_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    total = int(new_indptr[-1])
    if total == 0:
        return new_indptr, values[:0]
    offsets = np.arange(total, dtype=np.int64) - np.repeat(new_indptr[:-1], lengths)
    return new_indptr, values[np.repeat(np.asarray(indptr)[:-1][rows], lengths) + offsets]


def as_csr(X: Any) -> sp.csr_array:
    """A SciPy sparse matrix as a csr_array (shares the arrays of a CSR input)."""
    return X if isinstance(X, sp.csr_array) else sp.csr_array(X)


def gather_entries(X: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``X[rows[i], cols[i]]`` as a float64 vector, dense or sparse, without densifying.

    A Dask X is read once, in its row blocks (each block sends back only its
    entries), on the active Dask client or the threaded scheduler.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if len(rows) == 0:  # scipy returns a 2-D sparse result for empty index arrays
        return np.zeros(0)
    if is_dask_array(X):
        order = np.argsort(rows, kind="stable")
        r, c = rows[order], cols[order]

        def block_args(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
            lo, hi = np.searchsorted(r, [start, stop])
            return r[lo:hi] - start, c[lo:hi]

        parts = map_row_blocks(_gather_block, X, block_args=block_args, desc="Entries")
        out = np.empty(len(rows))
        out[order] = np.concatenate(parts)
        return out
    if sp.issparse(X):
        return np.asarray(as_csr(X)[rows, cols], dtype=np.float64).ravel()
    return np.asarray(np.asarray(X)[rows, cols], dtype=np.float64)


def _gather_block(block: Any, start: int, stop: int, rows: np.ndarray,
                  cols: np.ndarray) -> np.ndarray:
    """The entries of one row block (block-local rows), for :func:`gather_entries`."""
    return gather_entries(sp.csr_array(block) if sp.issparse(block) else block, rows, cols)
