"""Pairwise retrieval on arrays: exact and fast, with the targeted genes excluded fairly.

Query ``i`` is compared with every candidate ``j != i``: does ``j`` lie closer to
the query than the true match ``i``? Each comparison ``(i, j)`` is made on its
own gene set. With ``exclude="targeted"`` (the default, the fair rule) that set
leaves out the genes targeted in ``i`` *or* in ``j``, in both of its distances:
``d_{-i,-j}(P_i, T_j)`` against ``d_{-i,-j}(P_i, T_i)``, so the true match's
distance changes with ``j`` too. A predictor that knows nothing (the same
profile for every perturbation) then scores chance, a mean rank of exactly
0.5, whatever the size of the target effects. cell-eval's rule (``"query"``:
only the query's own genes, as the Virtual Cell Challenge) spares the true
match its own large target effect but not the candidates: with the distances
such a predictor looks far better than chance; with cosine or Pearson, whose
mean profile carries a trace of every target effect, far worse.

Algorithm
---------
A naive double loop makes ``n^2`` Python iterations of ``O(g)`` work. Here one
dense product ``Q' @ C'.T`` (one ``cdist`` for manhattan) gives every
comparison at once, and the genes a comparison leaves out are removed by
gathered low-rank corrections (``O(n^2 s)`` for ``s`` targeted genes per
perturbation), in blocks of query rows, each met by the candidates chunk by
chunk, so that memory stays ``O(block * g)`` plus a fixed budget for the
comparisons beyond the inputs and one copy of one of them, never ``O(n^2)``:

* the query side ``Q'`` is zeroed on the genes its own row excludes and the
  candidate side ``C'`` on the genes its own row excludes, so ``Q'_i . C'_j`` is
  already the dot product over ``G \\ (R^q_i u R^c_j)`` (overlapping target
  sets need no bookkeeping: a zero is excluded once);
* norms, sums and counts over that set are the row totals minus the entries at
  the *other* side's excluded genes: ``|Q'_i|^2 - sum_{k in R^c_j} Q'_ik^2``,
  ``|C'_j|^2 - sum_{k in R^q_i} C'_jk^2`` (gathered, then summed per target set
  with ``np.add.reduceat``);
* the true match of comparison ``(i, j)`` is corrected the same way:
  ``|Q'_i - C''_i|^2 - sum_{k in R^c_j} (Q'_ik - C''_ik)^2``, and likewise its dot
  product, norm and sum for cosine and Pearson.

Zeroing a profile's own targets before the product also keeps the subtraction
well conditioned: the corrections remove other perturbations' genes, whose
values are small, while the (large) own-target effects never enter a sum.

Ties
----
Floating-point corrections can make two mathematically equal distances differ
in the last bits, so ties are decided with a documented tolerance, the same
one the naive reference of the tests uses. In comparison ``(i, j)``, with
``a = d(Q_i, C_j)`` and ``b = d(Q_i, C_i)`` on its gene set ``R``:

* euclidean, sqeuclidean: squared distances are compared (euclidean ranks equal
  sqeuclidean ranks); tie when ``|a - b| <= TIE_RTOL * s`` with
  ``s = |Q_i - mu|^2 + |C_i - mu|^2 + |C_j - mu|^2`` over all ``g`` genes, ``mu``
  the column mean of ``predicted`` and ``observed`` stacked (distances do not
  depend on ``mu``; the scale then does not depend on an offset either);
* manhattan: the same with L1 norms ``s = |Q_i - mu|_1 + |C_i - mu|_1 + |C_j - mu|_1``;
* cosine, pearson: similarities ``r = 1 - d`` are compared; tie when
  ``|r_a - r_b| <= TIE_RTOL * (kappa_a + kappa_b)`` with
  ``kappa = |x| |y| / (|x_R| |y_R|)`` the factor by which restricting to ``R``
  amplifies rounding (pearson: norms of the profiles centred on their means).

Norms written ``|x|`` are over all ``g`` genes, ``|x_R|`` over ``R``.
``TIE_RTOL = 1e-10`` is about 5,000 times the typical rounding error
(``sqrt(g) * eps``) of a sum over 8,000 genes and 50 times its worst-case bound
(``g * eps``), and far below any difference that means something.

Zero and constant profiles
--------------------------
Cosine and Pearson are undefined for a profile that is zero (cosine) or
constant (Pearson) on ``R``; scipy returns nan. Here such a profile has
similarity 0 with everything: distance exactly 1.0, so it ties with any other
undefined comparison. A profile counts as zero on ``R`` when its squared norm
there (pearson: its sum of squared deviations from its mean on ``R``) is at
most ``ZERO_RTOL = 1e-12`` times the same quantity over all ``g`` genes; this
absorbs the rounding left by subtracting the excluded genes (a profile that
lives only on its targeted genes, like a target-only predictor, is exactly
zero once they are excluded). An empty gene set gives distance 0 for
euclidean, sqeuclidean and manhattan and 1.0 for cosine and pearson: every
comparison ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, overload

import numpy as np
import scipy.sparse as sp
from scipy.spatial.distance import cdist

from causalcell._validation import DEPRECATED, nonfinite_rows, renamed
from causalcell.data.lazy import active_client, is_dask_array, map_row_blocks
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate._exclude import EXCLUDE_DOC, RETRIEVAL_EXCLUDES, exclude_rule, fill_doc

__all__ = [
    "DISTANCES",
    "ORIENTATIONS",
    "TIE_RTOL",
    "ZERO_RTOL",
    "pairwise_retrieval",
]

DISTANCES = ("euclidean", "sqeuclidean", "manhattan", "cosine", "pearson")
ORIENTATIONS = ("prediction", "observed")

TIE_RTOL = 1e-10
ZERO_RTOL = 1e-12

# Elements of one (block, genes) buffer (32 MiB of float64; at most two of
# them): the query block is as tall as that allows, so the product streams the
# (n, genes) candidates from memory n / block times (and packs them as often).
_BUFFER_ELEMENTS = 1 << 22
# Elements of one (block, candidate chunk) temporary (8 MiB of float64; about
# twenty live at once): each query block meets the candidates chunk by chunk,
# so the comparison's elementwise steps run on arrays that stay near the cache
# and are reused, whatever n.
_PAIR_ELEMENTS = 1 << 20
_MIN_BLOCK = 64
# Elements of a chunk of rows prepared at once (1 MiB of float64: in cache).
_CHUNK_ELEMENTS = 1 << 17
_SHOWN = 10


# --------------------------------------------------------------------------- validation


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(map(repr, choices))}; "
                             f"got {value!r}.")
    return value


def _rows_text(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:_SHOWN])
    more = len(rows) - _SHOWN
    return shown + (f" ... and {more} more" if more > 0 else "")


def _as_profiles(name: str, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """A finite float64 (n, g) array (the caller's array itself when it already is one:
    it is only read) and its column sums.

    The column sums serve the column mean and prove the array finite in the same
    pass (NaN and inf propagate through +); the rows are looked at one by one only
    when a sum is not finite (a NaN, an inf, or an overflow of finite values)."""
    if sp.issparse(values):
        values = values.toarray()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataContractError(f"{name} must be a numeric array of shape (n, genes): "
                                f"{exc}.") from exc
    if array.ndim != 2:
        raise DataContractError(f"{name} must be 2-dimensional (perturbations x genes); "
                                f"got shape {array.shape}.")
    column_sums = array.sum(axis=0)
    rows = (nonfinite_rows(array) if not np.isfinite(column_sums).all()
            else np.zeros(0, dtype=np.int64))
    if len(rows):
        raise DataContractError(
            f"{name} has NaN or infinite values in {len(rows)} row(s): {_rows_text(rows)}. "
            f"Drop or fill those perturbations before retrieval."
        )
    return array, column_sums


def _computed(*values: Any) -> list[Any]:
    """The Dask arrays among ``values`` computed to memory in one ``dask.compute`` (on
    the active client, if any); the others as given."""
    lazy = [i for i, v in enumerate(values) if is_dask_array(v)]
    out = list(values)
    if lazy:
        import dask

        for i, v in zip(lazy, dask.compute(*(values[i] for i in lazy)), strict=True):
            out[i] = v
    return out


def _target_mask(targets: Any, n: int, g: int) -> sp.csr_array:
    """Targets as a canonical (sorted, duplicate-free) boolean CSR array (n, g)."""
    if sp.issparse(targets) or (isinstance(targets, np.ndarray) and targets.dtype == bool):
        if targets.shape != (n, g):
            raise DataContractError(
                f"targets as a matrix must have shape (n, genes) = ({n}, {g}); got "
                f"{targets.shape}."
            )
        mask = sp.csr_array(targets).astype(bool)
        mask.eliminate_zeros()
        mask.sum_duplicates()
        mask.sort_indices()
        return mask
    if isinstance(targets, (str, bytes)) or not (hasattr(targets, "__len__")
                                                 and hasattr(targets, "__iter__")):
        raise DataContractError(
            "targets must be a sequence of n collections of integer gene indices or a "
            f"sparse boolean (n, genes) matrix; got {type(targets).__name__}."
        )
    if len(targets) != n:
        raise DataContractError(f"targets has {len(targets)} entries but there are {n} "
                                f"perturbations (rows); give one collection per row.")
    # One pass over the rows is unavoidable to read Python collections; the
    # checks themselves are vectorized over all indices at once.
    parts = []
    for i, row in enumerate(targets):
        if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
            raise DataContractError(
                f"targets[{i}] = {row!r} is not a collection of gene indices; use e.g. [{row!r}] "
                f"for one gene or [] for none."
            )
        index = np.asarray(row if isinstance(row, np.ndarray) else list(row))
        if index.size and (index.ndim != 1 or index.dtype.kind not in "iu"):
            raise DataContractError(
                f"targets[{i}] = {row!r} must hold integer column indices (not "
                f"{index.dtype} values)."
            )
        parts.append(index.astype(np.int64).reshape(-1))
    counts = np.fromiter((p.size for p in parts), dtype=np.int64, count=n)
    cols = np.concatenate(parts) if counts.sum() else np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(n), counts)
    bad = (cols < 0) | (cols >= g)
    if bad.any():
        first = np.flatnonzero(bad)[0]
        raise DataContractError(
            f"targets[{rows[first]}] holds the gene index {cols[first]}, outside 0..{g - 1} "
            f"(there are {g} genes); {int(bad.sum())} index(es) are out of range."
        )
    mask = sp.coo_array((np.ones(cols.size, dtype=bool), (rows, cols)), shape=(n, g)).tocsr()
    mask.sum_duplicates()
    mask.sort_indices()
    return mask


# --------------------------------------------------------------------------- gathers


@dataclass(frozen=True)
class _Sets:
    """Per-row excluded gene sets in CSR layout, ready for gathers."""

    indptr: np.ndarray  # (n + 1,)
    indices: np.ndarray  # (nnz,) column indices
    empty: np.ndarray  # (n,) bool: no excluded gene

    @classmethod
    def of(cls, mask: sp.csr_array | None) -> _Sets | None:
        if mask is None or mask.nnz == 0:
            return None
        indptr = mask.indptr.astype(np.int64)
        return cls(indptr, mask.indices.astype(np.int64), np.diff(indptr) == 0)

    def block(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices, segment starts and empty flags of rows lo..hi."""
        a, b = self.indptr[lo], self.indptr[hi]
        return self.indices[a:b], self.indptr[lo:hi] - a, self.empty[lo:hi]


