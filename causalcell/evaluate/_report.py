"""Evaluation reports: every metric, under both exclusion rules, in one tidy table.

:func:`evaluate` scores one predictor, :func:`summarize` averages over
perturbations, :func:`compare` ranks several predictors side by side under
each rule, so that a reversal (a model that wins only while the targeted
genes are scored) is visible at a glance.

The two rules (the ``exclude`` vocabulary of :mod:`causalcell.evaluate._exclude`,
the same words for the metrics and the retrieval):

- ``"targeted"``: each perturbation is scored on the genes it does not
  target; retrieval compares query i with candidate j without the genes
  targeted in i or j;
- ``"none"``: every gene is scored (the numbers published evaluators
  report).

Every function takes an :class:`~causalcell.evaluate.Aligned` (made once by
:func:`~causalcell.evaluate.align`, the one owner of the alignment options)
or the predicted and observed AnnData with those options.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Unpack

import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell._validation import check_choice, check_fraction
from causalcell.data.contract import PERTURBATION, PERTURBATION_TYPE
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate._align import (
    ALIGN_DOC,
    Aligned,
    AlignOptions,
    ObservedCells,
    aligned_cells_input,
    is_pseudobulk,
)
from causalcell.evaluate._de import METHODS as DE_METHODS
from causalcell.evaluate._de import DEResult, differential_expression_of
from causalcell.evaluate._exclude import (
    EXCLUDE_COLUMN,
    EXCLUDE_DOC,
    METRIC_EXCLUDES,
    current_table,
    exclude_rules,
    fill_doc,
)
from causalcell.evaluate._metrics import (
    DEFAULT_TOP_K,
    check_top_k,
    higher_is_better,
    no_skill,
    perturbation_metrics,
)
from causalcell.evaluate._retrieval_table import retrieval_ranks
from causalcell.evaluate._uncertainty import (
    bootstrap_means,
    interval,
    resample_counts,
    sign_flip_pvalues,
)

__all__ = [
    "UNDEFINED",
    "check_de_method",
    "check_scoring",
    "compare",
    "evaluate",
    "observed_de",
    "score_aligned",
    "scored_values",
    "summarize",
]

_ID_COLUMNS = [PERTURBATION, PERTURBATION_TYPE, EXCLUDE_COLUMN, "n_genes_scored"]
UNDEFINED = ("zero", "skip")


def check_de_method(de_method: object) -> None:
    """ParameterError naming ``de_method`` unless it is a DE test or None."""
    if de_method is not None:
        check_choice("de_method", de_method, DE_METHODS)


def check_scoring(top_k: object, de_method: object, alpha: object) -> None:
    """The scoring options shared by :func:`evaluate`, :func:`compare` and
    :func:`~causalcell.evaluate.replicate_ceiling`, checked before any work
    (ParameterError naming the parameter)."""
    check_top_k(top_k)
    check_de_method(de_method)
    check_fraction("alpha", alpha, closed_right=True)


def observed_de(
    observed: AnnData | None, de: DEResult | None, de_method: str | None, layer: str | None,
    control_label: str | None, cells: ObservedCells | None = None,
) -> DEResult | None:
    """The DE result used to choose top-k genes, or None to rank by |observed change|.

    ``cells``: the pass over ``observed`` that aligned it (:func:`aligned_cells_input`),
    whose group moments the test merges instead of reading the cells again.
    """
    check_de_method(de_method)
    if de is not None:
        if not isinstance(de, DEResult):
            raise ParameterError(f"de must be a DEResult, got {type(de).__name__}.")
        return de
    if de_method is None:
        return None
    if observed is None:
        raise ParameterError(
            f"de_method={de_method!r} tests the observed cells, which an Aligned does not "
            f"hold: pass observed= (the cells it was aligned from), a precomputed de=, or "
            f"de_method=None to rank genes by |observed change|."
        )
    if is_pseudobulk(observed):
        return None
    if cells is not None and not cells.serves(observed, layer):
        cells = None
    return differential_expression_of(observed, method=de_method, layer=layer,
                                      control_label=control_label,
                                      cells=None if cells is None else cells.cells)


def cells_pass(de: DEResult | None, de_method: str | None) -> dict[str, bool]:
    """What the alignment's pass over the observed cells must keep for
    :func:`observed_de`: the pass itself when the cells will be tested (no ``de``
    given), and the sums of squares when the test is Welch's (``keep_cells``,
    ``squares``: options of :func:`~causalcell.evaluate._align.align_cells`)."""
    tests = de is None and de_method is not None
    return {"keep_cells": tests, "squares": tests and de_method == "t-test"}


def score_aligned(
    aligned: Aligned,
    de: DEResult | None,
    *,
    exclude: tuple[str, ...],
    top_k: Sequence[int],
    alpha: float,
    retrieval: bool,
    distance: str,
) -> pd.DataFrame:
    """The long table of :func:`evaluate` for aligned changes (see there)."""
    de_score = significant = None
    if de is not None:
        selected = de.select(aligned.perturbations, aligned.genes)
        de_score = np.abs(selected.score)
        significant = selected.significant(alpha)
    # Rounding errors of a change scale with the expression values it is the
    # difference of, not with the change.
    scale = float(np.abs(aligned.observed + aligned.reference).max()) if aligned.observed.size \
        else 0.0
    options = {"de_score": de_score, "significant": significant, "top_k": top_k, "scale": scale}
    frames = []
    for setting in exclude:
        wide = perturbation_metrics(aligned.predicted, aligned.observed, aligned.targets,
                                    exclude=setting, **options)
        # Where even the observed changes themselves get no value, the data
        # leave the metric undefined (for every model); elsewhere a NaN is
        # the prediction's doing.
        perfect = perturbation_metrics(aligned.observed, aligned.observed, aligned.targets,
                                       exclude=setting, **options)
        if retrieval and len(aligned) >= 2:
            ranks = retrieval_ranks(aligned, distance=distance, exclude=setting)
            wide["retrieval_rank"] = ranks["rank"].to_numpy()
            perfect["retrieval_rank"] = 0.0
        for frame in (wide, perfect):
            frame.insert(0, PERTURBATION, aligned.perturbations.to_numpy())
            frame.insert(1, PERTURBATION_TYPE, aligned.perturbation_type)
            frame.insert(2, EXCLUDE_COLUMN, setting)
        long = wide.melt(id_vars=_ID_COLUMNS, var_name="metric", value_name="value")
        long["scorable"] = perfect.melt(id_vars=_ID_COLUMNS)["value"].notna().to_numpy()
        frames.append(long)
    table = pd.concat(frames, ignore_index=True)
    table = table[[PERTURBATION, PERTURBATION_TYPE, EXCLUDE_COLUMN, "metric", "value",
                   "n_genes_scored", "scorable"]]
    table["value"] = table["value"].astype(np.float64)
    table.attrs.update({
        "reference": aligned.reference_kind,
        "de": de.method if de is not None else "absolute change",
        "alpha": alpha,
        "distance": distance,
        "n_perturbations": len(aligned),
        "unpredicted": list(aligned.unpredicted),
    })
    return table


@fill_doc(exclude=EXCLUDE_DOC, align=ALIGN_DOC)
def evaluate(
    predicted: AnnData | Aligned,
    observed: AnnData | None = None,
    *,
    exclude: str | Sequence[str] = METRIC_EXCLUDES,
    top_k: Sequence[int] = DEFAULT_TOP_K,
    de_method: str | None = "t-test",
    alpha: float = 0.05,
    de: DEResult | None = None,
    retrieval: bool = True,
    distance: str = "euclidean",
    **align_options: Unpack[AlignOptions],
) -> pd.DataFrame:
    """Score a prediction, per perturbation and metric, with and without the targeted genes.

    Parameters
    ----------
    predicted
        Predicted profiles, one row per perturbation (obs contract), or an
        :class:`~causalcell.evaluate.Aligned` (then ``observed`` is needed
        only to test DE).
    observed
        Observed cells (DE is computed from them) or pseudobulk profiles
        (top-k genes are then the largest ``|observed change|``).
    exclude
        ``"targeted"``, ``"none"`` or both (default; one block of rows each,
        labelled by the rule in the ``exclude`` column).
        {exclude}
    top_k
        Sizes of the top-k DE gene sets (see
        :func:`~causalcell.evaluate.perturbation_metrics`).
    de_method
        ``"t-test"`` (Welch), ``"wilcoxon"``, or None to rank genes by
        ``|observed change|`` instead of a test.
    alpha
        q-value threshold of the significant genes (``de_*_n_sig``).
    de
        A precomputed :class:`~causalcell.evaluate.DEResult` of the
        observed cells (reused by :func:`compare`).
    retrieval
        Add ``retrieval_rank`` (pairwise retrieval under the same rule);
        skipped when fewer than 2 perturbations are scored.
    distance
        Distance of the retrieval.
    {align}

    Returns
    -------
    pandas.DataFrame
        Long table: ``perturbation``, ``perturbation_type``,
        ``exclude``, ``metric``, ``value`` (NaN: undefined),
        ``n_genes_scored`` and ``scorable`` (False where the observed data
        leave the metric undefined for any prediction: no scored gene, no
        significant gene, fewer scored genes than k, a constant observed
        change; a NaN where ``scorable`` is True is the prediction's doing,
        e.g. a constant predicted change). ``attrs``
        records the reference, the DE method, ``alpha``, the distance and
        the observed perturbations without prediction.

    Raises
    ------
    DataContractError
        Any error of :func:`~causalcell.evaluate.align` (differing
        genes, duplicated perturbations, NaN predictions, an absent control
        label ...).
    ParameterError
        An unknown ``exclude``, ``de_method``, ``reference``, ``join`` or
        ``distance``; alignment options with an ``Aligned``; an ``Aligned``
        without ``observed`` when DE must be tested.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> table = evaluate(sim.truth, sim.adata, top_k=[5])
    >>> sorted(table["exclude"].unique())
    ['none', 'targeted']
    """
    settings = exclude_rules("evaluate", exclude)
    check_scoring(top_k, de_method, alpha)
    # The observed cells are read once: their group moments give the observed
    # profiles and, merged, the DE test's.
    aligned, cells = aligned_cells_input("evaluate", predicted, observed, align_options,
                                         **cells_pass(de, de_method))
    de = observed_de(observed, de, de_method, aligned.options.get("layer"),
                     aligned.options.get("control_label"), cells)
    del cells  # its moments (groups x genes, twice) are not needed to score
    return score_aligned(aligned, de, exclude=settings, top_k=top_k, alpha=alpha,
                         retrieval=retrieval, distance=distance)


def _check_undefined(undefined: str) -> str:
    if undefined not in UNDEFINED:
        raise ParameterError(f"undefined={undefined!r} is unknown; use 'zero' (an undefined "
                             f"correlation counts as no skill) or 'skip'.")
    return undefined


def scored_values(table: pd.DataFrame, undefined: str = "zero") -> tuple[pd.Series, pd.Series]:
    """The value each row of a long table contributes to a summary, and its NaN flag.

    With ``undefined="zero"`` a NaN counts as
    :func:`~causalcell.evaluate.no_skill` of its metric where that
    is defined (correlation-type metrics) and the row is ``scorable`` (the
    NaN is the prediction's doing, see :func:`evaluate`); every other NaN is
    not scored. Where a ``model`` column stacks several
    predictors, a perturbation that is not scored for one of them is not
    scored for any (per metric and exclusion rule): means are always taken
    over one set of perturbations.

    Returns
    -------
    (pandas.Series, pandas.Series)
        The scored values (NaN: left out) and whether the prediction left
        the metric undefined on that row (NaN although ``scorable``).
    """
    value = table["value"].astype(np.float64)
    missing = value.isna()
    if "scorable" in table.columns:
        missing &= table["scorable"].astype(bool)
    if undefined == "zero":
        fill = {m: no_skill(m) for m in table["metric"].unique()}
        fill_values = table["metric"].map(fill).astype(np.float64)
        if "scorable" in table.columns:
            fill_values = fill_values.where(table["scorable"].astype(bool))
        value = value.fillna(fill_values)
    keys = [c for c in (PERTURBATION, PERTURBATION_TYPE) if c in table.columns]
    if "model" in table.columns and keys:
        group = [table[c] for c in ("metric", EXCLUDE_COLUMN, *keys)]
        value = value.mask(value.isna().groupby(group, sort=False).transform("any"))
    return value, missing


def summarize(table: pd.DataFrame, *, undefined: str = "zero") -> pd.DataFrame:
    """Average a long table of :func:`evaluate` (or :func:`compare`) over perturbations.

    Parameters
    ----------
    table
        Columns ``exclude``, ``metric``, ``value`` (and ``model`` when
        several predictors are stacked, with ``perturbation`` and
        ``perturbation_type`` to match their rows).
    undefined
        ``"zero"`` (default): an undefined correlation-type value counts as
        no skill (:func:`~causalcell.evaluate.no_skill`: 0 for
        correlations, 0.5 for direction agreement), so that a model cannot
        raise its mean by predicting nothing where it has nothing to say;
        other undefined values (no scored gene, no significant gene) are left
        out. ``"skip"``: every undefined value is left out. Either way,
        stacked models are averaged over the same perturbations (those scored
        for all of them).

    Returns
    -------
    pandas.DataFrame
        One row per (model,) metric and exclusion rule, in the order they
        appear: ``mean``, ``median``, ``sd`` of the scored values, ``n``
        (perturbations scored), ``n_undefined`` (perturbations where this
        model's prediction left the metric undefined although the data
        define it: counted as no skill, or left out with ``"skip"``) and
        ``higher_is_better``.

    Raises
    ------
    ParameterError
        If a required column is missing or ``undefined`` is unknown.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"exclude": "none", "metric": "pearson_delta",
    ...                       "value": [0.5, float("nan"), 0.7]})
    >>> summarize(table)[["mean", "n", "n_undefined"]].round(2).to_dict("records")
    [{'mean': 0.4, 'n': 3, 'n_undefined': 1}]
    """
    table = current_table("summarize", table)
    required = {EXCLUDE_COLUMN, "metric", "value"}
    if not isinstance(table, pd.DataFrame) or not required <= set(table.columns):
        cols = list(table.columns) if isinstance(table, pd.DataFrame) else type(table).__name__
        raise ParameterError(
            f"summarize() takes the table of evaluate(); it needs the columns "
            f"{sorted(required)}, got {cols}."
        )
    _check_undefined(undefined)
    value, missing = scored_values(table, undefined)
    keys = (["model"] if "model" in table.columns else []) + ["metric", EXCLUDE_COLUMN]
    frame = table[keys].assign(value=value, undefined=missing)
    grouped = frame.groupby(keys, sort=False)
    out = grouped["value"].agg(mean="mean", median="median", sd="std", n="count")
    out["n_undefined"] = grouped["undefined"].sum()
    out = out.reset_index()
    out["n"] = out["n"].astype(np.int64)
    out["n_undefined"] = out["n_undefined"].astype(np.int64)
    out["higher_is_better"] = [higher_is_better(m) for m in out["metric"]]
    return out


@fill_doc(align=ALIGN_DOC)
def compare(
    predictions: Mapping[str, AnnData | Aligned],
    observed: AnnData | None = None,
    *,
    baseline: str | None = "mean",
    ceiling: pd.DataFrame | None = None,
    undefined: str = "zero",
    n_resamples: int = 2000,
    confidence_level: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
    details: bool = False,
    exclude: str | Sequence[str] = METRIC_EXCLUDES,
    top_k: Sequence[int] = DEFAULT_TOP_K,
    de_method: str | None = "t-test",
    alpha: float = 0.05,
    de: DEResult | None = None,
    retrieval: bool = True,
    distance: str = "euclidean",
    **align_options: Unpack[AlignOptions],
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Rank several predictors on every metric, with intervals, under each exclusion rule.

    Every model is scored on the same perturbations; each mean carries a
    bootstrap interval over perturbations, each model is compared with the
    ``baseline`` perturbation by perturbation (paired), and, given the
    data's own :func:`~causalcell.evaluate.replicate_ceiling`, every score is
    placed on a calibrated scale: 0 = the baseline, 1 = as good as a
    replicate of the data.

    Parameters
    ----------
    predictions
        ``{"name": predicted AnnData, ...}``, or ``{"name": Aligned, ...}``
        (:func:`~causalcell.evaluate.align` with the same options for
        every model); every predictor must cover the same observed
        perturbations (a mean over different sets is not a comparison).
    observed
        The observed data, shared by all predictors; DE is computed once
        (with ``Aligned`` predictions only needed to test DE).
    baseline
        The name of the prediction every model is compared with (paired
        differences, p-values, calibration): by default ``"mean"``, e.g.
        :class:`causalcell.models.MeanBaseline` (the mean perturbation
        profile of the training data, a predictor that knows nothing about
        the perturbation). ``None``: no comparison columns.
    ceiling
        The table of :func:`~causalcell.evaluate.replicate_ceiling` on the
        observed cells (computed with the same ``exclude``, ``top_k``,
        ``de_method``, ``retrieval`` and ``distance``). Adds the calibrated
        scores; needs ``baseline``.
    undefined
        How an undefined value counts, see :func:`summarize`: ``"zero"``
        (default; an undefined correlation is no skill) or ``"skip"``. Either
        way every model is averaged over the same perturbations.
    n_resamples
        Bootstrap resamples of the perturbations (shared by every model and
        metric), and random sign patterns of the paired test.
    confidence_level
        Of the intervals, in (0, 1).
    random_state
        Seed (or numpy Generator) of the resampling.
    details
        Also return the long per-perturbation table of all models (the
        table of :func:`evaluate` with a ``model`` column and a ``scored``
        column: the value counted in the means, NaN where left out).
    exclude, top_k, de_method, alpha, de, retrieval, distance
        As in :func:`evaluate`.
    {align}

    Returns
    -------
    pandas.DataFrame
        One row per (metric, model): ``metric``, ``model``,
        ``higher_is_better``, then for each exclusion rule ``c``
        (``"targeted"``, ``"none"``):

        - ``value [c]``: mean over the scored perturbations;
        - ``ci_low [c]``, ``ci_high [c]``: its percentile bootstrap interval
          at ``confidence_level``;
        - ``n [c]``: perturbations scored (the same for every model of a
          metric), ``n_undefined [c]``: perturbations where this model's
          prediction left the metric undefined although the data define it
          (counted as no skill with ``undefined="zero"``, left out for
          every model with ``"skip"``);
        - ``rank [c]``: 1 = best, ties share the lower rank;
        - with a ``baseline``: ``diff [c]`` = value minus the baseline's
          (not oriented: negative is better for errors), its interval
          ``diff_ci_low [c]``, ``diff_ci_high [c]``, and ``p_value [c]`` of
          the paired sign-flip test of that difference (two-sided);
        - with a ``ceiling``: ``calibrated [c]`` =
          (value - baseline) / (ceiling - baseline), oriented so that higher
          is better for every metric (0: no better than the baseline, 1: as
          good as a replicate of the data, above 1 possible), its interval
          ``calibrated_ci_low [c]``, ``calibrated_ci_high [c]``, and
          ``n_calibrated [c]`` (perturbations with a ceiling). NaN when the
          ceiling does not beat the baseline; the interval is NaN when it
          fails to in more than half the tail share of the resamples.

        Then ``rank_changed`` (True on every row of a metric whose ranking
        differs between the rules, ties included) and ``reversal`` (True
        for a model whose order against another model is significantly one
        way under one rule and significantly the other way under
        another: both paired difference intervals exclude 0). ``attrs``
        records the baseline, the undefined rule, the resampling and the
        settings of :func:`evaluate`. With ``details=True``, the pair (that
        table, the long table).

    Raises
    ------
    ParameterError
        No predictor, a name that is not a non-empty string, a ``baseline``
        that is not a prediction, a ``ceiling`` without a baseline or that is
        not a ceiling table, a bad ``undefined``, ``n_resamples`` or
        ``confidence_level``, and every parameter error of :func:`evaluate`.
    DataContractError
        Predictors covering different perturbations, a ceiling covering none
        of them, and every error of :func:`evaluate`.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> table = compare({"expected": sim.expected}, sim.adata, baseline=None, top_k=[5])
    >>> table.columns[2:5].tolist()
    ['higher_is_better', 'value [targeted]', 'ci_low [targeted]']
    """
    if not isinstance(predictions, Mapping) or not predictions:
        raise ParameterError("compare() takes a non-empty mapping {'name': predicted AnnData}.")
    for name in predictions:
        if not isinstance(name, str) or not name:
            raise ParameterError(f"Model names must be non-empty strings, got {name!r}.")
    settings = exclude_rules("compare", exclude)
    check_scoring(top_k, de_method, alpha)
    _check_undefined(undefined)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) \
            or n_resamples < 1:
        raise ParameterError(f"n_resamples={n_resamples!r} must be a positive integer "
                             f"(e.g. 2000).")
    if not (isinstance(confidence_level, numbers.Real) and 0 < confidence_level < 1):
        raise ParameterError(f"confidence_level={confidence_level!r} must be in (0, 1), "
                             f"e.g. 0.95.")
    if baseline is not None and baseline not in predictions:
        raise ParameterError(
            f"baseline={baseline!r} is not among the predictions {list(predictions)}. Add the "
            f"know-nothing reference every score is judged against (e.g. "
            f"causalcell.models.MeanBaseline as 'mean'), name another prediction, or pass "
            f"baseline=None for no comparison."
        )
    if ceiling is not None:
        if baseline is None:
            raise ParameterError("A ceiling calibrates scores between the baseline (0) and "
                                 "the ceiling (1): give baseline= too.")
        ceiling = current_table("compare", ceiling)
        _check_ceiling(ceiling)
    # One pass over the observed cells serves every model's alignment and the DE test.
    aligned, cells = {}, None
    for name, pred in predictions.items():
        aligned[name], kept = aligned_cells_input(
            "compare", pred, observed, align_options,
            **{**cells_pass(de, de_method), "keep_cells": True}, reuse=cells)
        cells = cells if kept is None else kept
    first_name, first = next(iter(aligned.items()))
    reference_set = set(first.perturbations)
    for name, item in aligned.items():
        if dict(item.options) != dict(first.options):
            raise ParameterError(
                f"Models {first_name!r} and {name!r} were aligned with different options "
                f"({dict(first.options)} and {dict(item.options)}); align every prediction "
                f"with the same options, so that they are scored against the same reference."
            )
        if set(item.perturbations) != reference_set:
            only_here = sorted(set(item.perturbations) - reference_set)
            only_there = sorted(reference_set - set(item.perturbations))
            raise DataContractError(
                f"Models {first_name!r} and {name!r} cover different perturbations "
                f"({name!r} only: {only_here[:10]}; {first_name!r} only: {only_there[:10]}). "
                f"Compare predictors on the same perturbations: subset the predictions to "
                f"the common ones."
            )
    de = observed_de(observed, de, de_method, first.options.get("layer"),
                     first.options.get("control_label"), cells)
    del cells  # its moments (groups x genes, twice) are not needed to score
    frames = []
    for name, item in aligned.items():
        table = score_aligned(item, de, exclude=settings, top_k=top_k, alpha=alpha,
                              retrieval=retrieval, distance=distance)
        table.insert(0, "model", name)
        frames.append(table)
    long = pd.concat(frames, ignore_index=True)
    scored, missing = scored_values(long, undefined)
    cube = _Cube(long, scored, missing, models=list(predictions),
                 conditionings=list(settings))
    rng = np.random.default_rng(random_state)
    table = cube.table(baseline=baseline, ceiling=ceiling, n_resamples=int(n_resamples),
                       confidence_level=float(confidence_level), rng=rng)
    table.attrs.update({
        "baseline": baseline,
        "undefined": undefined,
        "n_resamples": int(n_resamples),
        "confidence_level": float(confidence_level),
        "random_state": random_state if not isinstance(random_state, np.random.Generator)
        else None,
        "ceiling": ceiling is not None,
        **{k: v for k, v in long.attrs.items() if k != "unpredicted"},
        "n_perturbations": len(first),
    })
    if details:
        long["scored"] = scored.to_numpy()
        return table, long
    return table


