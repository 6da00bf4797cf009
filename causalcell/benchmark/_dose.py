"""P(X | T = t) as a curve: predict a grid of T, and cross-validate per level of T.

Models of P(X | T) take the level T of the targeted gene as an input, so they
predict a whole dose-response curve, not one profile per guide.
:func:`predict_dose_response` asks a fitted model for a grid of T and returns
a tidy table; :func:`cross_validate_dose_response` fits models without each
perturbation (the fold loop of :func:`~causalcell.benchmark.cross_predict`)
and scores their predictions of that perturbation's dose bins
(:func:`causalcell.evaluate.dose_bins`,
:func:`causalcell.evaluate.score_dose_response`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell._validation import check_level_grid, is_int
from causalcell.benchmark._cross_validate import Networks, cross_predict
from causalcell.data import LEVEL, Interventions
from causalcell.data._schema import format_levels
from causalcell.data.contract import (
    COMBINATION_SEPARATOR,
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    expression_matrix,
    split_label,
)
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate import (
    DoseBins,
    DoseResponseScores,
    dose_bins,
    no_skill,
    score_dose_response,
)

__all__ = ["MAX_LEVEL_FACTOR", "DoseResponse", "cross_validate_dose_response",
           "predict_dose_response"]

#: A requested level T may be at most this multiple of the largest level of the
#: targeted gene observed in the reference data: further out, a curve is pure
#: extrapolation.
MAX_LEVEL_FACTOR = 2.0
_DOSE_KINDS = ("knockdown", "overexpression")


def _observed_max(adata: AnnData, genes: list[str], layer: str | None) -> np.ndarray:
    """The largest value of each gene in ``adata`` (any sample)."""
    if not isinstance(adata, AnnData):
        raise DataContractError(
            f"predict_dose_response(): adata must be an AnnData (the data whose observed range "
            f"of T bounds the grid), got {type(adata).__name__}."
        )
    idx = adata.var_names.astype(str).get_indexer(genes)
    if (idx < 0).any():
        missing = [g for g, i in zip(genes, idx, strict=True) if i < 0]
        raise DataContractError(
            f"predict_dose_response(): the targeted gene(s) {missing} are not measured in "
            f"adata, so there is no observed range to place T in; pass data measuring them."
        )
    X = expression_matrix(adata, layer)
    column = X[:, idx]
    top = column.max(axis=0)
    top = top.toarray() if sp.issparse(top) else np.asarray(top)
    return np.asarray(top, dtype=np.float64).ravel()


def predict_dose_response(
    model: Any,
    adata: AnnData,
    perturbation: str,
    levels: Sequence[float] | np.ndarray | None = None,
    *,
    kind: str = "knockdown",
    n_levels: int = 11,
    layer: str | None = None,
) -> pd.DataFrame:
    """Predict the response to a perturbation at a grid of levels T.

    Parameters
    ----------
    model
        A fitted model of P(X | T) (``predict(request)``), e.g.
        :class:`~causalcell.models.ConditionalGRNRegressor`.
    adata
        Reference data measuring the targeted gene(s) (e.g. the training
        cells): the observed range of T comes from it.
    perturbation
        Label of the targeted gene(s): ``"TF01"`` or ``"TF01,TF03"``.
    levels
        Levels T (log-normalized scale): shape ``(n,)`` for one target,
        ``(n, k)`` for k targets in the label's order; each in ``[0,
        MAX_LEVEL_FACTOR * (largest observed level of that gene)]``.
        Default: ``n_levels`` levels from 0 to the largest observed level
        (the same grid for every target).
    kind
        ``"knockdown"`` or ``"overexpression"`` (a knockout is T = 0 by
        rule: it has no curve).
    n_levels
        Size of the default grid (>= 2).
    layer
        Layer of ``adata`` holding the expression (``None``: ``X``).

    Returns
    -------
    pandas.DataFrame
        One row per level and gene: ``perturbation``, ``perturbation_type``,
        ``level`` (T; for combinations one column ``level_<gene>`` per
        target), ``gene``, ``predicted`` and ``change`` (predicted minus the
        model's prediction for a control).

    Raises
    ------
    ParameterError
        A kind without a dose, a grid of the wrong shape, not finite, or
        outside ``[0, MAX_LEVEL_FACTOR * observed maximum]`` (the message
        gives the range).
    DataContractError
        A targeted gene not measured in ``adata``.

    Examples
    --------
    >>> import causalcell as cc
    >>> from causalcell.models import ConditionalGRNRegressor
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> model = ConditionalGRNRegressor().fit(sim.adata, sim.network)
    >>> curve = predict_dose_response(model, sim.adata, "TF01", n_levels=3)
    >>> curve["level"].nunique(), len(curve)
    (3, 90)
    """
    if kind not in _DOSE_KINDS:
        raise ParameterError(
            f"kind={kind!r} has no dose-response: use 'knockdown' or 'overexpression' (a "
            f"knockout holds its target at T = 0 by rule)."
        )
    if not isinstance(perturbation, str) or not split_label(perturbation):
        raise ParameterError(f"perturbation must be a label such as 'TF01' or 'TF01,TF03'; "
                             f"got {perturbation!r}.")
    genes = split_label(perturbation)
    k = len(genes)
    top = _observed_max(adata, genes, layer)
    if levels is None:
        if not is_int(n_levels) or n_levels < 2:
            raise ParameterError(f"n_levels must be an integer >= 2; got {n_levels!r}.")
        grid = np.linspace(0.0, 1.0, int(n_levels))[:, None] * top[None, :]
    else:
        limit = MAX_LEVEL_FACTOR * top
        why = "".join(
            f"; {g}: at most {MAX_LEVEL_FACTOR:g} x the largest level of {g} observed in adata "
            f"({t:.4g})" for g, t in zip(genes, top, strict=True)
        ) + " (beyond the observed range a model only extrapolates)"
        grid = check_level_grid(levels, k, perturbation, "predict_dose_response()", limit, why)
    text = [format_levels(row) for row in grid]
    label = COMBINATION_SEPARATOR.join(genes)
    request = pd.DataFrame(
        {PERTURBATION: [label] * len(grid) + ["control"],
         IS_CONTROL: [False] * len(grid) + [True],
         PERTURBATION_TYPE: [kind] * len(grid) + ["control"],
         LEVEL: [*text, "nan"]},
        index=pd.Index([f"{label}@{t}" for t in text] + ["control"]),
    )
    predicted = model.predict(request)
    X = predicted.X
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    values, control = X[:-1], X[-1]
    out_genes = np.asarray(predicted.var_names.astype(str), dtype=object)
    n, p = values.shape
    out = {PERTURBATION: label, PERTURBATION_TYPE: kind}
    if k == 1:
        out["level"] = np.repeat(grid[:, 0], p)
    else:
        for j, g in enumerate(genes):
            out[f"level_{g}"] = np.repeat(grid[:, j], p)
    out.update({"gene": np.tile(out_genes, n), "predicted": values.ravel(),
                "change": (values - control).ravel()})
    return pd.DataFrame(out)


@dataclass(frozen=True, repr=False)
class DoseResponse:
    """The result of :func:`cross_validate_dose_response`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model: ``n_bins``, ``n_perturbations``; over the bins
        that are not escapers, the median ``pearson_delta`` and its median
        replicate level ``ceiling_pearson_delta``, median ``mse`` and
        ``ceiling_mse``; over the responding genes of perturbations with >= 3
        bins (``n_responding``), the median ``shape_pearson``, ``span_ratio``
        and ``curve_error``. An undefined correlation (a constant prediction
        or observation) counts as no skill, 0, as in
        :func:`causalcell.evaluate.compare`. ``n_escaper_bins`` and
        ``n_escaper_bins_near_control`` (escapers are judged by whether they
        are predicted within noise of control, not by a correlation with
        noise).
    scores : dict of str to DoseResponseScores
        Each model's per-bin, per-gene and per-perturbation scores.
    predictions : dict of str to AnnData
        Each model's prediction of every bin (by the model fitted without
        that perturbation).
    bins : DoseBins
        The scored bins.
    observed : AnnData
        The cells the bins were made from.
    """

    table: pd.DataFrame
    scores: dict[str, DoseResponseScores]
    predictions: dict[str, AnnData]
    bins: DoseBins
    observed: AnnData

    def __repr__(self) -> str:
        return (f"DoseResponse({len(self.scores)} models, {len(self.bins)} bins of "
                f"{self.bins.table['condition'].nunique()} perturbations)")

    def verdict(self) -> list[str]:
        """Sentences computed from :attr:`table` (one per model, then the best shape)."""
        lines = []
        for name, row in self.table.iterrows():
            lines.append(
                f"{name}: per knocked-down dose bin, median pearson_delta "
                f"{row['pearson_delta']:.3f} (replicate level "
                f"{row['ceiling_pearson_delta']:.3f}) over {int(row['n_bins'])} bins of "
                f"{int(row['n_perturbations'])} perturbations; across the bins, on "
                f"{int(row['n_responding'])} responding (perturbation, gene) pairs: median "
                f"shape Pearson {row['shape_pearson']:.3f}, amplitude "
                f"{row['span_ratio']:.2f} x observed, curve error {row['curve_error']:.2f} of "
                f"the observed span; "
                f"{int(row['n_escaper_bins_near_control'])} of {int(row['n_escaper_bins'])} "
                f"escaper bins predicted within noise of control."
            )
        errors = self.table["curve_error"].dropna()
        if len(errors) > 1:
            best = errors.idxmin()
            lines.append(f"Closest predicted dose-response curves: {best} (curve error "
                         f"{errors[best]:.2f} against {errors.drop(best).min():.2f} for the "
                         f"next model).")
        return lines


def _median(values: pd.Series, skill: float | None = None) -> float:
    """Median over the bins or genes; an undefined value counts as ``skill`` (the
    no-skill value of a correlation, :func:`causalcell.evaluate.no_skill`) when
    given, else it is left out. NaN when nothing is left."""
    values = values.fillna(skill) if skill is not None else values.dropna()
    return float(values.median()) if len(values) else np.nan


def cross_validate_dose_response(
    models: Mapping[str, Any],
    adata: AnnData,
    network: Networks = None,
    *,
    folds: int = 5,
    n_bins: int = 4,
    min_cells: int = 20,
    top_genes: int = 20,
    n_splits: int = 5,
    random_state: int | None = 0,
    layer: str | None = None,
    verbose: bool = True,
) -> DoseResponse:
    """Cross-validate models per level of T: every dose bin predicted by models
    fitted without its perturbation, and scored against its own mean.

    The cells of each perturbation are binned by their observed T
    (:func:`causalcell.evaluate.dose_bins`); the perturbations are dealt into
    folds as in :func:`~causalcell.benchmark.cross_validate`; each model,
    fitted on the other folds, predicts every bin of the held-out
    perturbations at the bin's mean T; each bin is scored against its own
    observed mean with the usual exclusion of the targeted genes, next to
    its replicate level (:func:`causalcell.evaluate.score_dose_response`).

    Parameters
    ----------
    models, adata, network, folds, random_state, verbose
        As :func:`~causalcell.benchmark.cross_validate` (``adata``: cells
        with controls).
    n_bins, min_cells
        As :func:`causalcell.evaluate.dose_bins`.
    top_genes, n_splits
        As :func:`causalcell.evaluate.score_dose_response`.
    layer
        Layer holding the expression the bins and scores read.

    Returns
    -------
    DoseResponse

    Raises
    ------
    ParameterError
        As :func:`~causalcell.benchmark.cross_validate` and
        :func:`~causalcell.evaluate.dose_bins` (e.g. too few cells per bin).
    DataContractError
        As :func:`~causalcell.evaluate.dose_bins`.
    """
    bins = dose_bins(adata, n_bins=n_bins, min_cells=min_cells, layer=layer)

    def request(cells: AnnData) -> pd.DataFrame:
        conditions = np.unique(Interventions.from_adata(cells, warn_unmeasured=False)
                               .condition_of())
        return bins.subset(conditions).request()

    predicted = cross_predict(models, adata, network, folds=folds, random_state=random_state,
                              verbose=verbose, request=request)
    first = next(iter(predicted.predictions.values()))
    scored = bins.subset(np.unique(bins.table.loc[first.obs_names, "condition"]))
    scores = {name: score_dose_response(pred, adata, scored, n_splits=n_splits,
                                        top_genes=top_genes, random_state=random_state,
                                        layer=layer)
              for name, pred in predicted.predictions.items()}
    rows = {}
    for name, s in scores.items():
        b, pert = s.bins, s.perturbations
        knocked = b[~b["escaper"].to_numpy(dtype=bool)]
        rows[name] = {
            "n_bins": len(knocked),
            "n_perturbations": len(pert),
            "pearson_delta": _median(knocked["pearson_delta"], no_skill("pearson_delta")),
            "ceiling_pearson_delta": _median(knocked["ceiling_pearson_delta"],
                                             no_skill("pearson_delta")),
            "mse": _median(knocked["mse"]),
            "ceiling_mse": _median(knocked["ceiling_mse"]),
            "n_responding": len(s.genes),
            "shape_pearson": _median(s.genes["shape_pearson"], no_skill("pearson_delta")),
            "span_ratio": _median(s.genes["span_ratio"]),
            "curve_error": _median(s.genes["curve_error"]),
            "n_escaper_bins": int(b["escaper"].sum()),
            "n_escaper_bins_near_control": int((b["escaper"] & b["near_control"]).sum()),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return DoseResponse(table=table, scores=scores, predictions=predicted.predictions,
                        bins=scored, observed=adata)
