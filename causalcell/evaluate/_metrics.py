"""Per-perturbation agreement between predicted and observed changes.

Every metric is computed, for perturbation i, on the genes that are **not**
targeted in i (``exclude="targeted"``, the default): a targeted gene's own
change is set by the experimenter (its level T is given), so scoring it
rewards predicting the obvious. ``exclude="none"`` gives the usual
unconditioned numbers for comparison with published evaluators.

Metrics (one value per perturbation):

==========================  ====================================================
``mae``, ``mse``            mean absolute / squared error of the changes
``pearson_delta``           Pearson correlation of the changes
``spearman_delta``          Spearman correlation of the changes
``cosine_delta``            cosine similarity of the changes
``direction_agreement``     share of genes whose change has the observed sign
                            (a zero on one side only counts half)
``de_overlap_top{k}``       share of the observed top-k DE genes that are among
                            the k genes with the largest predicted |change|
``de_pearson_top{k}``       Pearson of the changes on the observed top-k DE genes
``de_overlap_sig``          share of the N significant observed DE genes
                            among the N genes with the largest predicted
                            |change| (see "cell-eval" below)
``de_pearson_sig``          Pearson on those significant genes
==========================  ====================================================

The targeted genes are removed **before** the top-k genes are chosen (Csendes
et al. 2025 showed that leaving the knocked-down gene in the top-20 DE genes
reverses which model wins). Everything is vectorized across perturbations
and genes, in row blocks so that memory stays bounded.

Undefined values
----------------
A correlation-type metric (``pearson_delta``, ``spearman_delta``,
``cosine_delta``, ``direction_agreement``, ``de_pearson_*``) needs both sides
to vary. Floating point makes "constant" a matter of tolerance: a predicted
change of zero computed as the difference of two control means summed in
different orders is ``1e-14``, not 0, and a plain ``> 0`` test would let
rounding noise decide a correlation (-1.0, 0.29, 1.0 ...). So, with
``tol = CONSTANT_RTOL * scale`` (``scale``: the magnitude of the observed
data, see :func:`perturbation_metrics`):

- an entry with ``|change| <= tol`` is zero;
- a side whose spread over the scored genes (standard deviation; for
  ``cosine_delta`` and ``direction_agreement`` the root mean square) is at
  most ``tol`` is constant (held exactly at its mean), and every
  correlation-type metric of that perturbation is NaN.

How summaries count a NaN is decided by :func:`no_skill`: correlations count
0 (no skill) and direction agreement 0.5 (a coin flip) by default, so that a
model cannot raise its mean by predicting nothing where it has nothing to
say.

Top-k sets with ties
--------------------
When genes tie at the k-th place, the k-set is not unique. The overlap
``de_overlap_*`` is then the **expectation over random tie-breaking** on
both sides: a gene above the threshold is in the set with probability 1, a
gene among the t genes tied at the threshold with probability
``(k - above) / t``, and the expected overlap is
``sum_g P(g in observed set) * P(g in predicted set) / k``. A constant
prediction (every gene tied) thus scores exactly the chance rate
``k / n_genes_scored``. ``de_pearson_top{k}`` is computed on one observed set,
ties broken by the lower column index.

cell-eval
---------
With ``exclude="none"`` and predictions whose control rows equal the observed
control mean, ``pearson_delta``, ``mse`` and ``mae`` are cell-eval's
``pearson_delta``, ``mse`` (or ``mse_delta``) and ``mae`` (or ``mae_delta``)
of the same profiles (checked by the test suite against cell-eval itself).
``de_overlap_sig`` is *not* cell-eval's ``overlap_at_N``, and is named
differently for that reason: cell-eval ranks the predicted genes among
those its DE test calls significant *in the predicted cells*, by
``|log2 fold change|``, and scores 0 where no gene is significant. Here a
prediction is one profile (no cells to test), so the predicted set is the N
genes with the largest ``|predicted change|`` on the log-normalized scale,
the targeted genes are excluded (unless ``exclude="none"``), and a
perturbation without a significant observed gene is NaN (not scored) rather
than 0.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from causalcell._validation import is_real, nonfinite_rows
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate._exclude import EXCLUDE_DOC, exclude_rule, fill_doc

__all__ = [
    "BASE_METRICS",
    "CONSTANT_RTOL",
    "higher_is_better",
    "metric_names",
    "no_skill",
    "perturbation_metrics",
    "targets_matrix",
]

BASE_METRICS = (
    "mae", "mse", "pearson_delta", "spearman_delta", "cosine_delta", "direction_agreement",
)
_LOWER_IS_BETTER = frozenset({"mae", "mse", "retrieval_rank"})
DEFAULT_TOP_K = (20, 100, 200)
# Relative tolerance of "zero" and "constant" (see the module docstring):
# about 10^6 times the rounding left by summing a few thousand values of the
# data's magnitude, and far below any change that means something.
CONSTANT_RTOL = 1e-9
# Correlation-type metrics whose NaN can come from the prediction (a constant
# side), with the score of a prediction that has no skill.
_NO_SKILL = {"pearson_delta": 0.0, "spearman_delta": 0.0, "cosine_delta": 0.0,
             "direction_agreement": 0.5}
# Matrix entries per row block: a few float64 temporaries of this size at once.
_BLOCK_ENTRIES = 1 << 21


def higher_is_better(metric: str) -> bool:
    """Direction of a metric: False for errors and ranks, True for similarities."""
    return metric not in _LOWER_IS_BETTER


def no_skill(metric: str) -> float | None:
    """The value a NaN of ``metric`` counts as in summaries, or None to leave it out.

    A NaN of a correlation-type metric can come from the prediction (a
    constant predicted change): it counts as no skill, 0 for the
    correlations (``pearson_delta``, ``spearman_delta``, ``cosine_delta``,
    ``de_pearson_*``) and 0.5 for ``direction_agreement`` (a coin flip).
    Every other metric is undefined only because of the observed data (no
    gene scored, no significant gene, fewer genes than k), the same for
    every model: None, the perturbation is not scored.

    Examples
    --------
    >>> no_skill("pearson_delta"), no_skill("direction_agreement"), no_skill("mse")
    (0.0, 0.5, None)
    """
    if metric.startswith("de_pearson_"):
        return 0.0
    return _NO_SKILL.get(metric)


def metric_names(
    top_k: Sequence[int] = DEFAULT_TOP_K, *, significant: bool = True
) -> list[str]:
    """Names of the metrics computed by :func:`perturbation_metrics`, in column order.

    ``significant=True`` includes ``de_overlap_sig`` and ``de_pearson_sig``
    (computed when significant genes are given).
    """
    names = list(BASE_METRICS)
    names += [f"de_overlap_top{k}" for k in top_k]
    names += [f"de_pearson_top{k}" for k in top_k]
    if significant:
        names += ["de_overlap_sig", "de_pearson_sig"]
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


def _masked_pearson(
    a: np.ndarray, b: np.ndarray, mask: np.ndarray, tol: float = 0.0
) -> np.ndarray:
    """Row-wise Pearson correlation over the entries where ``mask`` is True.

    Two passes (means first), so that large common offsets do not cancel
    digits. NaN where fewer than 2 entries or a side is constant: its
    standard deviation over the masked entries is at most ``tol`` (0: exactly
    constant).
    """
    n = mask.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ma = np.where(mask, a, 0.0).sum(axis=1) / n
        mb = np.where(mask, b, 0.0).sum(axis=1) / n
        da = np.where(mask, a - ma[:, None], 0.0)
        db = np.where(mask, b - mb[:, None], 0.0)
        ssa, ssb = (da * da).sum(axis=1), (db * db).sum(axis=1)
        r = (da * db).sum(axis=1) / np.sqrt(ssa * ssb)
        constant = ~(np.sqrt(ssa / n) > tol) | ~(np.sqrt(ssb / n) > tol)
    r[(n < 2) | constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def _settle(
    x: np.ndarray, keep: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the tolerance rules to one side (see the module docstring).

    Entries with ``|x| <= tol`` become 0; a row whose standard deviation over
    the kept genes is at most ``tol`` becomes exactly constant (its mean, 0
    when that is within ``tol``). Returns the settled values and, per row,
    whether the side is constant and whether it is zero on the kept genes
    (root mean square ``<= tol``).
    """
    x = np.where(np.abs(x) <= tol, 0.0, x)
    n = keep.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(keep, x, 0.0).sum(axis=1) / n
        spread = np.sqrt(np.where(keep, (x - mean[:, None]) ** 2, 0.0).sum(axis=1) / n)
        rms = np.sqrt(np.where(keep, x * x, 0.0).sum(axis=1) / n)
    mean = np.where(np.abs(mean) <= tol, 0.0, mean)
    flat = (spread <= tol) & (n > 0)
    if flat.any():
        x[flat] = mean[flat, None]
    return x, flat, ~(rms > tol)


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

    The scores of every row are sorted once (a plain sort, no argsort). NaN
    scores rank below every number, excluded genes never enter.
    """

    def __init__(self, score: np.ndarray, keep: np.ndarray) -> None:
        key = np.where(np.isnan(score), -np.finfo(np.float64).max, score)
        self.key = np.where(keep, key, -np.inf)
        self.descending = -np.sort(-self.key, axis=1)

    def _threshold(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n, g = self.key.shape
        kk = np.clip(k, 1, g)
        threshold = self.descending[np.arange(n), kk - 1][:, None]
        above = self.key > threshold
        tied = self.key == threshold
        room = (kk - above.sum(axis=1))[:, None]
        return kk, above, tied, room

    def top(self, k: np.ndarray) -> np.ndarray:
        """One k-set per row: the genes above the k-th value plus, among genes
        tied with it, those with the lowest column indices (the genes of a
        stable sort by decreasing score)."""
        _, above, tied, room = self._threshold(k)
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
        chosen[k < 1] = False
        return chosen

    def inclusion(self, k: np.ndarray) -> np.ndarray:
        """Probability of each gene to be in the k-set when ties at the k-th
        value are broken at random: 1 above it, ``room / n_tied`` at it."""
        _, above, tied, room = self._threshold(k)
        n_tied = tied.sum(axis=1, keepdims=True)
        p = np.where(above, 1.0, np.where(tied, room / np.maximum(n_tied, 1), 0.0))
        p[k < 1] = 0.0
        return p


def _block_metrics(
    pred: np.ndarray,
    obs: np.ndarray,
    keep: np.ndarray,
    de_score: np.ndarray,
    significant: np.ndarray | None,
    top_k: Sequence[int],
    tol: float,
    same: bool = False,
) -> dict[str, np.ndarray]:
    """The metrics of one block of rows. ``same``: ``pred`` holds the observed
    values themselves (the observed changes scored as a prediction, which
    tells what the data leave undefined): one side's work serves both."""
    n_keep = keep.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        # Errors on the values as given; everything else on the settled sides.
        diff = np.where(keep, pred - obs, 0.0)
        out["mae"] = np.abs(diff).sum(axis=1) / n_keep
        out["mse"] = (diff * diff).sum(axis=1) / n_keep
        obs, obs_flat, obs_zero = _settle(obs, keep, tol)
        pred, pred_flat, pred_zero = (obs, obs_flat, obs_zero) if same else _settle(pred, keep,
                                                                                    tol)
        out["pearson_delta"] = _masked_pearson(pred, obs, keep, tol)
        # Spearman: Pearson of the ranks among the scored genes only; a side
        # is constant when its values are, whatever rounding did to them.
        obs_ranks = _average_ranks(obs, keep)
        pred_ranks = obs_ranks if same else _average_ranks(pred, keep)
        spearman = _masked_pearson(pred_ranks, obs_ranks, keep)
        spearman[pred_flat | obs_flat] = np.nan
        out["spearman_delta"] = spearman
        dot = np.where(keep, pred * obs, 0.0).sum(axis=1)
        norms = np.sqrt(np.where(keep, pred * pred, 0.0).sum(axis=1)
                        * np.where(keep, obs * obs, 0.0).sum(axis=1))
        zero = pred_zero | obs_zero
        out["cosine_delta"] = np.where(zero, np.nan, np.clip(dot / norms, -1.0, 1.0))
        # Same sign: 1; opposite signs: 0; a zero on one side only (no change
        # predicted, or none observed): 0.5, a coin flip, so that predicting
        # "no change" is never worse than predicting noise.
        sp, so = np.sign(pred), np.sign(obs)
        agree = np.where(sp == so, 1.0, np.where(sp * so < 0, 0.0, 0.5))
        agree = np.where(keep, agree, 0.0)
        out["direction_agreement"] = np.where(zero, np.nan, agree.sum(axis=1) / n_keep)
    for name in ("mae", "mse", "direction_agreement"):
        out[name][n_keep == 0] = np.nan

    # Top-k: the targeted genes are already out of `keep`, so they can never
    # be chosen; observed genes are ranked by DE score, predicted by |change|.
    observed_top = _TopSets(de_score, keep)
    predicted_top = _TopSets(np.abs(pred), keep)
    sets: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    for k in top_k:
        size = np.full(len(pred), k)
        sets.append((f"top{k}", size, observed_top.inclusion(size), observed_top.top(size)))
    if significant is not None:
        # The observed set is every significant scored gene, N of them.
        observed_sig = significant & keep
        sets.append(("sig", observed_sig.sum(axis=1), observed_sig.astype(np.float64),
                     observed_sig))
    for suffix, k, p_obs, top_obs in sets:
        p_pred = predicted_top.inclusion(k)
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = (p_obs * p_pred).sum(axis=1) / k
        undefined = (k == 0) | (k > n_keep)
        overlap[undefined] = np.nan
        pearson = _masked_pearson(pred, obs, top_obs, tol)
        pearson[undefined] = np.nan
        out[f"de_overlap_{suffix}"] = overlap
        out[f"de_pearson_{suffix}"] = pearson
    return out


