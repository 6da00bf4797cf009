"""The data's own replicate ceiling: how well one half of the cells predicts the other.

A model's score means little on its own: a correlation of 0.3 may be the best
the data allow (few, noisy cells) or far from it. :func:`replicate_ceiling`
measures what the data allow. Each perturbation's cells are split at random
into two halves A and B; the mean profile of A is scored as a *prediction*
of B by exactly the machinery that scores models (:func:`~causalcell.
evaluate.evaluate`: the same alignment, exclusion of the targeted genes, DE
genes of B, retrieval among all perturbations). Repeated over several
random splits, the scores are averaged per perturbation.

Controls are not split: both halves are changes against the mean of all
control cells, as a model's prediction and the observation it is scored
against are. (Splitting them would add control noise to the replicate that
the models' scores do not carry, and lower the ceiling.)

Half size
---------
A half has n1 and n2 cells where the observation a model is scored against
has n = n1 + n2, so the raw split-half score is that of a noisier
replicate. Where the correction follows from the noise of a mean, the value
is the expected score of the *noise-free* profile against the full
observation (the best any model can do):

- ``mse``: ``E|A - B|^2 = s^2 (1/n1 + 1/n2)`` and ``E|truth - O|^2 = s^2 / n``
  gene by gene, so the value is ``raw * n1 n2 / n^2`` (exact);
- ``mae``: for Gaussian means (the central limit) ``E|x| = sqrt(2/pi) sd``,
  so ``raw * sqrt(n1 n2) / n``;
- ``pearson_delta``, ``cosine_delta``, ``spearman_delta``,
  ``de_pearson_*``: with signal variance v and noise variance e of a
  full-size mean, the split-half correlation is ``r = v / (v + 2e)``; the
  Spearman-Brown formula ``2r / (1 + r) = v / (v + e)`` is the correlation
  of two full-size replicates, and its square root (the index of
  reliability, ``sqrt(v / (v + e))``) the correlation of the noise-free
  profile with one (Spearman 1910, Brown 1910). Equal halves assumed;
  approximate for Spearman. A negative ``r`` (no reproducible signal) gives 0.

Not corrected (no correction follows without a model of every gene's
effect): ``direction_agreement``, the top-k overlaps and ``retrieval_rank``.
Their ceiling is that of a half-size replicate, a conservative (low) one: a
good model can exceed it, a calibrated score above 1.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell._validation import check_random_state
from causalcell.data import Interventions, pseudobulk
from causalcell.data.contract import PERTURBATION, PERTURBATION_TYPE, checked_interventions
from causalcell.errors import CausalCellWarning, DataContractError, ParameterError
from causalcell.evaluate._align import align, is_pseudobulk
from causalcell.evaluate._exclude import EXCLUDE_COLUMN, METRIC_EXCLUDES, exclude_rules
from causalcell.evaluate._metrics import DEFAULT_TOP_K
from causalcell.evaluate._report import check_scoring, observed_de, score_aligned

__all__ = ["CORRECTIONS", "half_size_corrected", "halves", "replicate_ceiling"]

_CORRELATIONS = ("pearson_delta", "cosine_delta", "spearman_delta")
#: How each metric's split-half value is corrected for half size (see the
#: module docstring); metrics not listed are not corrected.
CORRECTIONS = {
    "mse": "n1*n2/n^2",
    "mae": "sqrt(n1*n2)/n",
    **{m: "sqrt(spearman-brown)" for m in _CORRELATIONS},
    "de_pearson_*": "sqrt(spearman-brown)",
}


def _correction(metric: str) -> str:
    if metric.startswith("de_pearson_"):
        return CORRECTIONS["de_pearson_*"]
    return CORRECTIONS.get(metric, "none")


def _corrected(raw: np.ndarray, kind: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> np.ndarray:
    n = n1 + n2
    out = raw.copy()
    mse = kind == "n1*n2/n^2"
    out[mse] = raw[mse] * n1[mse] * n2[mse] / n[mse] ** 2
    mae = kind == "sqrt(n1*n2)/n"
    out[mae] = raw[mae] * np.sqrt(n1[mae] * n2[mae]) / n[mae]
    sb = kind == "sqrt(spearman-brown)"
    r = raw[sb]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[sb] = np.sqrt(np.clip(2 * r / (1 + r), 0.0, 1.0))
    return out


def half_size_corrected(
    raw: np.ndarray, metric: str, n1: np.ndarray, n2: np.ndarray
) -> np.ndarray:
    """Split-half scores of ``metric`` corrected for half size (see :data:`CORRECTIONS`).

    For replicate levels computed elsewhere with the same rules (e.g. per
    dose bin, :func:`causalcell.evaluate.score_dose_response`).
    """
    raw = np.asarray(raw, dtype=np.float64)
    kind = np.full(raw.shape, _correction(metric), dtype=object)
    return _corrected(raw, kind, np.asarray(n1, dtype=np.float64),
                      np.asarray(n2, dtype=np.float64))


def halves(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random half (True: half A) of each group of cells, ``floor(n/2)`` cells."""
    return _halves(codes, rng)