_CEILING_COLUMNS = (PERTURBATION, PERTURBATION_TYPE, EXCLUDE_COLUMN, "metric", "value")


def _check_ceiling(ceiling: object) -> None:
    if not isinstance(ceiling, pd.DataFrame) or not set(_CEILING_COLUMNS) <= set(
            ceiling.columns):
        got = list(ceiling.columns) if isinstance(ceiling, pd.DataFrame) else \
            type(ceiling).__name__
        raise ParameterError(
            f"ceiling must be the table of causalcell.evaluate.replicate_ceiling(observed "
            f"cells) (columns {list(_CEILING_COLUMNS)}), got {got}."
        )


class _Cube:
    """Scored values as a (perturbation, conditioning, metric, model) array, and
    everything :func:`compare` derives from it."""

    def __init__(self, long: pd.DataFrame, scored: pd.Series, missing: pd.Series, *,
                 models: list[str], conditionings: list[str]) -> None:
        self.models = models
        self.conditionings = conditionings
        self.metrics = list(dict.fromkeys(long["metric"]))
        self.keys = pd.MultiIndex.from_frame(
            long.loc[long["model"] == models[0], [PERTURBATION, PERTURBATION_TYPE]]
        ).unique()
        columns = pd.MultiIndex.from_product([conditionings, self.metrics, models])
        index = [PERTURBATION, PERTURBATION_TYPE]
        shape = (len(self.keys), len(conditionings), len(self.metrics), len(models))
        frame = long[[*index, EXCLUDE_COLUMN, "metric", "model"]].assign(
            scored=scored.to_numpy(), missing=missing.to_numpy(dtype=np.float64))
        wide = frame.pivot_table(index=index, columns=[EXCLUDE_COLUMN, "metric", "model"],
                                 values=["scored", "missing"], aggfunc="first", dropna=False)
        self.values = (wide["scored"].reindex(index=self.keys, columns=columns)
                       .to_numpy(dtype=np.float64).reshape(shape))
        self.missing = (wide["missing"].reindex(index=self.keys, columns=columns)
                        .fillna(0.0).to_numpy().reshape(shape).sum(axis=0).astype(np.int64))
        self.better = np.array([1.0 if higher_is_better(m) else -1.0 for m in self.metrics])

    # ------------------------------------------------------------------ pieces
    def _ranks(self, point: np.ndarray) -> np.ndarray:
        signed = -point * self.better[None, :, None]  # smaller = better
        flat = signed.reshape(-1, signed.shape[-1])
        return pd.DataFrame(flat).rank(axis=1, method="min").to_numpy().reshape(point.shape)

    def _rank_changed(self, ranks: np.ndarray) -> np.ndarray:
        """(metric,) True where the order of any two models (ties included)
        differs between conditionings."""
        order = np.sign(ranks[:, :, :, None] - ranks[:, :, None, :])  # (c, m, j, j)
        order = np.nan_to_num(order, nan=2.0)
        return (order != order[:1]).any(axis=(0, 2, 3))

    def _reversal(self, boot: np.ndarray, confidence_level: float) -> np.ndarray:
        """(metric, model): a significant order against some other model that
        flips between conditionings."""
        flips = np.zeros(boot.shape[2:], dtype=bool)  # (m, j)
        for m, better in enumerate(self.better):  # one metric at a time: bounded memory
            pairwise = boot[:, :, m, :, None] - boot[:, :, m, None, :]  # (B, c, j, j)
            low, high = interval(pairwise, confidence_level)
            if better < 0:
                low, high = -high, -low
            order = np.where(low > 0, 1, np.where(high < 0, -1, 0))  # (c, j, j)
            flips[m] = (order[:, None] * order[None, :] < 0).any(axis=(0, 1, 3))
        return flips

    def _calibration(self, ceiling: pd.DataFrame, b: int, counts: np.ndarray,
                     confidence_level: float) -> dict[str, np.ndarray]:
        n, C, M, J = self.values.shape
        table = ceiling[ceiling[EXCLUDE_COLUMN].isin(self.conditionings)
                        & ceiling["metric"].isin(self.metrics)]
        wide = table.pivot_table(index=[PERTURBATION, PERTURBATION_TYPE],
                                 columns=[EXCLUDE_COLUMN, "metric"], values="value",
                                 aggfunc="first", dropna=False)
        covered = self.keys.isin(wide.index) if len(wide) else np.zeros(n, dtype=bool)
        if not covered.any():
            raise DataContractError(
                f"The ceiling covers none of the {n} compared perturbations (e.g. "
                f"{[k[0] for k in self.keys[:5]]}). Compute replicate_ceiling() on the "
                f"observed cells of these perturbations."
            )
        columns = pd.MultiIndex.from_product([self.conditionings, self.metrics])
        top = wide.reindex(index=self.keys, columns=columns).to_numpy(dtype=np.float64)
        top = top.reshape(n, C, M)
        usable = ~np.isnan(top) & ~np.isnan(self.values[..., b])
        models = np.where(usable[..., None], self.values, np.nan)
        top = np.where(usable, top, np.nan)

        def ratio(model_means: np.ndarray, top_means: np.ndarray) -> np.ndarray:
            base = model_means[..., b : b + 1]
            gap = (top_means - base[..., 0])[..., None]
            sign = self.better[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                out = (model_means - base) / gap
            return np.where(sign * gap > 0, out, np.nan)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
            point = ratio(np.nanmean(models, axis=0), np.nanmean(top, axis=0))
        boot = ratio(bootstrap_means(models.reshape(n, -1), counts).reshape(-1, C, M, J),
                     bootstrap_means(top.reshape(n, -1), counts).reshape(-1, C, M))
        low, high = interval(boot, confidence_level)
        # An interval needs the ceiling above the baseline in nearly every resample.
        failed = np.isnan(boot).mean(axis=0) > (1.0 - confidence_level) / 4.0
        low[failed] = high[failed] = np.nan
        return {"calibrated": point, "calibrated_ci_low": low, "calibrated_ci_high": high,
                "n_calibrated": np.broadcast_to(usable.sum(axis=0)[..., None], point.shape)}

    # ------------------------------------------------------------------ table
    def table(self, *, baseline: str | None, ceiling: pd.DataFrame | None, n_resamples: int,
              confidence_level: float, rng: np.random.Generator) -> pd.DataFrame:
        n, C, M, J = self.values.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
            point = np.nanmean(self.values, axis=0)
        counts = resample_counts(n, n_resamples, rng)
        boot = bootstrap_means(self.values.reshape(n, -1), counts).reshape(-1, C, M, J)
        columns: dict[str, np.ndarray] = {"value": point}
        columns["ci_low"], columns["ci_high"] = interval(boot, confidence_level)
        columns["n"] = (~np.isnan(self.values)).sum(axis=0)
        columns["n_undefined"] = self.missing
        ranks = self._ranks(point)
        columns["rank"] = ranks
        if baseline is not None:
            b = self.models.index(baseline)
            columns["diff"] = point - point[..., b : b + 1]
            columns["diff_ci_low"], columns["diff_ci_high"] = interval(
                boot - boot[..., b : b + 1], confidence_level)
            differences = self.values - self.values[..., b : b + 1]
            columns["p_value"] = sign_flip_pvalues(differences.reshape(n, -1), n_resamples,
                                                   rng).reshape(C, M, J)
            if ceiling is not None:
                columns.update(self._calibration(ceiling, b, counts, confidence_level))
        out = pd.DataFrame({
            "metric": np.repeat(self.metrics, J),
            "model": np.tile(self.models, M),
            "higher_is_better": np.repeat(self.better > 0, J),
        })
        for c, cond in enumerate(self.conditionings):
            for name, array in columns.items():
                out[f"{name} [{cond}]"] = array[c].reshape(-1)
        out["rank_changed"] = np.repeat(self._rank_changed(ranks), J)
        out["reversal"] = self._reversal(boot, confidence_level).reshape(-1)
        return out