def _check_matrix(name: str, values, shape: tuple[int, int] | None) -> np.ndarray:
    arr = values.toarray() if sp.issparse(values) else np.asarray(values)
    if arr.ndim != 2 or (shape is not None and arr.shape != shape):
        expected = "2-d" if shape is None else f"shape {shape}"
        raise ParameterError(f"{name} has shape {arr.shape}; expected {expected}.")
    return arr


def check_top_k(top_k: object) -> list[int]:
    """The sizes of the top-k gene sets: positive whole numbers, else a ParameterError
    naming ``top_k``."""
    values = [top_k] if is_real(top_k) else top_k
    ok = isinstance(values, Collection) and not isinstance(values, str) and all(
        is_real(k) and int(k) == k and k >= 1 for k in values)
    if not ok:
        raise ParameterError(
            f"top_k={top_k!r} is invalid; give positive integers, e.g. top_k=[20, 100]."
        )
    return [int(k) for k in values]


@fill_doc(exclude=EXCLUDE_DOC)
def perturbation_metrics(
    predicted: np.ndarray,
    observed: np.ndarray,
    targets: sp.sparray | sp.spmatrix | Sequence[Collection[int]] | None = None,
    *,
    exclude: str = "targeted",
    de_score: np.ndarray | None = None,
    significant: np.ndarray | None = None,
    top_k: Sequence[int] = DEFAULT_TOP_K,
    scale: float | None = None,
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
        ``"targeted"`` (default) or ``"none"``.
        {exclude}
    de_score
        (n, g) evidence of differential expression of the observed data;
        larger means more DE (e.g. ``abs(DEResult.score)``). Default:
        ``abs(observed)``.
    significant
        (n, g) bool: the observed genes called significant (e.g.
        ``DEResult.significant()``). Enables ``de_overlap_sig`` and
        ``de_pearson_sig``.
    top_k
        Sizes of the top-k DE gene sets. Values ``>= n_genes`` are skipped
        (the "top" would be every gene); a perturbation with fewer scored
        genes than k gets NaN.
    scale
        The magnitude of the observed data that rounding errors scale with:
        an entry within ``CONSTANT_RTOL * scale`` of zero is zero, a side
        whose spread is within it is constant (see the module docstring).
        Default: the largest ``|observed|`` change. :func:`evaluate` passes
        the largest observed expression value (changes are differences of
        such values).

    Returns
    -------
    pandas.DataFrame
        One row per perturbation (index 0..n-1): ``n_genes_scored`` and the
        metrics of :func:`metric_names`. Undefined values (a constant side,
        no significant gene, fewer scored genes than k) are NaN.

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
    >>> off = perturbation_metrics(predicted, observed, [[0]], exclude="none", top_k=[2])
    >>> round(float(on["pearson_delta"][0]), 2), round(float(off["pearson_delta"][0]), 2)
    (-1.0, 0.53)
    """
    exclude = exclude_rule("perturbation_metrics", exclude)
    same = predicted is observed  # e.g. evaluate's scorability: the observed scored as given
    pred = _check_matrix("predicted", predicted, None).astype(np.float64, copy=False)
    obs = _check_matrix("observed", observed, pred.shape).astype(np.float64, copy=False)
    n, g = pred.shape
    for name, arr in (("predicted", pred), ("observed", obs)):
        rows = nonfinite_rows(arr)
        if len(rows):
            raise DataContractError(
                f"{name} has NaN or infinite values in {len(rows)} row(s) "
                f"{rows[:10].tolist()}; every scored gene needs a finite change."
            )
    if exclude == "targeted" and targets is None:
        raise ParameterError(
            "exclude='targeted' needs the targets (e.g. Interventions.mask); pass "
            "exclude='none' for the unconditioned numbers."
        )
    mask = targets_matrix(targets, (n, g))
    if de_score is not None:
        de_score = _check_matrix("de_score", de_score, (n, g)).astype(np.float64, copy=False)
    if significant is not None:
        significant = _check_matrix("significant", significant, (n, g)).astype(bool)
    if scale is None:
        scale = float(np.abs(obs).max()) if obs.size else 0.0
    elif not (np.isfinite(scale) and scale >= 0):
        raise ParameterError(f"scale={scale!r} must be a finite number >= 0.")
    tol = CONSTANT_RTOL * float(scale)
    ks = [k for k in check_top_k(top_k) if k < g]
    step = max(1, _BLOCK_ENTRIES // max(g, 1))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        keep = np.ones((stop - start, g), dtype=bool)
        if exclude == "targeted":
            keep &= ~mask[start:stop].toarray()
        block_score = np.abs(obs[start:stop]) if de_score is None else de_score[start:stop]
        block_sig = None if significant is None else significant[start:stop]
        part = _block_metrics(pred[start:stop], obs[start:stop], keep, block_score, block_sig, ks,
                              tol, same=same)
        part["n_genes_scored"] = keep.sum(axis=1)
        parts.append(part)
    columns = ["n_genes_scored", *metric_names(ks, significant=significant is not None)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in columns})