def _halves(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random half (True: half A) of each group of cells, ``floor(n/2)`` cells."""
    order = np.lexsort((rng.random(len(codes)), codes))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    sizes = np.diff(np.r_[starts, len(codes)])
    position = np.arange(len(codes)) - np.repeat(starts, sizes)
    half_a = np.empty(len(codes), dtype=bool)
    half_a[order] = position < np.repeat(sizes // 2, sizes)
    return half_a


def replicate_ceiling(
    observed: AnnData,
    *,
    n_splits: int = 5,
    random_state: int | np.random.Generator | None = 0,
    exclude: str | Sequence[str] = METRIC_EXCLUDES,
    top_k: Sequence[int] = DEFAULT_TOP_K,
    de_method: str | None = "t-test",
    alpha: float = 0.05,
    retrieval: bool = True,
    distance: str = "euclidean",
    reference: str = "control",
    control_label: str | None = None,
    layer: str | None = None,
) -> pd.DataFrame:
    """Score one random half of each perturbation's cells as a prediction of the other.

    The best score a model can expect on these data, metric by metric and
    perturbation by perturbation, measured with exactly the rules that score
    the models (see the module docstring of
    :mod:`causalcell.evaluate._ceiling` for the half-size corrections).
    Give the result to :func:`~causalcell.evaluate.compare` (``ceiling=``)
    to place every score between the baseline (0) and this ceiling (1).

    Parameters
    ----------
    observed
        Observed **cells** (not pseudobulk profiles) of the compared
        perturbations, with controls. Compute the ceiling on the same
        perturbations as the models: retrieval ranks depend on the set of
        candidates.
    n_splits
        Random half splits averaged per perturbation.
    random_state
        Seed (or numpy Generator) of the splits.
    exclude, top_k, de_method, alpha, retrieval, distance
        As in :func:`~causalcell.evaluate.evaluate`; use the values given to
        :func:`~causalcell.evaluate.compare`.
    reference, control_label, layer
        As in :func:`~causalcell.evaluate.align`.

    Returns
    -------
    pandas.DataFrame
        Long table, one row per perturbation, exclusion rule and metric:
        ``perturbation``, ``perturbation_type``, ``exclude``,
        ``metric``, ``value`` (the ceiling: the split-half score averaged
        over splits and corrected for half size), ``raw`` (averaged, not
        corrected), ``correction`` (the rule applied, see
        :data:`CORRECTIONS`; ``"none"``), ``split_sd`` (standard deviation
        of the raw score over splits), ``n_cells`` (the perturbation's
        cells), ``n_genes_scored`` and ``scorable`` (as in
        :func:`~causalcell.evaluate.evaluate`). ``attrs`` records the
        settings and the skipped perturbations.

    Raises
    ------
    DataContractError
        Pseudobulk profiles instead of cells (obs has ``n_cells``), no
        perturbation with 2 cells, no controls, and every error of
        :func:`~causalcell.evaluate.align`.
    ParameterError
        ``n_splits`` not a positive integer, and every parameter error of
        :func:`~causalcell.evaluate.evaluate`.

    Warns
    -----
    CausalCellWarning
        Perturbations with fewer than 2 cells are skipped (they cannot be
        split); the warning names them.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> ceiling = replicate_ceiling(sim.adata, n_splits=2, top_k=[5])
    >>> sorted(ceiling["exclude"].unique())
    ['none', 'targeted']
    """
    settings = exclude_rules("replicate_ceiling", exclude)
    check_scoring(top_k, de_method, alpha)
    check_random_state(random_state)
    if isinstance(n_splits, bool) or not isinstance(n_splits, numbers.Integral) or n_splits < 1:
        raise ParameterError(f"n_splits={n_splits!r} must be a positive integer (e.g. 5).")
    if not isinstance(observed, AnnData):
        raise DataContractError(f"replicate_ceiling() takes the observed cells as an AnnData, "
                                f"got {type(observed).__name__}.")
    if is_pseudobulk(observed):
        raise DataContractError(
            "replicate_ceiling() needs the observed cells: it splits each perturbation's cells "
            "into two halves. This data holds pseudobulk profiles (obs has 'n_cells'); pass "
            "the per-cell AnnData the profiles were averaged from."
        )
    checked_interventions(observed, layer=layer)  # Dask blocks are checked as they are read
    iv = Interventions.from_adata(observed, warn_unmeasured=False)
    keys = iv.condition_of().astype(str)
    perturbed = ~iv.is_control
    names, codes = np.unique(keys[perturbed], return_inverse=True)
    counts = np.bincount(codes, minlength=len(names))
    single = names[counts < 2]
    if len(single) == len(names):
        raise DataContractError(
            f"replicate_ceiling() needs perturbations with at least 2 cells to split; "
            f"{'none of the' if len(names) else 'there are no'} perturbations "
            f"{list(names[:10])} {'has' if len(names) else ''} any."
        )
    if len(single):
        warnings.warn(
            f"replicate_ceiling(): {len(single)} perturbation(s) have fewer than 2 cells and "
            f"cannot be split; they get no ceiling: {', '.join(single[:10])}"
            f"{' ...' if len(single) > 10 else ''}.",
            CausalCellWarning, stacklevel=2,
        )
    rows = np.flatnonzero(perturbed)
    keep = counts[codes] >= 2
    rows, codes = rows[keep], codes[keep]
    controls = np.flatnonzero(iv.is_control)
    rng = np.random.default_rng(random_state)
    tables = []
    for _ in range(n_splits):
        in_a = _halves(codes, rng)
        half_a = observed[rows[in_a]]
        half_b = observed[np.sort(np.r_[rows[~in_a], controls])]
        predicted = pseudobulk(half_a, layer=layer)
        aligned = align(predicted, half_b, reference=reference, control_label=control_label,
                        layer=layer)
        de = observed_de(half_b, None, de_method, layer, control_label)
        tables.append(score_aligned(aligned, de, exclude=settings, top_k=top_k, alpha=alpha,
                                    retrieval=retrieval, distance=distance))
    id_columns = [PERTURBATION, PERTURBATION_TYPE, EXCLUDE_COLUMN, "metric"]
    stacked = pd.concat(tables, ignore_index=True)
    grouped = stacked.groupby(id_columns, sort=False)
    out = grouped.agg(raw=("value", "mean"), split_sd=("value", "std"),
                      n_genes_scored=("n_genes_scored", "first"),
                      scorable=("scorable", "all")).reset_index()
    # Cells per perturbation (the key of align is the condition key).
    size = pd.Series(counts, index=names)
    n_cells = size.reindex(out[PERTURBATION].to_numpy()).to_numpy()
    n1 = (n_cells // 2).astype(np.float64)
    n2 = n_cells - n1
    out["correction"] = [_correction(m) for m in out["metric"]]
    out["value"] = _corrected(out["raw"].to_numpy(dtype=np.float64),
                              out["correction"].to_numpy(), n1, n2)
    out["n_cells"] = n_cells.astype(np.int64)
    out = out[[*id_columns, "value", "raw", "correction", "split_sd", "n_cells",
               "n_genes_scored", "scorable"]]
    out.attrs.update({
        "n_splits": int(n_splits),
        "skipped": [str(s) for s in single],
        **{k: v for k, v in tables[0].attrs.items() if k != "unpredicted"},
    })
    return out
