"""Per-perturbation agreement between predicted and observed changes.

Every metric is computed, for perturbation i, on the genes that are **not**
targeted in i (``exclude="targeted"``, the default): a targeted gene's own
change is set by the experimenter (its level T is given), so scoring it
rewards predicting the obvious. ``exclude=None`` gives the usual
unconditioned numbers for comparison with published evaluators.

Metrics (one value per perturbation):

==========================  ====================================================
``mae``, ``mse``            mean absolute / squared error of the changes
``pearson_delta``           Pearson correlation of the changes
``spearman_delta``          Spearman correlation of the changes
``cosine_delta``            cosine similarity of the changes
``direction_agreement``     share of genes whose change has the observed sign
``de_overlap_top{k}``       share of the observed top-k DE genes that are among
                            the k genes with the largest predicted |change|
``de_pearson_top{k}``       Pearson of the changes on the observed top-k DE genes
``de_overlap_n_sig``        share of the N significant observed DE genes
                            among the N genes with the largest predicted
                            |change| (cell-eval's ``overlap_at_N``)
``de_pearson_n_sig``        Pearson on those significant genes
==========================  ====================================================

The targeted genes are removed **before** the top-k genes are chosen (Csendes
et al. 2025 showed that leaving the knocked-down gene in the top-20 DE genes
reverses which model wins). Everything is vectorized across perturbations
and genes, in row blocks so that memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from causalcell.errors import DataContractError, ParameterError

__all__ = [
    "BASE_METRICS",
    "EXCLUDE",
    "higher_is_better",
    "metric_names",
    "perturbation_metrics",
    "targets_matrix",
]

BASE_METRICS = (
    "mae", "mse", "pearson_delta", "spearman_delta", "cosine_delta", "direction_agreement",
)
EXCLUDE = ("targeted", None)
_LOWER_IS_BETTER = frozenset({"mae", "mse", "retrieval_rank"})
DEFAULT_TOP_K = (20, 100, 200)
# Matrix entries per row block: a few float64 temporaries of this size at once.
_BLOCK_ENTRIES = 1 << 21


def higher_is_better(metric: str) -> bool:
    """Direction of a metric: False for errors and ranks, True for similarities."""
    return metric not in _LOWER_IS_BETTER


def metric_names(top_k: Sequence[int] = DEFAULT_TOP_K, *, n_sig: bool = True) -> list[str]:
    """Names of the metrics computed by :func:`perturbation_metrics`, in column order."""
    names = list(BASE_METRICS)
    names += [f"de_overlap_top{k}" for k in top_k]
    names += [f"de_pearson_top{k}" for k in top_k]
    if n_sig:
        names += ["de_overlap_n_sig", "de_pearson_n_sig"]
    return names


def targets_matrix(
    targets: sp.sparray | sp.spmatrix | Sequence[Collection[int]] | None, shape: tuple[int, int]
) -> sp.csr_array:
    """Targeted genes as a sparse bool (n, g) matrix.

    Parameters
    ----------
    targets
        A sparse (or dense) bool matrix of ``shape``, a length-n sequence of
        collections of column indices (may be empty), or None (no targets).
    shape
        ``(n_perturbations, n_genes)``.

    Raises
    ------
    ParameterError
        Wrong shape, or an index outside ``[0, n_genes)``.
    """
    n, g = shape
    if targets is None:
        return sp.csr_array((n, g), dtype=bool)
    if sp.issparse(targets) or (isinstance(targets, np.ndarray) and targets.ndim == 2):
        if targets.shape != (n, g):
            raise ParameterError(
                f"targets has shape {targets.shape}; expected {(n, g)} (perturbations x genes)."
            )
        out = sp.csr_array(targets, dtype=bool)
        out.eliminate_zeros()
        return out
    if len(targets) != n:
        raise ParameterError(f"targets has {len(targets)} entries; expected one per row ({n}).")
    lengths = np.fromiter((len(t) for t in targets), dtype=np.int64, count=n)
    cols = np.fromiter((int(j) for t in targets for j in t), dtype=np.int64,
                       count=int(lengths.sum()))
    if len(cols) and (cols.min() < 0 or cols.max() >= g):
        raise ParameterError(f"targets holds a column index outside [0, {g}).")
    rows = np.repeat(np.arange(n), lengths)
    out = sp.csr_array((np.ones(len(cols), dtype=bool), (rows, cols)), shape=(n, g))
    out.sum_duplicates()
    return out


def _masked_pearson(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation over the entries where ``mask`` is True.

    Two passes (means first), so that large common offsets do not cancel
    digits. NaN where fewer than 2 entries or a side is constant.
    """
    n = mask.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ma = np.where(mask, a, 0.0).sum(axis=1) / n
        mb = np.where(mask, b, 0.0).sum(axis=1) / n
        da = np.where(mask, a - ma[:, None], 0.0)
        db = np.where(mask, b - mb[:, None], 0.0)
        den = np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
        r = (da * db).sum(axis=1) / den
    r[(n < 2) | ~(den > 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def _average_ranks(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Row-wise ranks (1-based, ties averaged) of the kept entries.

    Excluded entries are sorted last as +inf; their ranks are meaningless and
    must stay masked. An unstable argsort is enough (tied values get the same
    average rank whatever their order) and is several times faster than the
    stable sort ``scipy.stats.rankdata`` uses.
    """
    key = np.where(keep, values, np.inf)
    n, g = key.shape
    order = np.argsort(key, axis=1)
    ordered = np.take_along_axis(key, order, axis=1)
    starts = np.ones((n, g), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones((n, g), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    position = np.broadcast_to(np.arange(g), (n, g))
    # First and last sorted position of each element's run of ties.
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, g - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((n, g))
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


class _TopSets:
    """The k highest-scoring kept genes of each row, for any per-row k.

    The scores of every row are sorted once (a plain sort, no argsort); a set
    is then the genes above the k-th value plus, among genes tied with it,
    those with the lowest column indices: the same genes as a stable sort by
    decreasing score. NaN scores rank below every number, excluded genes
    never enter.
    """

    def __init__(self, score: np.ndarray, keep: np.ndarray) -> None:
        key = np.where(np.isnan(score), -np.finfo(np.float64).max, score)
        self.key = np.where(keep, key, -np.inf)
        self.descending = -np.sort(-self.key, axis=1)

    def top(self, k: np.ndarray) -> np.ndarray:
        n, g = self.key.shape
        kk = np.clip(k, 1, g)
        threshold = self.descending[np.arange(n), kk - 1][:, None]
        above = self.key > threshold
        tied = self.key == threshold
        room = (kk - above.sum(axis=1))[:, None]
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
        chosen[k < 1] = False
        return chosen


def _block_metrics(
    pred: np.ndarray,
    obs: np.ndarray,
    keep: np.ndarray,
    de_score: np.ndarray,
    significant: np.ndarray | None,
    top_k: Sequence[int],
) -> dict[str, np.ndarray]:
    n_keep = keep.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.where(keep, pred - obs, 0.0)
        out["mae"] = np.abs(diff).sum(axis=1) / n_keep
        out["mse"] = (diff * diff).sum(axis=1) / n_keep
        out["pearson_delta"] = _masked_pearson(pred, obs, keep)
        # Spearman: Pearson of the ranks among the scored genes only.
        out["spearman_delta"] = _masked_pearson(_average_ranks(pred, keep),
                                                _average_ranks(obs, keep), keep)
        dot = np.where(keep, pred * obs, 0.0).sum(axis=1)
        norms = np.sqrt(np.where(keep, pred * pred, 0.0).sum(axis=1)
                        * np.where(keep, obs * obs, 0.0).sum(axis=1))
        out["cosine_delta"] = np.where(norms > 0, np.clip(dot / norms, -1.0, 1.0), np.nan)
        agree = (np.sign(pred) == np.sign(obs)) & keep
        out["direction_agreement"] = agree.sum(axis=1) / n_keep
    for name in ("mae", "mse", "direction_agreement"):
        out[name][n_keep == 0] = np.nan

    # Top-k: the targeted genes are already out of `keep`, so they can never
    # be chosen; observed genes are ranked by DE score, predicted by |change|.
    observed_top = _TopSets(de_score, keep)
    predicted_top = _TopSets(np.abs(pred), keep)
    sets: list[tuple[str, np.ndarray, np.ndarray]] = []
    for k in top_k:
        size = np.full(len(pred), k)
        sets.append((f"top{k}", size, observed_top.top(size)))
    if significant is not None:
        # cell-eval's overlap_at_N: the observed set is every significant gene.
        observed_sig = significant & keep
        sets.append(("n_sig", observed_sig.sum(axis=1), observed_sig))
    for suffix, k, top_obs in sets:
        top_pred = predicted_top.top(k)
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = (top_obs & top_pred).sum(axis=1) / k
        undefined = (k == 0) | (k > n_keep)
        overlap[undefined] = np.nan
        pearson = _masked_pearson(pred, obs, top_obs)
        pearson[undefined] = np.nan
        out[f"de_overlap_{suffix}"] = overlap
        out[f"de_pearson_{suffix}"] = pearson
    return out


def _nonfinite_rows(values: np.ndarray) -> np.ndarray:
    """Indices of the rows of a 2-d array that hold a NaN or an infinite value.

    The one test behind the "finite changes" checks of the metrics, of
    :func:`~causalcell.evaluate.retrieval.pairwise_retrieval` and of
    :func:`~causalcell.evaluate.align.align`; each caller words its own error.
    """
    return np.flatnonzero(~np.isfinite(values).all(axis=1))


def _check_matrix(name: str, values, shape: tuple[int, int] | None) -> np.ndarray:
    arr = values.toarray() if sp.issparse(values) else np.asarray(values)
    if arr.ndim != 2 or (shape is not None and arr.shape != shape):
        expected = "2-d" if shape is None else f"shape {shape}"
        raise ParameterError(f"{name} has shape {arr.shape}; expected {expected}.")
    return arr


def perturbation_metrics(
    predicted: np.ndarray,
    observed: np.ndarray,
    targets: sp.sparray | sp.spmatrix | Sequence[Collection[int]] | None = None,
    *,
    exclude: str | None = "targeted",
    de_score: np.ndarray | None = None,
    significant: np.ndarray | None = None,
    top_k: Sequence[int] = DEFAULT_TOP_K,
) -> pd.DataFrame:
    """Score predicted changes against observed changes, one row per perturbation.

    Parameters
    ----------
    predicted, observed
        Float arrays (n_perturbations, n_genes): changes against a common
        reference, row i of both describing perturbation i.
    targets
        Genes targeted in each perturbation: a sparse bool (n, g) matrix
        (e.g. :attr:`causalcell.data.Interventions.mask`) or a sequence of
        collections of column indices. Required with
        ``exclude="targeted"``.
    exclude
        ``"targeted"``: score each perturbation on the genes it does not
        target. ``None``: score every gene (the unconditioned numbers).
    de_score
        (n, g) evidence of differential expression of the observed data;
        larger means more DE (e.g. ``abs(DEResult.score)``). Default:
        ``abs(observed)``.
    significant
        (n, g) bool: the observed genes called significant (e.g.
        ``DEResult.significant()``). Enables ``de_overlap_n_sig`` and
        ``de_pearson_n_sig``.
    top_k
        Sizes of the top-k DE gene sets. Values ``>= n_genes`` are skipped
        (the "top" would be every gene); a perturbation with fewer scored
        genes than k gets NaN.

    Returns
    -------
    pandas.DataFrame
        One row per perturbation (index 0..n-1): ``n_genes_scored`` and the
        metrics of :func:`metric_names`. Undefined values (a constant
        profile, no significant gene) are NaN.

    Raises
    ------
    ParameterError
        Shapes that do not match, an unknown ``exclude``, ``targets`` missing
        with ``exclude="targeted"``, a non-positive k.
    DataContractError
        NaN or infinite changes (the message names the rows).

    Examples
    --------
    >>> import numpy as np
    >>> observed = np.array([[-3.0, 1.0, -1.0, 0.5, 0.0]])  # gene 0 is the target
    >>> predicted = np.array([[-3.0, -1.0, 1.0, -0.5, 0.0]])
    >>> on = perturbation_metrics(predicted, observed, [[0]], top_k=[2])
    >>> off = perturbation_metrics(predicted, observed, [[0]], exclude=None, top_k=[2])
    >>> round(float(on["pearson_delta"][0]), 2), round(float(off["pearson_delta"][0]), 2)
    (-1.0, 0.53)
    """
    if exclude not in EXCLUDE:
        raise ParameterError(f"exclude={exclude!r} is unknown; use 'targeted' or None.")
    pred = _check_matrix("predicted", predicted, None).astype(np.float64, copy=False)
    obs = _check_matrix("observed", observed, pred.shape).astype(np.float64, copy=False)
    n, g = pred.shape
    for name, arr in (("predicted", pred), ("observed", obs)):
        rows = _nonfinite_rows(arr)
        if len(rows):
            raise DataContractError(
                f"{name} has NaN or infinite values in {len(rows)} row(s) "
                f"{rows[:10].tolist()}; every scored gene needs a finite change."
            )
    if exclude == "targeted" and targets is None:
        raise ParameterError(
            "exclude='targeted' needs the targets (e.g. Interventions.mask); pass "
            "exclude=None for the unconditioned numbers."
        )
    mask = targets_matrix(targets, (n, g))
    if de_score is not None:
        de_score = _check_matrix("de_score", de_score, (n, g)).astype(np.float64, copy=False)
    if significant is not None:
        significant = _check_matrix("significant", significant, (n, g)).astype(bool)
    ks = []
    for k in top_k:
        if int(k) != k or k < 1:
            raise ParameterError(f"top_k values must be positive integers, got {k!r}.")
        if k < g:
            ks.append(int(k))
    step = max(1, _BLOCK_ENTRIES // max(g, 1))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        keep = np.ones((stop - start, g), dtype=bool)
        if exclude == "targeted":
            keep &= ~mask[start:stop].toarray()
        block_score = np.abs(obs[start:stop]) if de_score is None else de_score[start:stop]
        block_sig = None if significant is None else significant[start:stop]
        part = _block_metrics(pred[start:stop], obs[start:stop], keep, block_score, block_sig, ks)
        part["n_genes_scored"] = keep.sum(axis=1)
        parts.append(part)
    columns = ["n_genes_scored", *metric_names(ks, n_sig=significant is not None)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in columns})
