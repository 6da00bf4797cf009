"""Scoring per level of T: the response to a perturbation is a curve, scored bin by bin.

In a knockdown or activation screen the level T of the targeted gene varies
from cell to cell (incomplete knockdown, cells that escape it). Averaging all
cells of a guide mixes those doses; calling cells perturbed / not perturbed
throws the dose away. Here the cells of each perturbation are binned by their
observed T, and each bin is a condition of its own:

- :func:`dose_bins` bins the held-out cells of each single-gene knockdown or
  overexpression by T (equal-count quantile bins, at least ``min_cells``
  cells each; fewer bins when a perturbation has few cells). A cell's T is
  its recorded level (``expression_level_after_perturbation``) or, where none
  is recorded, its own measured expression of the target (its per-cell
  dose). Knockouts (T = 0 by rule) have no dose, and combinations no
  one-dimensional one (a single mean T of a mix of doses would misstate a
  non-linear response): both are left to
  :func:`~causalcell.benchmark.cross_validate`. The request it returns asks a
  model for every bin at the bin's mean T.
- :func:`score_dose_response` scores the prediction of every bin against that
  bin's own mean, as changes against the control mean, with the metrics and
  exclusion rules of :func:`~causalcell.evaluate.perturbation_metrics`
  (the targeted genes are not scored by default). Each bin also gets its
  replicate level (one random half of its cells scored as a prediction of
  the other, corrected for half size as in
  :func:`~causalcell.evaluate.replicate_ceiling`), and the noise of its
  mean, to say whether a bin predicted at "no change" is predicted within
  noise of control.
- The shape of each response: for a perturbation with at least 3 bins, the
  genes that respond (observed span, the change at the lowest-T bin minus
  the change at the highest-T bin, beyond ``RESPONSE_SE`` standard errors;
  at most ``top_genes`` of them, the largest spans first; chosen on the
  observations only, so the same genes for every model) get: the
  correlation of predicted and observed changes across the bins
  (``shape_pearson``), the predicted span over the observed one
  (``span_ratio``: 1 is the right amplitude, 0 a flat prediction) and the
  root mean square error across the bins relative to the observed span
  (``curve_error``: 0 is exact; a flat prediction at the highest-T bin's
  change scores about 0.5 to 0.7).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell.data import LEVEL, Interventions
from causalcell.data._schema import format_levels
from causalcell.data._sparse import gather_entries
from causalcell.data._stats import group_moments
from causalcell.data.contract import (
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    expression_matrix,
    validate,
)
from causalcell.errors import CausalCellWarning, DataContractError, ParameterError
from causalcell.evaluate._ceiling import half_size_corrected, halves
from causalcell.evaluate._exclude import EXCLUDE_DOC, exclude_rule, fill_doc
from causalcell.evaluate._metrics import BASE_METRICS, no_skill, perturbation_metrics

__all__ = [
    "MIN_CELLS_PER_BIN",
    "NEAR_CONTROL_SE",
    "RESPONSE_SE",
    "DoseBins",
    "DoseResponseScores",
    "dose_bins",
    "score_dose_response",
]

#: Smallest ``min_cells`` accepted: a bin's mean needs cells to split in two
#: halves for its replicate level, and a noise estimate.
MIN_CELLS_PER_BIN = 4
#: A bin is predicted "near control" when the predicted change's root mean
#: square over the scored genes is at most this many standard errors of the
#: bin's observed mean (the same root mean square of per-gene standard errors).
NEAR_CONTROL_SE = 1.0
#: A gene responds to a perturbation when its observed span across the bins is
#: beyond this many standard errors.
RESPONSE_SE = 3.0
_BINNABLE_KINDS = ("knockdown", "overexpression")


@dataclass(frozen=True, repr=False)
class DoseBins:
    """The dose bins of a set of cells (see :func:`dose_bins`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per bin, indexed by the bin key (``"TF01 [bin 2/4]"``):
        ``condition`` (the condition key), ``perturbation``,
        ``perturbation_type``, ``bin`` (0 = lowest T), ``n_bins`` (bins of
        that perturbation), ``n_cells``, ``level`` (mean T; NaN for
        combinations), ``level_min``, ``level_max``, ``control_level``
        (mean level of the target in control cells), ``target`` and ``escaper`` (the
        bin's mean T is within one control-cell standard deviation of the
        control level: its cells are not knocked down).
    cell_bin : numpy.ndarray
        Row of ``table`` of every cell (-1: controls, and cells of skipped
        perturbations).
    levels : numpy.ndarray
        The per-cell T used (NaN for controls, knockouts and combinations).
    """

    table: pd.DataFrame
    cell_bin: np.ndarray
    levels: np.ndarray
    _level_text: np.ndarray

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        n_pert = self.table["condition"].nunique()
        return f"DoseBins({len(self)} bins of {n_pert} perturbations)"

    def request(self) -> pd.DataFrame:
        """One prediction request per bin: the bin's perturbation at its mean T.

        Returns
        -------
        pandas.DataFrame
            The obs contract columns (``perturbation``, ``is_control``,
            ``perturbation_type``, ``expression_level_after_perturbation``)
            plus ``dose_bin`` and ``n_cells``, indexed by bin key. Pass it
            to a model's ``predict``.
        """
        t = self.table
        return pd.DataFrame(
            {
                PERTURBATION: t[PERTURBATION].to_numpy(),
                IS_CONTROL: False,
                PERTURBATION_TYPE: t[PERTURBATION_TYPE].to_numpy(),
                LEVEL: self._level_text,
                "dose_bin": t["bin"].to_numpy(),
                "n_cells": t["n_cells"].to_numpy(),
            },
            index=t.index.copy(),
        )

    def subset(self, conditions: Sequence[str]) -> DoseBins:
        """The bins of some conditions (cells of the others become -1)."""
        keep = self.table["condition"].isin(list(conditions)).to_numpy()
        new_row = np.full(len(self.table), -1, dtype=np.int64)
        new_row[keep] = np.arange(int(keep.sum()))
        cell_bin = np.where(self.cell_bin >= 0, new_row[np.maximum(self.cell_bin, 0)], -1)
        return DoseBins(self.table[keep].copy(), cell_bin, self.levels, self._level_text[keep])


def _check_min_cells(min_cells: object) -> int:
    if (isinstance(min_cells, bool) or not isinstance(min_cells, numbers.Integral)
            or min_cells < MIN_CELLS_PER_BIN):
        raise ParameterError(
            f"min_cells={min_cells!r} is too few cells per bin: each bin's mean is scored, "
            f"split in two halves for its replicate level and needs a noise estimate, so "
            f"min_cells must be an integer >= {MIN_CELLS_PER_BIN} (20 or more gives stable "
            f"bins)."
        )
    return int(min_cells)


def dose_bins(
    cells: AnnData,
    *,
    n_bins: int = 4,
    min_cells: int = 20,
    layer: str | None = None,
) -> DoseBins:
    """Bin the cells of every perturbation by their observed level T.

    Parameters
    ----------
    cells
        Cells (not pseudobulk rows) following the data contract, with
        control cells.
    n_bins
        Bins per single-gene knockdown / overexpression (equal-count
        quantiles of T). A perturbation with fewer than ``n_bins *
        min_cells`` cells gets ``n_cells // min_cells`` bins. Knockouts and
        combinations are not binned (see the module docstring).
    min_cells
        Fewest cells in a bin (>= :data:`MIN_CELLS_PER_BIN`). Perturbations
        with fewer cells are left out, with a warning naming them.
    layer
        Layer holding the log-normalized expression (``None``: ``X``), read
        for the per-cell T of cells without a recorded level.

    Returns
    -------
    DoseBins

    Raises
    ------
    ParameterError
        ``n_bins`` not a positive integer; ``min_cells`` below
        :data:`MIN_CELLS_PER_BIN` (too few cells per bin).
    DataContractError
        Pseudobulk rows instead of cells, no control cells, no single-gene
        knockdown or overexpression of a measured gene, or none with
        ``min_cells`` cells (too few cells per bin).

    Warns
    -----
    CausalCellWarning
        Perturbations left out for having fewer than ``min_cells`` cells.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, efficiency_sd=0.2, random_state=0)
    >>> bins = dose_bins(sim.adata, n_bins=2, min_cells=20)
    >>> int(bins.table.loc["TF01 [bin 1/2]", "n_cells"])
    25
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ParameterError(f"n_bins={n_bins!r} must be a positive integer (e.g. 4).")
    min_cells = _check_min_cells(min_cells)
    iv, X = _dose_input(cells, layer)
    cond = iv.conditions
    cell_level, cell_target, n_measured = _cell_levels(iv, X)
    perturbed = ~iv.is_control & (n_measured > 0)
    usable, n_eff = _binned_conditions(iv, perturbed, n_bins, min_cells)
    cell_code_bin, offsets = _assign_bins(iv.codes, perturbed & usable[iv.codes], cell_level,
                                          n_eff, usable)
    n_total = int(offsets[-1])
    # Bin table, one row per (condition, bin) in condition order.
    bin_condition = np.repeat(np.arange(len(cond)), n_eff * usable)
    bin_index = np.arange(n_total) - offsets[bin_condition]
    binned = cell_code_bin >= 0
    n_cells = np.bincount(cell_code_bin[binned], minlength=n_total)
    mean_level, low, high = _level_summary(cell_code_bin, cell_level, n_total)
    has_level = binned & ~np.isnan(cell_level)
    target = np.full(n_total, -1, dtype=np.int64)
    target[cell_code_bin[has_level]] = cell_target[has_level]
    control_level, control_sd = _control_levels(X, iv.is_control, target)
    # Escapers: a bin whose mean T is within one control sd of the target's control level.
    escaper = mean_level >= control_level - control_sd
    # The level each bin is asked at: its mean T (binned conditions have one target).
    text = np.array([format_levels([v]) for v in mean_level], dtype=object)
    condition_keys = cond.index.to_numpy()[bin_condition]
    total = n_eff[bin_condition]
    names = [f"{c} [bin {i + 1}/{t}]" for c, i, t in zip(condition_keys, bin_index, total,
                                                        strict=True)]
    table = pd.DataFrame(
        {
            "condition": condition_keys,
            PERTURBATION: cond[PERTURBATION].to_numpy()[bin_condition],
            PERTURBATION_TYPE: cond[PERTURBATION_TYPE].to_numpy()[bin_condition],
            "bin": bin_index.astype(np.int64),
            "n_bins": total.astype(np.int64),
            "n_cells": n_cells.astype(np.int64),
            "level": mean_level,
            "level_min": low,
            "level_max": high,
            "control_level": control_level,
            "target": np.where(target >= 0, np.asarray(iv.genes, dtype=object)[
                np.maximum(target, 0)], None),
            "escaper": escaper,
        },
        index=pd.Index(names, name="dose_bin"),
    )
    return DoseBins(table, cell_code_bin, cell_level, text)