def _segment_sums(vals: np.ndarray, starts: np.ndarray, empty: np.ndarray,
                  axis: int) -> np.ndarray:
    """Sums of consecutive segments along ``axis``.

    ``vals`` carries one trailing zero slot along ``axis`` so that every start
    (an empty trailing segment starts at the end) is a valid index;
    ``reduceat`` returns a single element for an empty segment, set to 0 here.
    """
    out = np.add.reduceat(vals, starts, axis=axis)
    if empty.any():
        if axis == 0:
            out[empty] = 0.0
        else:
            out[:, empty] = 0.0
    return out


def _gather_cols(block: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``block[:, indices]`` with a trailing zero column."""
    vals = np.empty((block.shape[0], indices.size + 1), dtype=np.float64)
    np.take(block, indices, axis=1, out=vals[:, :-1])
    vals[:, -1] = 0.0
    return vals


# --------------------------------------------------------------------------- preparation


def _zero_rows(block: np.ndarray, sets: _Sets | None, lo: int, hi: int) -> np.ndarray:
    """Zero, in place, each row's excluded genes (rows lo..hi of ``sets``)."""
    if sets is not None:
        idx, starts, _ = sets.block(lo, hi)
        counts = np.diff(np.append(starts, idx.size))
        block[np.repeat(np.arange(hi - lo), counts), idx] = 0.0
    return block


def _transform(x: np.ndarray, distance: str, mu: np.ndarray | None,
               out: np.ndarray | None = None) -> np.ndarray:
    """The representation the distance is computed on (written to ``out`` or a new array).

    Euclidean family and manhattan: centred by the common column mean
    (translation invariant; it removes the cancellation of the expanded square
    when profiles share a large offset). Cosine: rows scaled to unit norm.
    Pearson: rows centred on their mean over all genes (a shift does not change
    a correlation on any gene subset) and scaled to unit norm. Zero rows stay
    zero.
    """
    if distance not in ("cosine", "pearson"):
        return np.subtract(x, mu, out=out)
    if distance == "pearson":
        out = np.subtract(x, x.mean(axis=1, keepdims=True), out=out)
        # Second pass: the rounded mean leaves a residual shift, which would
        # count as variance in the normalization (a constant row must stay 0).
        out -= out.mean(axis=1, keepdims=True)
    elif out is None:
        out = x.copy()
    else:
        out[...] = x
    norm = np.sqrt(np.einsum("ij,ij->i", out, out))
    np.divide(out, norm[:, None], out=out, where=norm[:, None] > 0)
    return out


def _full_scale(x: np.ndarray, distance: str) -> np.ndarray:
    """Per-row tie scale over all genes (euclidean family, manhattan)."""
    if distance == "manhattan":
        return np.abs(x).sum(axis=1)
    return np.einsum("ij,ij->i", x, x)


class _Prepared(NamedTuple):
    """Prepared rows and their per-row reductions (see :func:`_prepare`)."""

    values: np.ndarray
    scale: np.ndarray | None  # tie scale over all genes, before the zeroing
    norm: np.ndarray  # squared norm after the zeroing
    sums: np.ndarray | None  # sum after the zeroing
    match: np.ndarray | None  # distance to the given true matches


def _prepare(x: np.ndarray, distance: str, mu: np.ndarray | None, sets: _Sets | None,
             lo: int, out: np.ndarray, *, scale: bool, sums: bool,
             match: np.ndarray | None = None) -> _Prepared:
    """Rows ``x`` transformed into ``out`` and zeroed at their excluded genes (rows
    ``lo..`` of ``sets``), with per row: the tie scale over all genes (before the
    zeroing, when ``scale``), the squared norm and (when ``sums``) the sum after it,
    and (with ``match``, prepared rows of the same shape) the distance to ``match``
    (see :func:`_match_distance`).

    The same steps as :func:`_transform`, :func:`_full_scale`, :func:`_zero_rows`
    and the row reductions one after the other, but on chunks of rows that stay
    in cache, so the rows are read from memory once. Every step is row by row,
    so the values do not depend on the chunking.
    """
    m, g = x.shape
    full = np.empty(m) if scale else None
    norm = np.empty(m)
    total = np.empty(m) if sums else None
    to_match = None if match is None else np.empty(m)
    step = max(1, _CHUNK_ELEMENTS // max(g, 1))
    scratch = None if match is None else np.empty((min(step, m), g))
    for a in range(0, m, step):
        b = min(a + step, m)
        chunk = _transform(x[a:b], distance, mu, out=out[a:b])
        if full is not None:
            full[a:b] = _full_scale(chunk, distance)
        _zero_rows(chunk, sets, lo + a, lo + b)
        norm[a:b] = np.einsum("ij,ij->i", chunk, chunk)
        if total is not None:
            total[a:b] = chunk.sum(axis=1)
        if to_match is not None:
            to_match[a:b] = _match_distance(chunk, match[a:b], distance, scratch[: b - a])
    return _Prepared(out, full, norm, total, to_match)


def _match_distance(q: np.ndarray, c: np.ndarray, distance: str, scratch: np.ndarray
                    ) -> np.ndarray:
    """Per row, the distance of ``q`` to ``c`` over all genes of the zeroed profiles
    (squared for the euclidean family); ``scratch`` (may be ``q``) takes ``q - c``."""
    diff = np.subtract(q, c, out=scratch)
    if distance == "manhattan":
        return np.abs(diff, out=diff).sum(axis=1)
    return np.einsum("ij,ij->i", diff, diff)


def _true_distance(Qb: np.ndarray, Cb: np.ndarray, distance: str) -> np.ndarray:
    """:func:`_match_distance` of the query block to its true matches, row chunk by
    row chunk through one scratch chunk (``Qb`` is kept: every candidate chunk
    still needs it)."""
    m, g = Qb.shape
    out = np.empty(m)
    step = max(1, _CHUNK_ELEMENTS // max(g, 1))
    scratch = np.empty((min(step, m), g))
    for a in range(0, m, step):
        b = min(a + step, m)
        out[a:b] = _match_distance(Qb[a:b], Cb[a:b], distance, scratch[: b - a])
    return out


# --------------------------------------------------------------------------- main


@overload
def pairwise_retrieval(
    predicted: Any, observed: Any, targets: Any, distance: str = ..., exclude: str = ...,
    orientation: str = ..., *, block_size: int | None = ..., return_matrix: Literal[False] = ...,
    dask: bool | None = ..., exclusion: Any = ...,
) -> np.ndarray: ...


@overload
def pairwise_retrieval(
    predicted: Any, observed: Any, targets: Any, distance: str = ..., exclude: str = ...,
    orientation: str = ..., *, block_size: int | None = ..., return_matrix: Literal[True],
    dask: bool | None = ..., exclusion: Any = ...,
) -> tuple[np.ndarray, np.ndarray]: ...


@fill_doc(exclude=EXCLUDE_DOC)
def pairwise_retrieval(
    predicted: Any,
    observed: Any,
    targets: Any,
    distance: str = "euclidean",
    exclude: str = "targeted",
    orientation: str = "prediction",
    *,
    block_size: int | None = None,
    return_matrix: bool = False,
    dask: bool | None = None,
    exclusion: Any = DEPRECATED,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Normalized rank of each true match among all perturbations, pair by pair.

    For the default orientation, with ``P = predicted`` and ``T = observed``::

        rank_i = (#{j != i : d(P_i, T_j) < d(P_i, T_i)}
                  + 0.5 * #{j != i : d(P_i, T_j) == d(P_i, T_i)}) / (n - 1)

    where both distances of comparison ``(i, j)`` are taken on that
    comparison's gene set. 0: the true match comes first; 0.5: chance.

    Parameters
    ----------
    predicted, observed
        Float arrays (n, g) (dense, or scipy sparse: densified); row ``i`` of
        both describes perturbation ``i`` (profiles or changes, as the caller
        decides). Must be finite. Either may be a Dask array: profiles are
        perturbations x genes, so it is computed to memory once (both in
        one ``dask.compute``, on the active Dask client if any).
    targets
        The genes targeted in each perturbation: a length-n sequence of
        collections of integer column indices (may be empty; duplicates are
        ignored), or a boolean (n, g) matrix, scipy sparse or numpy.
    distance
        ``"euclidean"``, ``"sqeuclidean"``, ``"manhattan"``, ``"cosine"``
        (1 - cosine similarity) or ``"pearson"`` (1 - Pearson correlation).
    exclude
        ``"targeted"`` (default), ``"query"``, ``"none"`` or ``"all"``, left
        out of both distances of comparison ``(i, j)``.
        {exclude}
    orientation
        ``"prediction"`` (default): query ``P_i`` against every observed
        ``T_j`` (cell-eval). ``"observed"``: query ``T_i`` against every
        prediction ``P_j`` (PerturBench, Wong et al.); ``exclude="query"``
        then means the observed row's genes, which are the same genes.
    block_size
        Query rows processed at once; default ``min(2**22 // g, ceil(n / 2))``
        (at least 64). Each block meets the candidates in chunks of
        ``max(1, 2**20 // block_size)`` rows. Memory beyond the inputs and
        one float64 copy of one of them is about ``16 * g * block_size``
        bytes for the block plus about twenty 8 MiB temporaries for the
        comparisons (about 250 MB by default, whatever ``n``, with a few
        targeted genes per row; the gathered corrections grow with that
        number). Results do not depend on it.
    return_matrix
        Also return the (n, n) float32 matrix ``B`` with ``B[i, j]`` = 1 when
        candidate ``j`` beats the true match of query ``i``, 0.5 for a tie, 0
        otherwise (diagonal 0), so ``rank = B.sum(1) / (n - 1)``. It costs
        ``4 * n**2`` bytes (1.6 GB at n = 20,000).
    dask
        Run the query blocks as Dask tasks: on the active
        :class:`distributed.Client` if any, else Dask's threaded scheduler.
        The prepared candidates are shipped once (``client.scatter``); each
        task computes the ranks of one block of ``block_size`` query rows
        with the same code and block bounds as the serial loop, so the
        results are identical. ``None`` (default): only when ``predicted``
        or ``observed`` is a Dask array; ``True``: also for NumPy inputs
        (set ``block_size`` to get several tasks for small ``n``);
        ``False``: never.
    exclusion
        Deprecated name of ``exclude`` (FutureWarning; ``"pair"`` is now
        ``"targeted"``).

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        Ranks, float64 (n,); with ``return_matrix``, ``(ranks, B)``.

    Raises
    ------
    DataContractError
        Shapes that differ or are not 2-D, NaN or infinite values (the rows
        are named), fewer than 2 perturbations, targets that are not one
        collection of valid integer indices per row.
    ParameterError
        An unknown ``distance``, ``exclude`` or ``orientation``, a
        ``block_size`` below 1, ``dask`` not a bool or None, or ``dask=True``
        without Dask installed.

    Notes
    -----
    Exact: equal to the naive double loop over pairs (see the module
    docstring for the tie and zero-profile rules, which both follow). One
    dense product (manhattan: one ``cdist``) plus ``O(n^2 s)`` gathered
    corrections for ``s`` targeted genes per row.

    Examples
    --------
    >>> import numpy as np
    >>> observed = np.array([[5.0, 0.1, 0.0], [0.0, 5.0, 0.2], [0.1, 0.0, 5.0]])
    >>> knows_nothing = np.tile(observed.mean(axis=0), (3, 1))
    >>> targets = [[0], [1], [2]]
    >>> pairwise_retrieval(observed, observed, targets).tolist()  # perfect
    [0.0, 0.0, 0.0]
    >>> float(pairwise_retrieval(knows_nothing, observed, targets).mean())  # chance
    0.5
    >>> pairwise_retrieval(knows_nothing, observed, targets, exclude="query").tolist()
    [0.0, 0.0, 0.0]
    """
    _check_choice("distance", distance, DISTANCES)
    exclude = renamed("pairwise_retrieval", "exclusion", exclusion, "exclude", exclude,
                      "targeted")
    exclude = exclude_rule("pairwise_retrieval", exclude, RETRIEVAL_EXCLUDES)
    _check_choice("orientation", orientation, ORIENTATIONS)
    if block_size is not None and (isinstance(block_size, bool)
                                   or not isinstance(block_size, int | np.integer)
                                   or block_size < 1):
        raise ParameterError(f"block_size must be a positive integer or None; got "
                             f"{block_size!r}.")
    if dask is not None and not isinstance(dask, bool):
        raise ParameterError(f"dask must be True, False or None; got {dask!r}.")
    lazy = is_dask_array(predicted) or is_dask_array(observed)
    use_dask = lazy if dask is None else dask
    if use_dask:
        try:
            import dask as _  # noqa: F401
        except ImportError as exc:
            raise ParameterError(
                "dask=True needs Dask: pip install 'dask[array]' distributed (or pass "
                "dask=False)."
            ) from exc
    # Profiles are perturbations x genes: small enough to hold; a Dask input
    # is computed once, here.
    predicted, observed = _computed(predicted, observed)
    P, P_sums = _as_profiles("predicted", predicted)
    T, T_sums = _as_profiles("observed", observed)
    if P.shape != T.shape:
        raise DataContractError(
            f"predicted has shape {P.shape} but observed has shape {T.shape}; row i of both "
            f"must describe perturbation i on the same genes."
        )
    n, g = P.shape
    if n < 2:
        raise DataContractError(
            f"Retrieval needs at least 2 perturbations (the true match and a candidate); got "
            f"{n}."
        )
    mask = _target_mask(targets, n, g)
    Q, C = (P, T) if orientation == "prediction" else (T, P)

    similarity = distance in ("cosine", "pearson")
    # The column means of P and T (the same bits as P.mean(axis=0), which
    # divides the same sums), from the sums the finiteness check computed.
    mu = None if similarity else (P_sums / n + T_sums / n) / 2.0
    # The candidate side is needed whole (the product against every query
    # block); the query side is transformed block by block.
    keep = None
    if exclude == "all":
        Cx = _transform(C, distance, mu)
        scale_c = None if similarity else _full_scale(Cx, distance)
        dropped = np.zeros(g, dtype=bool)
        dropped[mask.indices] = True
        keep = np.flatnonzero(~dropped)
        Cx = np.ascontiguousarray(Cx[:, keep])
    # R^q: genes each query row excludes (also from its true match); R^c: genes
    # each candidate row excludes (so also from the query and the true match of
    # that comparison).
    q_mask = mask if exclude in ("targeted", "query") else None
    c_mask = mask if exclude == "targeted" else None
    Rq, Rc = _Sets.of(q_mask), _Sets.of(c_mask)
    true_same_as_cand = exclude != "query"  # C'' == C' (same zeroed genes)
    if keep is None:
        cand = _prepare(C, distance, mu, Rc, 0, np.empty((n, g)), scale=not similarity,
                        sums=distance == "pearson")
        Cz, scale_c, nc0, sc0 = cand.values, cand.scale, cand.norm, cand.sums
    else:  # no zeroing: nothing is excluded per row
        Cz = Cx
        nc0 = np.einsum("ij,ij->i", Cz, Cz)
        sc0 = Cz.sum(axis=1) if distance == "pearson" else None
    g_eff = Cz.shape[1]
    q_count = g_eff - (np.diff(Rq.indptr) if Rq is not None else np.zeros(n, np.int64))

    if block_size is None:
        # The (block, genes) buffers stay near _BUFFER_ELEMENTS and there are
        # at least two blocks (measured at n = 500: one block of every row
        # took 0.096 s, two blocks 0.088 s).
        block_size = max(_MIN_BLOCK, min(_BUFFER_ELEMENTS // g, (n + 1) // 2))
    block_size = int(min(block_size, n))
    work = _QueryBlocks(
        Q=Q, C=C, Cz=Cz, distance=distance, mu=mu, keep=keep, Rq=Rq, Rc=Rc,
        true_same_as_cand=true_same_as_cand, nc0=nc0, sc0=sc0, q_count=q_count,
        scale_c=scale_c, return_matrix=return_matrix,
        chunk=max(1, _PAIR_ELEMENTS // block_size),
    )
    bounds = [(lo, min(lo + block_size, n)) for lo in range(0, n, block_size)]
    if use_dask:
        parts: Any = _map_query_blocks(work, bounds)
    else:
        # Buffers reused by every block: fresh large arrays would be
        # page-faulted in again at each block.
        buffers = work.buffers(block_size)
        parts = (work.ranks(lo, hi, buffers) for lo, hi in bounds)
    ranks = np.empty(n, dtype=np.float64)
    matrix = np.zeros((n, n), dtype=np.float32) if return_matrix else None
    for (lo, hi), (block_ranks, block_beats) in zip(bounds, parts, strict=True):
        ranks[lo:hi] = block_ranks
        if matrix is not None:
            matrix[lo:hi] = block_beats
    return (ranks, matrix) if return_matrix else ranks


class _QueryBlocks:
    """Everything a block of query rows needs: the per-block computation.

    Built once per call; the serial path calls :meth:`ranks` block by block,
    the Dask path ships this object to the workers once and runs
    :meth:`ranks` there, one task per block, on the same block bounds (so
    the results are the same bits).
    """

    def __init__(self, *, Q: np.ndarray, C: np.ndarray, Cz: np.ndarray, distance: str,
                 mu: np.ndarray | None, keep: np.ndarray | None, Rq: _Sets | None,
                 Rc: _Sets | None, true_same_as_cand: bool, nc0: np.ndarray,
                 sc0: np.ndarray | None, q_count: np.ndarray, scale_c: np.ndarray | None,
                 return_matrix: bool, chunk: int) -> None:
        self.Q, self.C, self.Cz = Q, C, Cz
        self.distance, self.mu, self.keep = distance, mu, keep
        self.Rq, self.Rc = Rq, Rc
        self.true_same_as_cand = true_same_as_cand
        self.nc0, self.sc0, self.q_count, self.scale_c = nc0, sc0, q_count, scale_c
        self.return_matrix = return_matrix
        self.chunk = chunk

    def buffers(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Work buffers for blocks of up to ``size`` query rows (at most two)."""
        g, g_eff = self.Q.shape[1], self.Cz.shape[1]
        q_full = np.empty((size, g))
        q_buf = q_full if self.keep is None else np.empty((size, g_eff))
        c_buf = None if self.true_same_as_cand else np.empty((size, g))
        return q_full, q_buf, c_buf

    def ranks(self, lo: int, hi: int, buffers: tuple | None = None
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """Ranks of query rows lo..hi (and their float32 rows of B with ``return_matrix``).

        The query block is prepared once, then compared with the candidates
        chunk by chunk; a chunk's beats are 0, 0.5 or 1, so their per-row
        totals are exact whatever the chunking.
        """
        distance, mu, keep, Rq, Cz = self.distance, self.mu, self.keep, self.Rq, self.Cz
        n = Cz.shape[0]
        b = hi - lo
        similarity = distance in ("cosine", "pearson")
        q_full, q_buf, c_buf = buffers if buffers is not None else self.buffers(b)
        # Query block and the true matches' block, transformed and zeroed.
        true_d = None  # the true matches' distances, when known from the preparation
        if keep is None:
            # With C'' == C' the true matches are prepared already: their
            # distances are taken while the query chunk is in cache.
            match = Cz[lo:hi] if self.true_same_as_cand and not similarity else None
            Qb, scale_q, qq, _, true_d = _prepare(self.Q[lo:hi], distance, mu, Rq, lo,
                                                  q_full[:b], scale=not similarity,
                                                  sums=False, match=match)
        else:  # exclude="all": no per-row zeroing
            Qb = _transform(self.Q[lo:hi], distance, mu, out=q_full[:b])
            scale_q = None if similarity else _full_scale(Qb, distance)
            Qb = np.take(Qb, keep, axis=1, out=q_buf[:b])
            qq = np.einsum("ij,ij->i", Qb, Qb)
        if self.true_same_as_cand:
            Cb = Cz[lo:hi]
        else:
            Cb = _zero_rows(_transform(self.C[lo:hi], distance, mu, out=c_buf[:b]), Rq, lo, hi)
        if similarity:
            block = _SimilarityBlock(Qb, Cb, qq, self.q_count[lo:hi], Rq, lo, hi,
                                     pearson=distance == "pearson")
        else:
            if true_d is None:
                true_d = _true_distance(Qb, Cb, distance)
            scale_true = scale_q + self.scale_c[lo:hi]
        totals = np.zeros(b)
        rows = np.empty((b, n), dtype=np.float32) if self.return_matrix else None
        for j0 in range(0, n, self.chunk):
            j1 = min(j0 + self.chunk, n)
            # A: query-side values at candidate j's excluded genes (R^c_j);
            # B: candidate values at query i's excluded genes (R^q_i).
            A = _ASums(Qb, Cb, self.Rc, j0, j1, kept=block.kept if similarity else None)
            B = _BSums(Cz[j0:j1], Rq, lo, hi)
            if similarity:
                beats = block.beats(Cz[j0:j1], self.nc0[j0:j1],
                                    None if self.sc0 is None else self.sc0[j0:j1], A, B)
            else:
                beats = self._beats_distance(Qb, qq, true_d, scale_true, j0, j1, A, B)
            # A query is not its own candidate.
            d0, d1 = max(lo, j0), min(hi, j1)
            if d0 < d1:
                beats[np.arange(d0 - lo, d1 - lo), np.arange(d0 - j0, d1 - j0)] = 0.0
            totals += beats.sum(axis=1)
            if rows is not None:
                rows[:, j0:j1] = beats
        return totals / (n - 1), rows

    def _beats_distance(self, Qb: np.ndarray, qq: np.ndarray, true_d: np.ndarray,
                        scale_true: np.ndarray, j0: int, j1: int, A: _ASums, B: _BSums
                        ) -> np.ndarray:
        """Beats of candidates j0..j1 for the euclidean family and manhattan."""
        Cz = self.Cz[j0:j1]
        if self.distance == "manhattan":
            cand = cdist(Qb, Cz, "cityblock")
            cand -= A.sum(np.abs(A.q))
            cand -= B.sum(np.abs(B.c))
            true = true_d[:, None] - A.sum(np.abs(A.q - A.c))
        else:
            # Squared distances for both members of the euclidean family.
            cand = _block_product(Qb, Cz)
            cand *= -2.0
            cand += qq[:, None]
            cand += self.nc0[None, j0:j1]
            cand -= A.sum(A.q * A.q)
            cand -= B.sum(B.c * B.c)
            true = true_d[:, None] - A.sum(np.square(A.q - A.c))
        tol = TIE_RTOL * (scale_true[:, None] + self.scale_c[None, j0:j1])
        return _beats_smaller(cand, true, tol)


def _block_product(Qb: np.ndarray, Cz: np.ndarray) -> np.ndarray:
    """``Qb @ Cz.T`` (C-ordered, as the elementwise steps that follow it)."""
    return Qb @ Cz.T


def _run_block(placeholder: Any, start: int, stop: int, work: _QueryBlocks, lo: int,
               hi: int) -> tuple[np.ndarray, np.ndarray | None]:
    """One Dask task: the ranks of query rows lo..hi."""
    return work.ranks(lo, hi)


def _map_query_blocks(work: _QueryBlocks, bounds: list[tuple[int, int]]
                      ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Run :meth:`_QueryBlocks.ranks` for every block on the active Dask client
    (else Dask's threaded scheduler), results in block order.

    The inputs travel once: scattered to the cluster as one object that every
    task depends on (the threaded scheduler shares memory: no copy at all).
    """
    import dask.array as da

    client = active_client()
    shared: Any = work if client is None else client.scatter(work, hash=False)
    # One placeholder row per query block, one block per row: map_row_blocks
    # then runs exactly one task per query block, in order.
    index = da.zeros((len(bounds), 1), chunks=(1, 1), dtype=np.int8)
    return map_row_blocks(_run_block, index, block_args=lambda a, b: (shared, *bounds[a]),
                          desc="Query blocks")


class _SimilarityBlock:
    """One query block's side of cosine or Pearson, met chunk by chunk.

    All sums are over the comparison's genes: the row totals of the zeroed
    profiles minus the gathered corrections. Pearson adds the sums and the
    count of genes, and centres the cross-products and squared norms. The
    query rows' and true matches' totals are taken once per block.
    """

    def __init__(self, Qb: np.ndarray, Cb: np.ndarray, qq: np.ndarray, q_count: np.ndarray,
                 Rq: _Sets | None, lo: int, hi: int, *, pearson: bool) -> None:
        self.Qb, self.pearson = Qb, pearson
        self.qq = qq[:, None]
        self.nct = np.einsum("ij,ij->i", Cb, Cb)[:, None]
        self.dott = np.einsum("ij,ij->i", Qb, Cb)[:, None]
        self.kept = None
        if pearson:
            self.q_count = q_count[:, None]
            self.sq = Qb.sum(axis=1)[:, None]
            self.sct = Cb.sum(axis=1)[:, None]
            # 1 where query i keeps the gene: gathered at a candidate's
            # excluded genes and summed, the genes the comparison loses
            # beyond the query's own.
            self.kept = _zero_rows(np.ones(Qb.shape), Rq, lo, hi)

    def beats(self, Cz: np.ndarray, nc0: np.ndarray, sc0: np.ndarray | None, A: _ASums,
              B: _BSums) -> np.ndarray:
        """Beats of the candidates ``Cz`` (a chunk of the prepared candidates)."""
        dot = _block_product(self.Qb, Cz)
        nq = self.qq - A.sum(A.q * A.q)
        nc = nc0[None, :] - B.sum(B.c * B.c)
        nct = self.nct - A.sum(A.c * A.c)
        dott = self.dott - A.sum(A.q * A.c)
        if self.pearson:
            # An empty gene set has sums 0: any count >= 1 gives variance 0 there.
            m = np.maximum(self.q_count - A.sum(A.kept), 1.0)
            sq = self.sq - A.sum(A.q)
            sc = sc0[None, :] - B.sum(B.c)
            sct = self.sct - A.sum(A.c)
            dot -= sq * sc / m
            dott = dott - sq * sct / m
            nq = nq - sq * sq / m
            nc = nc - sc * sc / m
            nct = nct - sct * sct / m
        r_c, k_c = _similarity(dot, nq, nc)
        r_t, k_t = _similarity(dott, nq, nct)
        # Distances are 1 - r: the candidate wins when its similarity is larger.
        return _beats_smaller(-r_c, -r_t, TIE_RTOL * (k_c + k_t))


class _ASums:
    """Sums of query-block values at each candidate's excluded genes (R^c_j),
    for the candidates j0..j1.

    ``q`` and ``c`` are the gathered query and true-match values, (block,
    nnz + 1) with a trailing zero column; :meth:`sum` reduces any elementwise
    function of them to (block, j1 - j0). ``kept`` (Pearson only) gathers the
    block's 1-where-kept matrix the same way. Without candidate-side
    exclusions every sum is 0.
    """

    def __init__(self, Qb: np.ndarray, Cb: np.ndarray, Rc: _Sets | None, j0: int, j1: int,
                 *, kept: np.ndarray | None) -> None:
        self.active = Rc is not None
        self.q = self.c = self.kept = 0.0
        if Rc is None:
            return
        idx, self._starts, self._empty = Rc.block(j0, j1)
        self.q = _gather_cols(Qb, idx)
        self.c = _gather_cols(Cb, idx)
        if kept is not None:
            self.kept = _gather_cols(kept, idx)

    def sum(self, vals: Any) -> Any:
        if not self.active:
            return 0.0
        return _segment_sums(vals, self._starts, self._empty, axis=1)


class _BSums:
    """Sums of candidate values at each query row's excluded genes (R^q_i).

    ``c`` holds the chunk's candidate values at the block's excluded genes, in
    CSR order, ((chunk, nnz_block + 1), last column zero); :meth:`sum` reduces
    an elementwise function of it to (block, chunk).
    """

    def __init__(self, Cz: np.ndarray, Rq: _Sets | None, lo: int, hi: int) -> None:
        self.active = Rq is not None
        self.c = 0.0
        if Rq is None:
            return
        idx, self._starts, self._empty = Rq.block(lo, hi)
        self.c = _gather_cols(Cz, idx)

    def sum(self, vals: Any) -> Any:
        if not self.active:
            return 0.0
        return _segment_sums(vals, self._starts, self._empty, axis=1).T


def _similarity(dot: np.ndarray, nx: np.ndarray, ny: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine-type similarity and its rounding amplification kappa.

    ``nx``, ``ny`` are squared norms on the comparison's genes of profiles
    scaled to unit norm over all genes; a profile at or below ``ZERO_RTOL`` of
    its full norm is zero there: similarity exactly 0 and kappa 0.
    """
    defined = (nx > ZERO_RTOL) & (ny > ZERO_RTOL)
    denom = np.sqrt(np.where(defined, nx * ny, 1.0))
    sim = np.where(defined, dot / denom, 0.0)
    kappa = np.where(defined, 1.0 / denom, 0.0)
    return sim, kappa


def _beats_smaller(cand: np.ndarray, true: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """1 where cand < true beyond ``tol``, 0.5 within ``tol``, else 0."""
    gap = true - cand
    out = (gap > tol).astype(np.float64)
    out[np.abs(gap) <= tol] = 0.5
    return out
