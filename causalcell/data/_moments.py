"""One pass over the samples, and the exact per-gene leave-out: the engine of every
regression on the design matrix under intervention (:mod:`causalcell.data._design`).

**The pass** (:func:`moments`) reads X once, in row blocks, and forms with ``Z``
the substituted expression, ``W = Z - 1 shift^T`` (a per-gene shift that only
improves conditioning: the mean of the first row block over the samples not
targeting the gene; 0 for sparse X) and ``Y`` equal to ``W`` with every
targeted entry set to 0:

- ``cross = W_U^T Y`` (regulators x all genes, U = the union of all regulator
  sets): the regulator / target cross-products *already without* the samples
  in which each target is targeted; one dense product of the block's ``W_U``
  (gathered into a reused buffer) with ``Y``, or, when U is every gene,
  ``Y^T Y + S^T Y`` with S the (sparse) targeted entries of W, so that no copy
  of the whole block is made;
- ``W_U^T W_V`` for the targeted regulators V (where ``Y != W``), so that the
  regulator Gram ``W_U^T W_U`` is available (:meth:`Moments.gram`);
- the column sums of ``W_U`` and of ``Y``, and ``sum Y**2``.

Dense X is read in row blocks (a float64 copy of one block at a time, into one
buffer reused by every block; the shift and the control sums are taken from it,
so X is read once); sparse
X uses sparse products per block (sparse X denser than 15 % is read as dense
blocks); a Dask X is read block by block where Dask computes, and only the
statistics (plus, on request, the values the leave-out will need) come back.

**The leave-out** (:class:`LeftOut`): gene g's statistics over the samples
that do not target it are the totals minus the few excluded rows: the
regulator Gram and sums are downdated by ``V``, the regulator values in those
rows; the target side needs no downdate (``Y`` is already zero there), so a
gene's statistics never read its own values where it is targeted: the
exclusion is exact, bit for bit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from causalcell._progress import tqdm
from causalcell.data._design import Design
from causalcell.data._sparse import as_csr, entry_rows, gather_entries, ragged_gather
from causalcell.data.contract import check_finite_expression
from causalcell.data.lazy import (
    check_finite_block,
    check_row_chunks,
    format_bytes,
    is_dask_array,
    map_row_blocks,
    physical_memory,
    row_blocks,
)
from causalcell.errors import ParameterError

__all__ = [
    "BLOCK_VALUES", "LeftOut", "Moments", "PassBuffers", "check_gather", "leave_out_gather",
    "left_out", "moments",
]

#: Row blocks of the pass over the samples hold about this many float64 values
#: (16 MB): large enough for full-speed products, small enough that the block
#: buffers' first touch stays cheap (measured against 32 MB blocks in fresh
#: processes: the first fit 2.2-2.4x instead of 2.4-2.8x its floor at 20,000 x
#: 2,000, 1.65x instead of 1.85x at 50,000 x 1,000; benchmarks/bench_fit.py).
BLOCK_VALUES = 1 << 21
# Values of the chunk of rows a dense block is prepared in (1 MiB of float64: in cache).
_CHUNK_VALUES = 1 << 17
# Sparse X denser than this is read as dense blocks: BLAS beats sparse products.
_SPARSE_DENSITY = 0.15
# Up to this many values (u x u regulators), the regulator Gram matrix is
# assembled once and then indexed (the leave-outs read it many times).
_GRAM_VALUES = 1 << 24
# Largest share of this machine's memory the values gathered for the leave-out may take.
_GATHER_MEMORY_FRACTION = 0.4


# --------------------------------------------------------------------------- results
@dataclass
class Moments:
    """Sufficient statistics of every per-gene regression (see the module docstring).

    Regulator quantities are indexed by position in :attr:`regulators`,
    target quantities by gene.
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
    _full_gram: np.ndarray | None = field(default=None, repr=False, compare=False)
    _full_scatter: np.ndarray | None = field(default=None, repr=False, compare=False)

    def gram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Regulator Gram entries ``W_U[a]^T W_U[b]`` (a, b: broadcastable positions)."""
        u = len(self.regulators)
        if u * u <= _GRAM_VALUES:
            if self._full_gram is None:  # read many times: assemble it once
                every = np.arange(u)
                self._full_gram = self._gram(every[:, None], every[None, :])
            # One flat gather: about twice as fast as indexing with two arrays
            # (positions are in range: mode="clip" skips the bounds-check buffer).
            return np.take(self._full_gram, np.asarray(a) * u + np.asarray(b), mode="clip")
        return self._gram(a, b)

    def symmetric_scatter(self) -> np.ndarray | None:
        """The regulators' centred products over every counted sample, symmetrized,
        ``(u, u)`` (None when u x u is too large to hold); assembled once.

        A gene that no counted sample targets is regressed on exactly these
        samples, so its scatter matrix is this one's submatrix: the per-gene
        centring and symmetrizing of :meth:`LeftOut.symmetric_scatter` then
        reduce to one gather, with the same arithmetic (bit for bit).
        """
        u = len(self.regulators)
        if u * u > _GRAM_VALUES:
            return None
        if self._full_scatter is None:
            every = np.arange(u)
            gram = self.gram(every[:, None], every[None, :])
            s = self.regulator_sums
            outer = s[:, None] * s[None, :]
            outer *= 1.0 / self.n if self.n > 0 else 0.0
            gram -= outer
            gram += gram.T.copy()
            gram *= 0.5
            self._full_scatter = gram
        return self._full_scatter

    def _gram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.broadcast_arrays(a, b)
        genes_b = self.regulators[b]
        out = self.cross[a, genes_b]
        col = self.targeted_column[genes_b]
        hit = np.nonzero(col >= 0)
        if hit[0].size:
            # Y differs from W only in the columns of targeted genes.
            out[hit] = self.targeted_gram[a[hit], col[hit]]
        return out

    def without(self, part: Moments) -> Moments:
        """The moments of the samples counted here but not in ``part`` (same layout)."""
        return Moments(
            n=self.n - part.n,
            regulators=self.regulators,
            position=self.position,
            shift=self.shift,
            n_included=self.n_included - part.n_included,
            regulator_sums=self.regulator_sums - part.regulator_sums,
            target_sums=self.target_sums - part.target_sums,
            target_squares=self.target_squares - part.target_squares,
            cross=self.cross - part.cross,
            targeted_gram=self.targeted_gram - part.targeted_gram,
            targeted_column=self.targeted_column,
        )


class LeftOut:
    """Genes (m,) regressed on regulators (m, r) over the samples that do not target them.

    Parameters
    ----------
    moments
        The pass over the samples.
    genes
        Target genes.
    regs
        Regulator gene indices of each target.
    excluded
        ``(m, k, r)``: the regulator values (``W``, i.e. Z minus the shift)
        in the ``k`` samples each gene leaves out, zero-padded; None when no
        gene leaves a sample out. See :func:`left_out`.
    """

    def __init__(
        self, moments: Moments, genes: np.ndarray, regs: np.ndarray,
        excluded: np.ndarray | None,
    ) -> None:
        self.moments = moments
        self.genes = np.asarray(genes, dtype=np.int64)
        self.regs = np.asarray(regs, dtype=np.int64)
        self.position = moments.position[self.regs]
        self.excluded = excluded
        sums = moments.regulator_sums[self.position]
        if excluded is not None:
            sums = sums - excluded.sum(axis=1)
        self.regulator_sums = sums
        self.target_sums = moments.target_sums[self.genes]
        self.n = moments.n_included[self.genes].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.inv_n = np.where(self.n > 0, 1.0 / self.n, 0.0)

    def gram(self, a: Any = slice(None), b: Any = slice(None)) -> np.ndarray:
        """``(m, |a|, |b|)`` uncentred products of regulators a and b (positions in
        ``regs``) over the included samples."""
        pos = self.position
        gram = self.moments.gram(pos[:, a][:, :, None], pos[:, b][:, None, :])
        if self.excluded is not None:
            V = self.excluded
            gram = gram - np.einsum("mki,mkj->mij", V[:, :, a], V[:, :, b], optimize=True)
        return gram

    def scatter(self, a: Any = slice(None), b: Any = slice(None)) -> np.ndarray:
        """Centred products (scatter matrix) of regulators a and b, ``(m, |a|, |b|)``."""
        s = self.regulator_sums
        outer = s[:, a][:, :, None] * s[:, b][:, None, :]
        outer *= self.inv_n[:, None, None]
        gram = self.gram(a, b)  # a new array: centred in place
        gram -= outer
        return gram

    def symmetric_scatter(self) -> np.ndarray:
        """:meth:`scatter` of every regulator with every regulator, symmetrized
        (``(S + S^T) / 2``: rounding leaves the two products of a pair unequal),
        ``(m, r, r)``: the matrices the solvers factorize."""
        full = None if self.excluded is not None else self.moments.symmetric_scatter()
        if full is not None:  # no gene leaves a sample out: a submatrix of one scatter
            u = len(self.moments.regulators)
            pos = self.position
            return np.take(full, pos[:, :, None] * u + pos[:, None, :], mode="clip")
        S = self.scatter()
        S += S.transpose(0, 2, 1).copy()
        S *= 0.5
        return S

    def target_scatter(self) -> np.ndarray:
        """Centred products of each regulator with the target, ``(m, r)``."""
        cross = self.moments.cross[self.position, self.genes[:, None]]
        return cross - self.regulator_sums * (self.target_sums * self.inv_n)[:, None]

    def target_sum_of_squares(self) -> np.ndarray:
        """Centred sum of squares of each target, ``(m,)``."""
        return self.moments.target_squares[self.genes] - self.target_sums**2 * self.inv_n

    def regulator_sum_of_squares(self) -> np.ndarray:
        """Centred sums of squares of the regulators, ``(m, r)`` (the scatter diagonal)."""
        pos = self.position
        squares = self.moments.gram(pos, pos)
        if self.excluded is not None:
            squares = squares - np.einsum("mki,mki->mi", self.excluded, self.excluded)
        return squares - self.regulator_sums**2 * self.inv_n[:, None]

    def regulator_means(self) -> np.ndarray:
        """Means of the regulators over the included samples, ``(m, r)``."""
        return self.moments.shift[self.regs] + self.regulator_sums * self.inv_n[:, None]

    def target_means(self) -> np.ndarray:
        """Means of the targets over their included samples, ``(m,)``."""
        return self.moments.shift[self.genes] + self.target_sums * self.inv_n


def left_out(moments: Moments, design: Design, genes: np.ndarray, regs: np.ndarray) -> LeftOut:
    """:class:`LeftOut` of genes (m,) on regulators (m, r), reading the excluded values
    from ``design`` (elementwise: each gene's own rows and regulators)."""
    genes = np.asarray(genes, dtype=np.int64)
    regs = np.asarray(regs, dtype=np.int64)
    rows, counts = design.excluded(genes)
    if not counts.any():
        return LeftOut(moments, genes, regs, None)
    # The (gene, slot) pairs that hold a sample: one row of regulator values each,
    # written into the padded stack whole (no mask over every value of it).
    gene_at, slot = np.nonzero(rows >= 0)
    cols = regs[gene_at]
    values = design.values(np.broadcast_to(rows[gene_at, slot][:, None], cols.shape), cols)
    values -= moments.shift[cols]
    V = np.zeros((*rows.shape, regs.shape[1]))
    V[gene_at, slot] = values
    return LeftOut(moments, genes, regs, V)


# --------------------------------------------------------------------------- the pass
@dataclass
class _Entries:
    """The targeted entries of one row block: block-local rows, genes, levels."""

    rows: np.ndarray
    cols: np.ndarray
    levels: np.ndarray
    known: np.ndarray

    @classmethod
    def of(cls, design: Design, start: int, stop: int) -> _Entries:
        """The entries of the contiguous rows ``start:stop``."""
        indptr = design.mask.indptr
        lo, hi = indptr[start], indptr[stop]
        rows = entry_rows(indptr[start : stop + 1] - lo)
        lv = design.levels[lo:hi]
        return cls(rows, design.mask.indices[lo:hi].astype(np.int64), lv, ~np.isnan(lv))

    @classmethod
    def of_rows(cls, design: Design, rows: np.ndarray) -> _Entries:
        """The entries of the (sorted) rows ``rows``."""
        indptr, cols = ragged_gather(design.mask.indptr, design.mask.indices, rows)
        _, lv = ragged_gather(design.mask.indptr, design.levels, rows)
        return cls(entry_rows(indptr), cols.astype(np.int64), lv, ~np.isnan(lv))


@dataclass
class _Layout:
    """What every block's statistics are indexed by (shared by all blocks)."""

    regulators: np.ndarray  # U
    position: np.ndarray  # position of a gene in U, -1 if none
    targeted_regs: np.ndarray  # V
    shift: np.ndarray  # (p,); zeros on the sparse path
    # U is the last |U| columns and no sample targets them (e.g. a spline basis
    # beside the genes): their products with themselves are symmetric.
    trailing: bool = False


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


def _as_dense(block: Any, out: np.ndarray | None = None) -> np.ndarray:
    """A block of rows (NumPy or SciPy sparse) as float64, in ``out`` when given.

    ``out`` (at least as many rows as the block) is reused from block to block:
    a fresh array per block pays for first-touching its pages, which on these
    machines costs more than the copy itself.
    """
    if out is None:
        if sp.issparse(block):
            return block.toarray().astype(np.float64, copy=False)
        return np.array(block, dtype=np.float64)
    Z = out[: block.shape[0]]
    if sp.issparse(block):
        sp.csr_array(block, dtype=np.float64).toarray(out=Z)  # zeroes Z, then writes
    else:
        np.copyto(Z, block, casting="unsafe")
    return Z


def _first_block_shift(Z: np.ndarray, e: _Entries) -> np.ndarray:
    """Per gene, the mean over the block's samples that do not target it.

    Conditioning only; it never reads a gene's values where it is targeted.
    ``Z`` (raw values) is left as it was: the targeted entries are zeroed for
    the sum and then restored, so the block is not copied.
    """
    n, p = Z.shape
    kept = Z[e.rows, e.cols]
    Z[e.rows, e.cols] = 0.0
    sums = Z.sum(axis=0)
    Z[e.rows, e.cols] = kept
    counts = n - np.bincount(e.cols, minlength=p).astype(np.float64)
    return np.divide(sums, counts, out=np.zeros(p), where=counts > 0)


#: The work arrays beside the block (the regulator columns, the product, the
#: cross sums) are prepared only up to this many values (64 MB): a larger pass
#: is long enough that their first touches do not matter, and a fit that the
#: cost check then refuses must not have claimed its memory first.
_PREPARED_WORK_VALUES = 1 << 23


class PassBuffers:
    """The work arrays of a pass over dense X in memory, made ahead and first touched
    on a helper thread.

    A process pays for each page of memory new to it on first touch, and on
    these machines that costs more than the arithmetic that fills it: 7-36 ms
    for the 16 MB block buffer in a fresh process (measured; the same copy
    into a reused buffer takes 4 ms). A caller with single-threaded setup work
    before the pass (validating obs, reading a network's edges: Python, one
    core busy) makes this first, so that the other core touches the pages
    meanwhile, and hands it to :func:`moments`: the block buffer and, given a
    bound on the number of regulators, the regulator columns, the product and
    the cross sums of the pass (zeros). The pass takes what fits its own
    shapes and allocates the rest as usual.

    Parameters
    ----------
    n_samples, n_genes
        The shape of X.
    block_rows
        The pass's ``block_rows`` (default: its default block).
    regulators
        At least the number of regulators the pass will have (e.g. the
        network's nodes with an out-edge among the genes); None: the block
        buffer only.
    """

    def __init__(self, n_samples: int, n_genes: int, *, block_rows: int | None = None,
                 regulators: int | None = None) -> None:
        rows = max(1, min(_block_rows(n_genes, block_rows), n_samples))
        self.shape = (rows, n_genes)
        self.regulators: int | None = None
        if regulators is not None:
            bound = int(min(max(regulators, 0), n_genes))
            if sum(self._sizes(rows, n_genes, bound)) <= _PREPARED_WORK_VALUES:
                self.regulators = bound
        # Allocated here, touched there: memory a helper thread allocates comes from
        # its own malloc arena, new pages at every fit (measured: warm fits 4 % slower),
        # while the caller's allocations reuse what its earlier passes freed.
        self._block: np.ndarray | None = None
        self._work: tuple[np.ndarray, np.ndarray] | None = None
        try:
            self._block = np.empty(self.shape)
            if self.regulators is not None:
                columns, product, _ = self._sizes(rows, n_genes, self.regulators)
                self._work = (np.empty(columns + product),
                              np.empty((self.regulators, n_genes)))
        except MemoryError:  # the pass then allocates what is missing, as without this
            pass
        self._thread = threading.Thread(target=self._touch, name="causalcell-pass-buffers",
                                        daemon=True)
        self._thread.start()

    @staticmethod
    def _sizes(rows: int, p: int, bound: int) -> tuple[int, int, int]:
        """Values of the regulator columns, the product (both with the pass's at most
        two extra columns / rows) and the cross sums, for ``bound`` regulators."""
        return rows * (bound + 2), (bound + 2) * p, bound * p

    def _touch(self) -> None:
        # NumPy releases the GIL for the fills: the caller's setup runs meanwhile.
        for array in (self._block, *(self._work or ())):
            if array is not None:
                array.fill(0.0)

    def take_block(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The block buffer, once, if it has this shape (waits for the helper thread)."""
        self._thread.join()
        block, self._block = self._block, None
        return block if block is not None and block.shape == tuple(shape) else None

    def take_work(
        self, rows: int, p: int, u: int, extra: int
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray] | None:
        """Once, if they fit: the regulator columns ``(rows, u + extra)`` (None when U
        is every gene), the product ``(u + extra, p)`` (``(u, p)`` when U is every
        gene) and the cross sums ``(u, p)``, zeros."""
        self._thread.join()
        work, self._work = self._work, None
        if (work is None or self.regulators is None or p != self.shape[1]
                or rows > self.shape[0] or u > self.regulators or extra > 2):
            return None
        arena, cross = work
        partial = u < p
        start = self._sizes(*self.shape, self.regulators)[0]
        columns = arena[: rows * (u + extra)].reshape(rows, u + extra) if partial else None
        product = arena[start : start + (u + extra if partial else u) * p].reshape(-1, p)
        return columns, product, cross[:u]


class _Buffers:
    """Work arrays of the dense block path, allocated once per pass and reused.

    With U a subset of the genes, ``WU`` has ``extra`` more columns than U
    (see :func:`_dense_sums`), and so has ``cross`` rows. ``prepared``: the
    :class:`PassBuffers` to take them from; ``cross_sums`` is then the pass's
    running cross sums (zeros), else None.
    """

    def __init__(self, rows: int, p: int, u: int, extra: int = 1,
                 prepared: PassBuffers | None = None) -> None:
        Z = None if prepared is None else prepared.take_block((rows, p))
        self.Z = np.empty((rows, p)) if Z is None else Z
        work = None if prepared is None else prepared.take_work(rows, p, u, extra)
        if work is None:
            partial = u < p
            self.WU = np.empty((rows, u + extra)) if partial else None
            self.cross = np.empty((u + extra if partial else u, p))
            self.cross_sums = None
        else:
            self.WU, self.cross, self.cross_sums = work


def _chunk_rows(p: int) -> int:
    """Rows of a block prepared at once: about _CHUNK_VALUES values, so that the
    elementwise steps on them run in cache."""
    return max(16, _CHUNK_VALUES // max(1, p))


def _dense_sums(Z: np.ndarray, e: _Entries, lay: _Layout, buffers: _Buffers | None = None,
                into: _Sums | None = None, source: np.ndarray | None = None,
                row_weights: np.ndarray | None = None,
                weighted: np.ndarray | None = None) -> _Sums:
    """Statistics of one dense block; ``Z`` (float64) is overwritten.

    ``Z`` holds the block's raw values, or, with ``source`` (the block as read,
    any real dtype), only receives them: the copy then is the shift's
    subtraction. With ``into`` the block's statistics are added to it (and it
    is returned). With ``row_weights`` (one per row of the block),
    ``row_weights @ X`` of the block is added to ``weighted``.

    The elementwise steps (shift, levels T, the copy of W_U, zeroing the
    targeted entries, sums of squares of Y) run on chunks of rows that stay
    in cache, so the block is read from memory once before the product
    ``W_U^T Y`` (and once by it), not once per step. With U a subset of the
    genes, the product also gives Y's column sums and ``row_weights^T Y``:
    W_U is followed by a column of ones and one of the row weights, so these
    sums cost two rows of the product instead of passes over the chunks.
    """
    m, p = Z.shape
    U, V = lay.regulators, lay.targeted_regs
    u = len(U)
    partial = u < p
    weights = row_weights is not None
    WU = None
    if partial:
        extra = 1 + weights
        augmented = np.empty((m, u + extra)) if buffers is None else buffers.WU[:m]
        augmented[:, u] = 1.0
        if weights:
            augmented[:, u + 1] = row_weights
        WU = augmented[:, :u]
    target_sums, target_squares = np.zeros(p), np.zeros(p)
    values = np.empty(len(e.rows))  # W at the targeted entries, before they are zeroed
    # X minus the shift at the targeted entries (row weights reach them: Y does not)
    raw = np.empty(len(e.rows)) if partial and weights else None
    step = _chunk_rows(p)
    edges = np.searchsorted(e.rows, np.arange(0, m + step, step))
    for i, lo in enumerate(range(0, m, step)):
        hi = min(lo + step, m)
        a, b = edges[i], edges[i + 1]
        Zc = Z[lo:hi]
        if weights and not partial:  # the raw values, while the chunk is in cache
            weighted += row_weights[lo:hi] @ (Zc if source is None else source[lo:hi])
        if source is None:
            Zc -= lay.shift
        else:
            np.subtract(source[lo:hi], lay.shift, out=Zc, casting="unsafe")
        r, c, k = e.rows[a:b] - lo, e.cols[a:b], e.known[a:b]
        if raw is not None:
            raw[a:b] = Zc[r, c]
        Zc[r[k], c[k]] = e.levels[a:b][k] - lay.shift[c[k]]  # Zc is now W
        if partial:
            # mode="clip" (U is in range): numpy then skips buffering the output for
            # its bounds check, which halves the cost of this copy.
            np.take(Zc, U, axis=1, out=WU[lo:hi], mode="clip")
        values[a:b] = Zc[r, c]
        Zc[r, c] = 0.0  # Zc is now Y
        if not partial:
            target_sums += Zc.sum(axis=0)
        target_squares += np.einsum("ij,ij->j", Zc, Zc)
    r, c = e.rows, e.cols
    if partial:
        product = np.empty((u + extra, p)) if buffers is None else buffers.cross
        if lay.trailing:
            # Y's last u columns are W_U itself: W_U^T W_U is symmetric, and NumPy
            # computes a product of an array with its own transpose by BLAS's syrk
            # (half the multiplications). Measured for a spline basis (1,500 of
            # 3,500 columns): 8 % less time per block.
            genes = p - u
            np.matmul(augmented.T, Z[:, :genes], out=product[:, :genes])
            np.matmul(WU.T, WU, out=product[:u, genes:])
            np.matmul(augmented[:, u:].T, WU, out=product[u:, genes:])
        else:
            np.matmul(augmented.T, Z, out=product)
        cross = product[:u]
        target_sums = product[u].copy()
        if weights:
            # row_weights^T X = row_weights^T Y + (sum of the weights) shift + the
            # weighted values Y leaves out (X minus the shift at the targeted entries).
            weighted += product[u + 1]
            weighted += row_weights.sum() * lay.shift
            weighted += np.bincount(c, weights=row_weights[r] * raw, minlength=p)
        reg_sums = WU.sum(axis=0)
    else:
        # U = every gene: W_U^T Y = Y^T Y + S^T Y with S the targeted entries of W
        # (sparse), so that no copy of W is made.
        cross = np.matmul(Z.T, Z, out=None if buffers is None else buffers.cross)
        cross += sp.csr_array((values, (c, r)), shape=(u, m)) @ Z
        reg_sums = target_sums + np.bincount(c, weights=values, minlength=u)
    # W_U^T W_V = W_U^T Y_V + W_U^T S_V: W_V differs from Y_V only at the targeted
    # entries (S_V), so the targeted regulators need no product of their own.
    column = np.searchsorted(V, c)
    in_v = column < len(V)
    in_v[in_v] = V[column[in_v]] == c[in_v]
    S_V = sp.csr_array((values[in_v], (column[in_v], r[in_v])), shape=(len(V), m))
    if partial:
        tg = cross[:, V] + (S_V @ WU).T
    else:
        # Here Y_U is Y itself: W_U^T W_V = (Y + S)^T (Y_V + S_V).
        S = sp.csr_array((values, (c, r)), shape=(u, m))
        tg = cross[:, V] + (S_V @ Z).T + (S_V @ S.T).T.toarray()
    if into is None:
        if buffers is not None:  # the buffers are overwritten by the next block
            cross = cross.copy()
        return _Sums(reg_sums, target_sums, target_squares, cross, tg)
    into.regulator_sums += reg_sums
    into.target_sums += target_sums
    into.target_squares += target_squares
    into.cross += cross
    into.targeted_gram += tg
    return into


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
    """Statistics of one block (a Dask task: no buffers shared between blocks)."""
    if sparse_path:
        return _sparse_sums(block, e, lay)
    return _dense_sums(_as_dense(block), e, lay)


def _density(X: Any) -> float:
    n, p = X.shape
    return X.nnz / max(1, n * p)


def _block_rows(n_cols: int, block_rows: int | None) -> int:
    if block_rows is not None:
        return max(1, int(block_rows))
    return max(64, BLOCK_VALUES // max(1, n_cols))


def moments(
    design: Design,
    regulators: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    block_rows: int | None = None,
    gather: sp.csr_array | None = None,
    row_weights: np.ndarray | None = None,
    what: str = "X",
    verbose: bool = False,
    prepared: PassBuffers | None = None,
) -> Moments:
    """One pass over the samples: the statistics every per-gene regression needs.

    Parameters
    ----------
    design
        X and its interventions. X may be a NumPy array, a SciPy sparse
        matrix, or a Dask array chunked along samples (its blocks are
        processed where Dask computes, see
        :func:`causalcell.data.lazy.map_row_blocks`; only the statistics come
        back).
    regulators
        Sorted gene indices of every gene that regulates some gene (U).
    rows
        Sorted samples to count (default: all). With a ``shift`` taken from
        a pass over all samples, :meth:`Moments.without` then gives the
        moments of the other samples (e.g. the halves of stability selection).
    shift
        The per-gene shift (default: from the first row block; always 0 for
        sparse X read as sparse blocks).
    block_rows
        Rows per block of in-memory X (default: about 4M values per block;
        a Dask array's own chunks are its blocks).
    gather
        Sparse (samples x genes) pattern whose measured values are collected
        during the pass into :attr:`Moments.gathered` (for out-of-core X,
        where reading single entries later would cost a pass each).
    row_weights
        Per-sample weights; :attr:`Moments.weighted_sum` is then
        ``row_weights @ X`` (e.g. the control mean), computed in the pass.
    what
        The expression matrix's name, for messages (e.g. ``"layer 'log1p'"``).
    verbose
        Show a progress bar.
    prepared
        Work arrays for dense X in memory, prepared while the caller set up
        (see :class:`PassBuffers`); ignored otherwise.

    Returns
    -------
    Moments

    Raises
    ------
    DataContractError
        If X holds NaN or infinite values (checked per block for Dask X; for
        X in memory, the pass's own sums are checked, and only when they are
        not finite is X scanned, to name the first sample at fault), or a
        Dask X is chunked along genes.
    """
    X = design.X
    p = X.shape[1]
    regulators = np.asarray(regulators, dtype=np.int64)
    position = np.full(p, -1, dtype=np.int64)
    position[regulators] = np.arange(len(regulators))
    # The targeted regulators of the whole design, so that passes over subsets
    # of the samples share one layout (and can be subtracted).
    targeted_regs = regulators[design.n_targeted[regulators] > 0]
    u = len(regulators)
    trailing = bool(0 < u < p and np.array_equal(regulators, np.arange(p - u, p))
                    and not len(targeted_regs))
    lay = _Layout(regulators, position, targeted_regs, np.zeros(p), trailing)
    if rows is not None:
        if gather is not None or row_weights is not None:
            raise ValueError("moments: gather / row_weights are for passes over every sample.")
        rows = np.asarray(rows, dtype=np.int64)
        if is_dask_array(X):  # a Dask X is subset lazily, then read like any other
            design, rows = Design(X[rows], design.interventions.take(rows)), None
    return _pass(design, lay, rows=rows, shift=shift, block_rows=block_rows, gather=gather,
                 row_weights=row_weights, what=what, verbose=verbose, prepared=prepared)


def _pass(
    design: Design, lay: _Layout, *, rows: np.ndarray | None, shift: np.ndarray | None,
    block_rows: int | None, gather: sp.csr_array | None, row_weights: np.ndarray | None,
    what: str, verbose: bool, prepared: PassBuffers | None = None,
) -> Moments:
    """:func:`moments` once the layout is fixed."""
    X = design.X
    n, p = X.shape
    targeted_column = np.full(p, -1, dtype=np.int64)
    targeted_column[lay.targeted_regs] = np.arange(len(lay.targeted_regs))
    if is_dask_array(X):
        sparse_path = sp.issparse(X._meta)  # each block then decides for itself
    else:
        sparse_path = sp.issparse(X) and _density(X) <= _SPARSE_DENSITY
    if shift is not None and not sparse_path:
        lay.shift = np.asarray(shift, dtype=np.float64)
    visited = n if rows is None else len(rows)
    entries = design.mask.indices if rows is None else _Entries.of_rows(design, rows).cols
    gathered = weighted = None
    if is_dask_array(X):
        sums, gathered, weighted = _dask_pass(design, lay, sparse_path, shift is None, gather,
                                              row_weights, verbose)
    else:
        step = _block_rows(p, block_rows)
        w = None if row_weights is None else np.asarray(row_weights, dtype=np.float64)
        # NaN or inf in X propagate through the sums silently: they are refused
        # right after, with the contract's error, not half-reported as warnings.
        finite = _FiniteCheck(design, rows, what)
        with np.errstate(invalid="ignore", over="ignore"):
            sums, weighted = _memory_pass(design, lay, step, sparse_path, rows,
                                          shift is None and not sparse_path, w, verbose,
                                          finite, prepared)
        if gather is not None:
            g = sp.csr_array(gather, dtype=bool)
            g.sort_indices()
            values = gather_entries(X, entry_rows(g.indptr), g.indices)
            gathered = sp.csr_array((values, g.indices, g.indptr), shape=(n, p))
    return Moments(
        n=visited,
        regulators=lay.regulators,
        position=lay.position,
        shift=lay.shift,
        n_included=visited - np.bincount(entries, minlength=p),
        regulator_sums=sums.regulator_sums,
        target_sums=sums.target_sums,
        target_squares=sums.target_squares,
        cross=sums.cross,
        targeted_gram=sums.targeted_gram,
        targeted_column=targeted_column,
        gathered=gathered,
        weighted_sum=weighted,
    )


class _FiniteCheck:
    """Refuses NaN or infinite values in the samples a pass over in-memory X reads,
    with the data contract's error, as early as the pass can tell.

    The targeted entries (replaced by T, then zeroed, in the pass) are read
    directly before the pass. Every other value enters the sums of Y, and NaN
    and inf propagate through sums: after each block, finite running sums
    prove the values read so far finite without a scan of their own. Only
    when something is not finite is X scanned, to name the first sample at
    fault (a sum can also overflow on finite values; the scan then finds
    nothing, as the contract's would not, and the pass goes on).
    """

    def __init__(self, design: Design, rows: np.ndarray | None, what: str) -> None:
        X = design.X
        # Derived designs (e.g. a spline basis beside the genes): their X was validated.
        self.active = isinstance(X, np.ndarray) or sp.issparse(X)
        self.design, self.rows, self.what = design, rows, what
        if self.active:
            e = (_Entries.of(design, 0, X.shape[0]) if rows is None
                 else _Entries.of_rows(design, rows))
            sample = e.rows if rows is None else rows[e.rows]
            if not np.isfinite(design.measured(sample, e.cols)).all():
                self.scan()

    def after_block(self, sums: _Sums) -> None:
        """Check the running sums (three vectors: cheap at every block)."""
        if self.active and not all(np.isfinite(a).all() for a in (
                sums.target_sums, sums.target_squares, sums.regulator_sums)):
            self.scan()
            self.active = False  # an overflow of finite values: nothing to refuse

    def scan(self) -> None:
        check_finite_expression(self.design.X, self.design.interventions.obs_names, self.what,
                                self.rows)


def _empty_sums(lay: _Layout, p: int) -> _Sums:
    u = len(lay.regulators)
    return _Sums(np.zeros(u), np.zeros(p), np.zeros(p), np.zeros((u, p)),
                 np.zeros((u, len(lay.targeted_regs))))


def _memory_pass(
    design: Design, lay: _Layout, step: int, sparse_path: bool, rows: np.ndarray | None,
    first_block_shift: bool, row_weights: np.ndarray | None, verbose: bool,
    finite: _FiniteCheck, prepared: PassBuffers | None = None,
) -> tuple[_Sums, np.ndarray | None]:
    """The pass over in-memory X; also ``row_weights @ X`` and, on the dense path, the
    shift from the first block, so that X is read once."""
    X = design.X
    n, p = X.shape
    if sparse_path:
        X = as_csr(X)
    sums = _empty_sums(lay, p)
    weighted = None if row_weights is None else np.zeros(p)
    count = n if rows is None else len(rows)
    buffers = None
    if not sparse_path:
        buffers = _Buffers(min(step, count), p, len(lay.regulators),
                           extra=1 + (row_weights is not None), prepared=prepared)
        if buffers.cross_sums is not None:
            sums.cross = buffers.cross_sums
    # A derived X (e.g. the spline basis beside the genes) that can write its rows
    # into the block buffer is read there, with no block-sized array of its own.
    read_into = None if (sparse_path or rows is not None) else getattr(X, "read_rows_into", None)
    def add_block(start: int, stop: int) -> None:
        nonlocal sums, weighted
        w = None if weighted is None else row_weights[start:stop]
        if read_into is not None:
            entries = _Entries.of(design, start, stop)
            Z = read_into(start, stop, buffers.Z)
            if start == 0 and first_block_shift:
                lay.shift = _first_block_shift(Z, entries)
            _dense_sums(Z, entries, lay, buffers, into=sums, row_weights=w, weighted=weighted)
            return
        if rows is None:  # contiguous rows: a view of dense X, no copy
            block, entries = X[start:stop], _Entries.of(design, start, stop)
        else:
            idx = rows[start:stop]
            block, entries = X[idx], _Entries.of_rows(design, idx)
        if sparse_path:
            if weighted is not None:
                weighted += np.asarray(row_weights[start:stop] @ block, dtype=np.float64)
            sums += _sparse_sums(block, entries, lay)
            return
        # The weighted row sum (e.g. the control mean) is taken chunk by chunk
        # with the other statistics, not in a pass of its own.
        if isinstance(block, np.ndarray) and not (start == 0 and first_block_shift):
            # Read once: the shift's subtraction is the copy into the buffer.
            _dense_sums(buffers.Z[: stop - start], entries, lay, buffers, into=sums,
                        source=block, row_weights=w, weighted=weighted)
            return
        Z = _as_dense(block, buffers.Z)
        if start == 0 and first_block_shift:
            lay.shift = _first_block_shift(Z, entries)
        _dense_sums(Z, entries, lay, buffers, into=sums, row_weights=w, weighted=weighted)

    for start in tqdm(
        range(0, count, step), desc="Gram (samples)", unit="block", disable=not verbose,
        leave=False,
    ):
        add_block(start, min(start + step, count))
        finite.after_block(sums)  # refused at the first block holding NaN or inf
    return sums, weighted


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


def _dask_block(
    block: Any, start: int, stop: int, e: _Entries, lay: _Layout, g_rows: np.ndarray,
    g_cols: np.ndarray, w_rows: np.ndarray | None, w: np.ndarray | None,
) -> _DaskPart:
    """Statistics of one Dask block, computed on the worker that holds it."""
    check_finite_block(block, start)
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
    design: Design, lay: _Layout, sparse_path: bool, first_block_shift: bool,
    gather: sp.csr_array | None, row_weights: np.ndarray | None, verbose: bool,
) -> tuple[_Sums, sp.csr_array | None, np.ndarray | None]:
    """The pass over a Dask array: one task per row block, statistics folded in order."""
    X = design.X
    check_row_chunks(X)
    n, p = X.shape
    # Sparse blocks keep shift 0 (a shift would densify them); dense blocks are
    # centred on the first block, as in memory.
    if first_block_shift and not sparse_path:
        first = row_blocks(X)[0]
        block = X.blocks[0].compute()
        check_finite_block(block, 0)
        lay.shift = _first_block_shift(_as_dense(block), _Entries.of(design, *first))
    g = sp.csr_array((n, p), dtype=bool) if gather is None else sp.csr_array(gather, dtype=bool)
    g.sort_indices()
    w = None if row_weights is None else np.asarray(row_weights, dtype=np.float64)

    def block_args(start: int, stop: int) -> tuple[Any, ...]:
        lo, hi = g.indptr[start], g.indptr[stop]
        g_rows = entry_rows(g.indptr[start : stop + 1] - lo)
        if w is None:
            w_rows, w_b = None, None
        else:
            w_rows = np.flatnonzero(w[start:stop])
            w_b = w[start:stop][w_rows]
        return (_Entries.of(design, start, stop), lay, g_rows, g.indices[lo:hi], w_rows, w_b)

    total = map_row_blocks(_dask_block, X, block_args=block_args, combine=_DaskPart.combine,
                           verbose=verbose, desc="Gram (sample blocks)")
    gathered = None
    if gather is not None:
        data = np.concatenate(total.gathered) if total.gathered else np.zeros(0)
        gathered = sp.csr_array((data, g.indices, g.indptr), shape=(n, p))
    return total.sums, gathered, total.weighted


def leave_out_gather(
    design: Design, parents: sp.spmatrix | sp.sparray | None, pool: np.ndarray, what: str,
    fix: str = ("Use a network with fewer regulators per gene than a full regulator pool, "
                "or fit on pseudobulk profiles (causalcell.data.pseudobulk)."),
) -> sp.csr_array:
    """The entries an out-of-core pass must collect for the leave-outs (samples x genes).

    Single entries of a Dask X cannot be read cheaply after the pass, so the pass
    gathers every value a leave-out will read: each targeted sample's regulators
    of its targeted genes (``parents``: (p, p), regulator r of gene g at (r, g);
    or, with ``parents=None``, every member of the regulator ``pool``) and the
    targeted entries themselves. The one rule of every regression on the design
    (ridge, OLS, spline, IV, and :func:`causalcell.graph.learn_network`'s pool).

    Raises
    ------
    ParameterError
        If the values would not fit in memory (:func:`check_gather`), naming
        ``what`` and suggesting ``fix``.
    """
    mask = design.mask
    n, p = design.shape
    if parents is not None:
        need = sp.csr_array(mask.astype(np.float64) @ sp.csr_array(parents).T.astype(np.float64))
    else:
        rows = np.flatnonzero(np.diff(mask.indptr))
        need = sp.csr_array((np.ones(len(rows) * len(pool)),
                             (np.repeat(rows, len(pool)), np.tile(pool, len(rows)))),
                            shape=(n, p))
    gather = (sp.csr_array(need, dtype=bool) + mask).astype(bool)
    check_gather(gather.nnz, what, fix)
    return gather


def check_gather(nnz: int, what: str, fix: str) -> None:
    """Refuse an out-of-core fit whose gathered leave-out values would not fit in memory.

    Parameters
    ----------
    nnz
        Values to gather (stored entries of the gather pattern).
    what
        The function, for the message.
    fix
        What the user can do instead.

    Raises
    ------
    ParameterError
    """
    need = 16.0 * nnz  # value + column index
    budget = _GATHER_MEMORY_FRACTION * physical_memory()
    if need > budget:
        raise ParameterError(
            f"{what}: the samples that target a gene need their regulators' values for "
            f"the exact leave-out ({nnz:,} values, {format_bytes(need)}), more than this "
            f"machine can hold ({format_bytes(budget)}). {fix}"
        )