def _dose_input(cells: AnnData, layer: str | None) -> tuple[Interventions, Any]:
    """The interventions and expression of per-cell data with controls, or our error."""
    if not isinstance(cells, AnnData):
        raise DataContractError(f"dose_bins() takes cells as an AnnData, got "
                                f"{type(cells).__name__}.")
    if "n_cells" in cells.obs.columns:
        raise DataContractError(
            "dose_bins() needs cells: it bins each perturbation's cells by their level T, and "
            "this data holds pseudobulk profiles (obs has 'n_cells'). Pass the per-cell AnnData."
        )
    validate(cells, layer=layer)
    iv = Interventions.from_adata(cells, warn_unmeasured=False)
    if not iv.is_control.any():
        raise DataContractError(
            f"dose_bins() needs control cells (column {IS_CONTROL!r}): bins are scored as "
            f"changes against the control mean, and escapers are told by the control level."
        )
    return iv, expression_matrix(cells, layer)


def _cell_levels(iv: Interventions, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: T of its single measured target (the recorded level, else the measured
    one; NaN otherwise), that target's column (-1 otherwise), and its measured target
    count."""
    rows, cols = iv.entry_rows, iv.mask.indices
    n_measured = iv.conditions["n_measured"].to_numpy()[iv.codes]
    single_entry = n_measured[rows] == 1
    level = iv.levels.copy()
    unknown = np.flatnonzero(single_entry & np.isnan(level))
    level[unknown] = gather_entries(X, rows[unknown], cols[unknown])
    cell_level = np.full(iv.n_samples, np.nan)
    cell_level[rows[single_entry]] = level[single_entry]
    cell_target = np.full(iv.n_samples, -1, dtype=np.int64)
    cell_target[rows[single_entry]] = cols[single_entry]
    return cell_level, cell_target, n_measured


def _binned_conditions(iv: Interventions, perturbed: np.ndarray, n_bins: int,
                       min_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Which conditions are binned (single-gene knockdown / overexpression with
    ``min_cells`` cells; the others warned about or refused) and their bin counts."""
    cond = iv.conditions
    counts = np.bincount(iv.codes[perturbed], minlength=len(cond))
    kind = cond[PERTURBATION_TYPE].to_numpy().astype(str)
    binnable = ((cond["n_measured"].to_numpy() == 1) & (cond["n_targets"].to_numpy() == 1)
                & np.isin(kind, _BINNABLE_KINDS))
    n_eff = np.clip(np.minimum(n_bins, counts // min_cells), 1, None)
    present = (counts > 0) & ~cond[IS_CONTROL].to_numpy() & binnable
    if not present.any():
        raise DataContractError(
            "dose_bins(): no single-gene knockdown or overexpression of a measured gene to bin "
            "by T (knockouts hold T = 0 by rule; combinations have no one-dimensional dose). "
            "Score those with causalcell.benchmark.cross_validate."
        )
    small = present & (counts < min_cells)
    if small.any():
        names = cond.index[small].tolist()
        warnings.warn(
            f"dose_bins(): {len(names)} perturbation(s) have fewer than min_cells={min_cells} "
            f"cells and are left out: {', '.join(map(str, names[:10]))}"
            f"{' ...' if len(names) > 10 else ''}.",
            CausalCellWarning, stacklevel=3,
        )
    usable = present & ~small
    if not usable.any():
        raise DataContractError(
            f"dose_bins(): no perturbation has min_cells={min_cells} cells (the largest has "
            f"{int(counts.max(initial=0))}): too few cells per bin. Lower min_cells (>= "
            f"{MIN_CELLS_PER_BIN}) or pass more cells."
        )
    return usable, n_eff


def _assign_bins(codes: np.ndarray, member: np.ndarray, cell_level: np.ndarray,
                 n_eff: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each member cell's bin (-1 for the others): equal-count bins by rank of T within
    its condition (ties broken by cell order); and the first bin of each condition."""
    idx = np.flatnonzero(member)
    key = np.where(np.isnan(cell_level[idx]), 0.0, cell_level[idx])
    order = idx[np.lexsort((idx, key, codes[idx]))]
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    n_of = np.repeat(sizes, sizes)
    b = (rank * n_eff[sorted_codes]) // n_of
    cell_code_bin = np.full(len(codes), -1, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_eff * usable)])
    cell_code_bin[order] = offsets[sorted_codes] + b
    return cell_code_bin, offsets


def _level_summary(cell_bin: np.ndarray, cell_level: np.ndarray,
                   n_total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, smallest and largest T of each bin's cells (NaN for a bin without T)."""
    has_level = (cell_bin >= 0) & ~np.isnan(cell_level)
    level_sum = np.bincount(cell_bin[has_level], weights=cell_level[has_level],
                            minlength=n_total)
    level_n = np.bincount(cell_bin[has_level], minlength=n_total)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_level = np.where(level_n > 0, level_sum / level_n, np.nan)
    low = np.full(n_total, np.inf)
    high = np.full(n_total, -np.inf)
    np.minimum.at(low, cell_bin[has_level], cell_level[has_level])
    np.maximum.at(high, cell_bin[has_level], cell_level[has_level])
    low[level_n == 0] = np.nan
    high[level_n == 0] = np.nan
    return mean_level, low, high


def _control_levels(X: Any, is_control: np.ndarray,
                    target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bin, the control mean and sd of its target gene (NaN without one)."""
    control_rows = np.flatnonzero(is_control)
    control_level = np.full(len(target), np.nan)
    control_sd = np.full(len(target), np.nan)
    with_target = np.flatnonzero(target >= 0)
    if with_target.size:
        genes = np.unique(target[with_target])
        stats = group_moments(X[control_rows][:, genes] if not sp.issparse(X)
                              else sp.csr_array(X)[control_rows][:, genes],
                              np.zeros(len(control_rows), dtype=np.int64), 1, squares=True)
        mean, var = stats.mean_and_variance()
        where = np.searchsorted(genes, target[with_target])
        control_level[with_target] = mean[0, where]
        control_sd[with_target] = np.sqrt(np.nan_to_num(var[0, where]))
    return control_level, control_sd


@dataclass(frozen=True, repr=False)
class DoseResponseScores:
    """The result of :func:`score_dose_response`.

    Attributes
    ----------
    bins : pandas.DataFrame
        One row per bin: the columns of :attr:`DoseBins.table`,
        ``n_genes_scored``, every base metric (mae, mse, pearson_delta,
        spearman_delta, cosine_delta, direction_agreement), its replicate level
        ``ceiling_<metric>`` (one half of the bin's cells scored as a
        prediction of the other, averaged over splits, corrected for half
        size), ``predicted_rms_change`` / ``observed_rms_change`` (root mean
        square change over the scored genes), ``noise_rms`` (the same of the
        per-gene standard errors of the bin's mean) and ``near_control``
        (``predicted_rms_change <= NEAR_CONTROL_SE * noise_rms``).
    genes : pandas.DataFrame
        Perturbations with at least 3 bins: one row per (perturbation,
        responding gene): ``condition``, ``perturbation``,
        ``perturbation_type``, ``gene``,
        ``observed_span`` and ``predicted_span`` (change at the lowest-T bin
        minus change at the highest-T bin), ``span_ratio`` (predicted /
        observed), ``shape_pearson`` (predicted vs observed changes across
        the bins), ``curve_error`` (root mean square error across the bins /
        ``|observed_span|``) and ``rank`` (1: the largest observed span).
        Only genes whose observed span is beyond :data:`RESPONSE_SE`
        standard errors, at most ``top_genes`` per perturbation.
    curves : pandas.DataFrame
        The dose-response curves of the genes in :attr:`genes`, one row per
        (perturbation, gene, bin): ``condition``, ``perturbation``, ``gene``,
        ``bin``, ``level`` (the bin's mean T), ``observed`` and ``predicted``
        change, ``observed_se`` (standard error of the observed bin mean).
        What :func:`causalcell.plot.dose_response` draws.
    perturbations : pandas.DataFrame
        One row per perturbation: ``n_bins``, median ``pearson_delta`` over
        its bins and median ceiling (an undefined correlation counts as no
        skill, 0, as in :func:`~causalcell.evaluate.compare`), median
        ``shape_pearson``,
        ``span_ratio`` and ``curve_error`` over its responding genes,
        ``n_responding_genes``, ``n_escaper_bins`` and
        ``n_escaper_bins_near_control``.
    """

    bins: pd.DataFrame
    genes: pd.DataFrame
    curves: pd.DataFrame
    perturbations: pd.DataFrame

    def __repr__(self) -> str:
        return (f"DoseResponseScores({len(self.bins)} bins, "
                f"{len(self.perturbations)} perturbations)")

    def per_gene(self) -> pd.DataFrame:
        """Shape of the response per gene, over the perturbations it responds to:
        ``n_perturbations``, median ``shape_pearson``, ``span_ratio`` and
        ``curve_error``."""
        if self.genes.empty:
            return pd.DataFrame(columns=["gene", "n_perturbations", "shape_pearson",
                                         "span_ratio", "curve_error"])
        grouped = self.genes.groupby("gene", sort=True)
        return pd.DataFrame({
            "n_perturbations": grouped.size(),
            "shape_pearson": grouped["shape_pearson"].median(),
            "span_ratio": grouped["span_ratio"].median(),
            "curve_error": grouped["curve_error"].median(),
        }).reset_index()


@fill_doc(exclude=EXCLUDE_DOC)
def score_dose_response(
    predicted: AnnData,
    cells: AnnData,
    bins: DoseBins,
    *,
    exclude: str = "targeted",
    n_splits: int = 5,
    top_genes: int = 20,
    random_state: int | np.random.Generator | None = 0,
    layer: str | None = None,
) -> DoseResponseScores:
    """Score predictions of every dose bin against that bin's observed mean.

    Parameters
    ----------
    predicted
        One predicted profile per bin, obs indexed by the bin keys of
        ``bins.request()`` (any order; e.g. ``model.predict(bins.request())``).
        Its genes must include the observed genes (matched by name).
    cells
        The cells the bins were made from (``dose_bins(cells)``), controls
        included.
    bins
        The bins.
    exclude
        ``"targeted"`` (default) or ``"none"``.
        {exclude}
    n_splits
        Random half splits of each bin's cells for its replicate level.
    top_genes
        Responding genes per perturbation in the shape table.
    random_state
        Seed of the half splits.
    layer
        Layer of ``cells`` holding the expression (``None``: ``X``).

    Returns
    -------
    DoseResponseScores

    Raises
    ------
    DataContractError
        A bin without prediction, predicted genes missing observed genes,
        non-finite predictions, ``bins`` not made from these cells.
    ParameterError
        Invalid ``exclude``, ``n_splits`` or ``top_genes``.
    """
    exclude = exclude_rule("score_dose_response", exclude)
    for name, value in (("n_splits", n_splits), ("top_genes", top_genes)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ParameterError(f"{name}={value!r} must be a positive integer.")
    if not isinstance(bins, DoseBins):
        raise ParameterError(f"bins must be the DoseBins of dose_bins(cells), got "
                             f"{type(bins).__name__}.")
    if not isinstance(cells, AnnData):
        raise DataContractError(f"score_dose_response() takes cells as an AnnData (the cells "
                                f"given to dose_bins()), got {type(cells).__name__}.")
    if len(bins.cell_bin) != cells.n_obs:
        raise DataContractError(
            f"bins were made from {len(bins.cell_bin)} cells but cells has {cells.n_obs}: "
            f"pass the cells given to dose_bins()."
        )
    if not isinstance(predicted, AnnData):
        raise DataContractError(f"predicted must be an AnnData (e.g. model.predict(bins."
                                f"request())), got {type(predicted).__name__}.")
    genes = cells.var_names.astype(str)
    P = _predicted_rows(predicted, bins, genes)
    iv = Interventions.from_adata(cells, warn_unmeasured=False)
    X = expression_matrix(cells, layer)
    n_bins_total = len(bins)
    codes = np.where(iv.is_control, n_bins_total, bins.cell_bin)
    moments = group_moments(X, codes, n_bins_total + 1, squares=True)
    mean, var = moments.mean_and_variance()
    control = mean[n_bins_total]
    observed = mean[:n_bins_total] - control
    change = P - control
    request = Interventions.from_obs(bins.request(), genes, warn_unmeasured=False)
    scale = float(np.max(np.abs(mean))) if mean.size else 0.0
    metrics = perturbation_metrics(change, observed, request.mask, exclude=exclude, top_k=(),
                                   scale=scale)
    keep = np.ones(change.shape, dtype=bool)
    if exclude == "targeted":
        keep &= ~request.mask.toarray()
    n_keep = np.maximum(keep.sum(axis=1), 1)
    count = bins.table["n_cells"].to_numpy(dtype=np.float64)
    se2 = np.nan_to_num(var[:n_bins_total]) / count[:, None]
    table = bins.table.copy()
    table["n_genes_scored"] = metrics["n_genes_scored"].to_numpy()
    for m in BASE_METRICS:
        table[m] = metrics[m].to_numpy()
    ceiling = _bin_ceiling(X, bins, iv, control, request.mask, exclude, scale, n_splits,
                           random_state)
    for m in BASE_METRICS:
        table[f"ceiling_{m}"] = ceiling[m]
    table["predicted_rms_change"] = np.sqrt((np.where(keep, change, 0.0) ** 2).sum(1) / n_keep)
    table["observed_rms_change"] = np.sqrt((np.where(keep, observed, 0.0) ** 2).sum(1) / n_keep)
    table["noise_rms"] = np.sqrt(np.where(keep, se2, 0.0).sum(1) / n_keep)
    table["near_control"] = table["predicted_rms_change"] <= NEAR_CONTROL_SE * table["noise_rms"]
    shape = _shapes(table, change, observed, se2, keep, genes, int(top_genes))
    return DoseResponseScores(bins=table, genes=shape,
                              curves=_curves(table, shape, change, observed, se2, genes),
                              perturbations=_per_perturbation(table, shape))


def _curves(table: pd.DataFrame, shape: pd.DataFrame, change: np.ndarray,
            observed: np.ndarray, se2: np.ndarray, genes: pd.Index) -> pd.DataFrame:
    """Per-bin observed and predicted changes of the genes of the shape table."""
    columns = ["condition", PERTURBATION, "gene", "bin", "level", "observed", "predicted",
               "observed_se"]
    if shape.empty:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    pairs = shape[["condition", "gene"]]
    rows = table.reset_index(drop=True).reset_index(names="row")[
        ["row", "condition", PERTURBATION, "bin", "level"]]
    joined = pairs.merge(rows, on="condition", how="inner")
    r = joined["row"].to_numpy()
    g = genes.get_indexer(joined["gene"].to_numpy())
    joined["observed"] = observed[r, g]
    joined["predicted"] = change[r, g]
    joined["observed_se"] = np.sqrt(se2[r, g])
    return joined[columns].sort_values(["condition", "gene", "bin"]).reset_index(drop=True)


def _predicted_rows(predicted: AnnData, bins: DoseBins, genes: pd.Index) -> np.ndarray:
    """The predicted profile of every bin, in bin order, on the observed genes."""
    names = predicted.obs_names.astype(str)
    where = names.get_indexer(bins.table.index)
    if (where < 0).any():
        missing = bins.table.index[where < 0][:5].tolist()
        raise DataContractError(
            f"predicted has no row for {int((where < 0).sum())} dose bin(s), e.g. {missing}: "
            f"predict every row of bins.request() (its index names the bins)."
        )
    cols = predicted.var_names.astype(str).get_indexer(genes)
    if (cols < 0).any():
        missing = genes[cols < 0][:5].tolist()
        raise DataContractError(
            f"predicted lacks {int((cols < 0).sum())} observed gene(s), e.g. {missing}; predict "
            f"on the observed genes."
        )
    X = predicted.X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    values = np.asarray(X[where][:, cols], dtype=np.float64)
    if not np.isfinite(values).all():
        bad = bins.table.index[~np.isfinite(values).all(axis=1)][:5].tolist()
        raise DataContractError(f"predicted has NaN or infinite values for bins {bad}.")
    return values


def _bin_ceiling(X, bins: DoseBins, iv: Interventions, control: np.ndarray, mask,
                 exclude: str, scale: float, n_splits: int,
                 random_state) -> dict[str, np.ndarray]:
    """Replicate level of every bin: half A's mean scored as a prediction of half B's."""
    rng = np.random.default_rng(random_state)
    n_total = len(bins)
    binned = np.flatnonzero(bins.cell_bin >= 0)
    codes = bins.cell_bin[binned]
    raw = {m: np.zeros(n_total) for m in BASE_METRICS}
    for _ in range(n_splits):
        in_a = halves(codes, rng)
        split = np.full(len(bins.cell_bin), -1, dtype=np.int64)
        split[binned] = codes * 2 + (~in_a).astype(np.int64)
        sums = group_moments(X, split, 2 * n_total)
        means = sums.sums / np.maximum(sums.count, 1)[:, None]
        a, b = means[0::2] - control, means[1::2] - control
        scores = perturbation_metrics(a, b, mask, exclude=exclude, top_k=(), scale=scale)
        for m in BASE_METRICS:
            raw[m] += scores[m].to_numpy() / n_splits
    n = bins.table["n_cells"].to_numpy(dtype=np.float64)
    n1 = np.floor(n / 2)
    return {m: half_size_corrected(raw[m], m, n1, n - n1) for m in BASE_METRICS}


def _shapes(table: pd.DataFrame, change: np.ndarray, observed: np.ndarray, se2: np.ndarray,
            keep: np.ndarray, genes: pd.Index, top_genes: int) -> pd.DataFrame:
    """Per perturbation with >= 3 bins, the shape of its responding genes' curves."""
    eligible = table["n_bins"].to_numpy() >= 3
    columns = ["condition", "perturbation", "perturbation_type", "gene", "observed_span",
               "predicted_span", "span_ratio", "shape_pearson", "curve_error", "rank"]
    if not eligible.any():
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    cond = table["condition"].to_numpy()
    rows = np.flatnonzero(eligible)
    conditions, first = np.unique(cond[rows], return_index=True)
    width = int(table["n_bins"].to_numpy()[rows].max())
    m, p = len(conditions), change.shape[1]
    which = np.searchsorted(conditions, cond[rows])
    position = table["bin"].to_numpy()[rows]
    pred = np.full((m, width, p), np.nan)
    obs = np.full((m, width, p), np.nan)
    var = np.full((m, width, p), np.nan)
    pred[which, position] = change[rows]
    obs[which, position] = observed[rows]
    var[which, position] = se2[rows]
    scored = np.ones((m, p), dtype=bool)
    np.logical_and.at(scored, which, keep[rows])
    last = table["n_bins"].to_numpy()[rows][first] - 1  # highest-T bin of each
    obs_span = obs[:, 0] - obs[np.arange(m), last]
    pred_span = pred[:, 0] - pred[np.arange(m), last]
    span_se = np.sqrt(var[:, 0] + var[np.arange(m), last])
    responds = scored & (np.abs(obs_span) > RESPONSE_SE * span_se)
    with np.errstate(invalid="ignore", divide="ignore"):
        po = obs - np.nanmean(obs, axis=1, keepdims=True)
        pp = pred - np.nanmean(pred, axis=1, keepdims=True)
        r = np.nansum(po * pp, axis=1) / np.sqrt(np.nansum(po**2, axis=1)
                                                 * np.nansum(pp**2, axis=1))
        rmse = np.sqrt(np.nanmean((pred - obs) ** 2, axis=1))
    r = np.where(np.isfinite(r), np.clip(r, -1.0, 1.0), np.nan)
    k = min(top_genes, p)
    magnitude = np.where(responds, np.abs(obs_span), -np.inf)
    top = np.argsort(-magnitude, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(responds, top, axis=1)
    ii = np.repeat(np.arange(m), k).reshape(m, k)
    o = obs_span[ii, top]
    q = pred_span[ii, top]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = q / o
        error = rmse[ii, top] / np.abs(o)
    info = table.iloc[rows[first]]
    out = pd.DataFrame({
        "condition": np.repeat(conditions, k),
        "perturbation": np.repeat(info[PERTURBATION].to_numpy(), k),
        "perturbation_type": np.repeat(info[PERTURBATION_TYPE].to_numpy(), k),
        "gene": np.asarray(genes)[top].ravel(),
        "observed_span": o.ravel(),
        "predicted_span": q.ravel(),
        "span_ratio": ratio.ravel(),
        "shape_pearson": r[ii, top].ravel(),
        "curve_error": error.ravel(),
        "rank": np.tile(np.arange(1, k + 1), m),
    })
    return out[valid.ravel()].reset_index(drop=True)


def _per_perturbation(table: pd.DataFrame, shape: pd.DataFrame) -> pd.DataFrame:
    grouped = table.groupby("condition", sort=False)
    out = pd.DataFrame({
        PERTURBATION: grouped[PERTURBATION].first(),
        PERTURBATION_TYPE: grouped[PERTURBATION_TYPE].first(),
        "n_bins": grouped.size(),
        # An undefined correlation counts as no skill (as in compare()).
        "pearson_delta": table["pearson_delta"].fillna(no_skill("pearson_delta"))
        .groupby(table["condition"], sort=False).median(),
        "ceiling_pearson_delta": table["ceiling_pearson_delta"]
        .fillna(no_skill("pearson_delta")).groupby(table["condition"], sort=False).median(),
        "n_escaper_bins": grouped["escaper"].sum().astype(np.int64),
        "n_escaper_bins_near_control": (table["escaper"] & table["near_control"])
        .groupby(table["condition"], sort=False).sum().astype(np.int64),
    })
    if not shape.empty:
        s = shape.groupby("condition", sort=False)
        shape_skill = shape["shape_pearson"].fillna(no_skill("pearson_delta"))
        by_condition = pd.DataFrame({"n_responding_genes": s.size(),
                                     "shape_pearson": shape_skill.groupby(
                                         shape["condition"], sort=False).median(),
                                     "span_ratio": s["span_ratio"].median(),
                                     "curve_error": s["curve_error"].median()})
        out = out.join(by_condition)
        out["n_responding_genes"] = out["n_responding_genes"].fillna(0).astype(np.int64)
    else:
        out["n_responding_genes"] = 0
        for c in ("shape_pearson", "span_ratio", "curve_error"):
            out[c] = np.nan
    out.index.name = "condition"
    return out.reset_index()
