"""Evaluation reports: every metric, under both conditionings, in one tidy table.

:func:`evaluate` scores one predictor, :func:`summarize` averages over
perturbations, :func:`compare` ranks several predictors side by side under
each conditioning, so that a reversal (a model that wins only while the
targeted genes are scored) is visible at a glance.

The two conditionings:

- ``"targeted excluded"``: each perturbation is scored on the genes it does
  not target; retrieval uses the fair ``"pair"`` exclusion;
- ``"none"``: every gene is scored (the numbers published evaluators
  report); retrieval without exclusion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell.data.contract import PERTURBATION, PERTURBATION_TYPE
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate.align import Aligned, align, is_pseudobulk
from causalcell.evaluate.de import DEResult, differential_expression
from causalcell.evaluate.metrics import (
    DEFAULT_TOP_K,
    EXCLUDE,
    higher_is_better,
    perturbation_metrics,
)
from causalcell.evaluate.retrieval_table import retrieval_ranks

__all__ = ["CONDITIONING", "compare", "evaluate", "summarize"]

# exclude= value -> conditioning label, and the retrieval exclusion it implies.
CONDITIONING = {"targeted": "targeted excluded", None: "none"}
_RETRIEVAL_EXCLUSION = {"targeted": "pair", None: "none"}
_ID_COLUMNS = [PERTURBATION, PERTURBATION_TYPE, "conditioning", "n_genes_scored"]


def _check_exclude(exclude: str | Sequence[str | None] | None) -> tuple[str | None, ...]:
    values = (exclude,) if exclude is None or isinstance(exclude, str) else tuple(exclude)
    if not values or any(v not in EXCLUDE for v in values) or len(set(values)) != len(values):
        raise ParameterError(
            f"exclude={exclude!r} is invalid; give 'targeted', None, or both as a sequence "
            f"(default ('targeted', None))."
        )
    return values


def _observed_de(
    observed: AnnData, de: DEResult | None, de_method: str | None, layer: str | None,
    control_label: str | None,
) -> DEResult | None:
    """The DE result used to choose top-k genes, or None to rank by |observed change|."""
    if de is not None:
        if not isinstance(de, DEResult):
            raise ParameterError(f"de must be a DEResult, got {type(de).__name__}.")
        return de
    if de_method is None or is_pseudobulk(observed):
        return None
    return differential_expression(observed, method=de_method, layer=layer,
                                   control_label=control_label)


def _score(
    aligned: Aligned,
    de: DEResult | None,
    *,
    exclude: tuple[str | None, ...],
    top_k: Sequence[int],
    alpha: float,
    retrieval: bool,
    distance: str,
) -> pd.DataFrame:
    de_score = significant = None
    if de is not None:
        selected = de.select(aligned.perturbations, aligned.genes)
        de_score = np.abs(selected.score)
        significant = selected.significant(alpha)
    frames = []
    for setting in exclude:
        wide = perturbation_metrics(aligned.predicted, aligned.observed, aligned.targets,
                                    exclude=setting, de_score=de_score,
                                    significant=significant, top_k=top_k)
        if retrieval and len(aligned) >= 2:
            ranks = retrieval_ranks(aligned, distance=distance,
                                    exclusion=_RETRIEVAL_EXCLUSION[setting])
            wide["retrieval_rank"] = ranks["rank"].to_numpy()
        wide.insert(0, PERTURBATION, aligned.perturbations.to_numpy())
        wide.insert(1, PERTURBATION_TYPE, aligned.perturbation_type)
        wide.insert(2, "conditioning", CONDITIONING[setting])
        frames.append(wide.melt(id_vars=_ID_COLUMNS, var_name="metric", value_name="value"))
    table = pd.concat(frames, ignore_index=True)
    table = table[[PERTURBATION, PERTURBATION_TYPE, "conditioning", "metric", "value",
                   "n_genes_scored"]]
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


def evaluate(
    predicted: AnnData,
    observed: AnnData,
    *,
    exclude: str | Sequence[str | None] | None = ("targeted", None),
    top_k: Sequence[int] = DEFAULT_TOP_K,
    de_method: str | None = "t-test",
    alpha: float = 0.05,
    de: DEResult | None = None,
    retrieval: bool = True,
    distance: str = "euclidean",
    reference: str = "control",
    join: str = "exact",
    control_label: str | None = None,
    layer: str | None = None,
    predicted_layer: str | None = None,
    aggregate_predicted: bool = False,
) -> pd.DataFrame:
    """Score a prediction, per perturbation and metric, with and without the targeted genes.

    Parameters
    ----------
    predicted
        Predicted profiles, one row per perturbation (obs contract).
    observed
        Observed cells (DE is computed from them) or pseudobulk profiles
        (top-k genes are then the largest ``|observed change|``).
    exclude
        ``"targeted"``, ``None`` or both (default): the conditionings
        reported, labelled ``"targeted excluded"`` and ``"none"``.
    top_k
        Sizes of the top-k DE gene sets (see
        :func:`~causalcell.evaluate.metrics.perturbation_metrics`).
    de_method
        ``"t-test"`` (Welch), ``"wilcoxon"``, or None to rank genes by
        ``|observed change|`` instead of a test.
    alpha
        q-value threshold of the significant genes (``de_*_n_sig``).
    de
        A precomputed :class:`~causalcell.evaluate.de.DEResult` of the
        observed cells (reused by :func:`compare`).
    retrieval
        Add ``retrieval_rank`` (pairwise retrieval, ``"pair"`` exclusion
        under ``"targeted excluded"``, none under ``"none"``); skipped when
        fewer than 2 perturbations are scored.
    distance
        Distance of the retrieval.
    reference, join, control_label, layer, predicted_layer, aggregate_predicted
        As in :func:`~causalcell.evaluate.align.align`.

    Returns
    -------
    pandas.DataFrame
        Long table: ``perturbation``, ``perturbation_type``,
        ``conditioning``, ``metric``, ``value``, ``n_genes_scored``. ``attrs``
        records the reference, the DE method, ``alpha``, the distance and
        the observed perturbations without prediction.

    Raises
    ------
    DataContractError
        Any error of :func:`~causalcell.evaluate.align.align` (differing
        genes, duplicated perturbations, NaN predictions, an absent control
        label ...).
    ParameterError
        An unknown ``exclude``, ``de_method``, ``reference``, ``join`` or
        ``distance``.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> table = evaluate(sim.truth, sim.adata, top_k=[5])
    >>> sorted(table["conditioning"].unique())
    ['none', 'targeted excluded']
    """
    settings = _check_exclude(exclude)
    aligned = align(predicted, observed, reference=reference, join=join,
                    control_label=control_label, layer=layer, predicted_layer=predicted_layer,
                    aggregate_predicted=aggregate_predicted)
    de = _observed_de(observed, de, de_method, layer, control_label)
    return _score(aligned, de, exclude=settings, top_k=top_k, alpha=alpha,
                  retrieval=retrieval, distance=distance)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Average a long table of :func:`evaluate` (or :func:`compare`) over perturbations.

    Parameters
    ----------
    table
        Columns ``conditioning``, ``metric``, ``value`` (and ``model`` when
        several predictors are stacked).

    Returns
    -------
    pandas.DataFrame
        One row per (model,) metric and conditioning, in the order they
        appear: ``mean``, ``median``, ``sd``, ``n`` (perturbations with a
        defined value) and ``higher_is_better``.

    Raises
    ------
    ParameterError
        If a required column is missing.
    """
    required = {"conditioning", "metric", "value"}
    if not isinstance(table, pd.DataFrame) or not required <= set(table.columns):
        cols = list(table.columns) if isinstance(table, pd.DataFrame) else type(table).__name__
        raise ParameterError(
            f"summarize() takes the table of evaluate(); it needs the columns "
            f"{sorted(required)}, got {cols}."
        )
    keys = (["model"] if "model" in table.columns else []) + ["metric", "conditioning"]
    grouped = table.groupby(keys, sort=False)["value"]
    out = grouped.agg(mean="mean", median="median", sd="std", n="count").reset_index()
    out["higher_is_better"] = [higher_is_better(m) for m in out["metric"]]
    return out


def compare(
    predictions: Mapping[str, AnnData],
    observed: AnnData,
    *,
    details: bool = False,
    exclude: str | Sequence[str | None] | None = ("targeted", None),
    top_k: Sequence[int] = DEFAULT_TOP_K,
    de_method: str | None = "t-test",
    alpha: float = 0.05,
    de: DEResult | None = None,
    retrieval: bool = True,
    distance: str = "euclidean",
    reference: str = "control",
    join: str = "exact",
    control_label: str | None = None,
    layer: str | None = None,
    predicted_layer: str | None = None,
    aggregate_predicted: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Rank several predictors on every metric, under each conditioning side by side.

    Parameters
    ----------
    predictions
        ``{"name": predicted AnnData, ...}``; every predictor must cover
        the same observed perturbations (a mean over different sets is not a
        comparison).
    observed
        The observed data, shared by all predictors; DE is computed once.
    details
        Also return the long per-perturbation table of all models (the
        table of :func:`evaluate` with a ``model`` column).
    exclude, top_k, de_method, alpha, de, retrieval, distance
        As in :func:`evaluate`.
    reference, join, control_label, layer, predicted_layer, aggregate_predicted
        As in :func:`~causalcell.evaluate.align.align`.

    Returns
    -------
    pandas.DataFrame
        One row per (metric, model): ``higher_is_better``, then for each
        conditioning c the columns ``value [c]`` (mean over perturbations)
        and ``rank [c]`` (1 = best), and ``rank_changed`` (True on every row
        of a metric whose ranking of models differs between conditionings).
        With ``details=True``, the pair (that table, the long table).

    Raises
    ------
    ParameterError
        No predictor, a name that is not a non-empty string, and every
        parameter error of :func:`evaluate`.
    DataContractError
        Predictors covering different perturbations, and every error of
        :func:`evaluate`.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> table = compare({"truth": sim.truth}, sim.adata, top_k=[5])
    >>> table.columns[:4].tolist()
    ['metric', 'model', 'higher_is_better', 'value [targeted excluded]']
    """
    if not isinstance(predictions, Mapping) or not predictions:
        raise ParameterError("compare() takes a non-empty mapping {'name': predicted AnnData}.")
    for name in predictions:
        if not isinstance(name, str) or not name:
            raise ParameterError(f"Model names must be non-empty strings, got {name!r}.")
    settings = _check_exclude(exclude)
    aligned = {
        name: align(pred, observed, reference=reference, join=join,
                    control_label=control_label, layer=layer,
                    predicted_layer=predicted_layer, aggregate_predicted=aggregate_predicted)
        for name, pred in predictions.items()
    }
    first_name, first = next(iter(aligned.items()))
    reference_set = set(first.perturbations)
    for name, item in aligned.items():
        if set(item.perturbations) != reference_set:
            only_here = sorted(set(item.perturbations) - reference_set)
            only_there = sorted(reference_set - set(item.perturbations))
            raise DataContractError(
                f"Models {first_name!r} and {name!r} cover different perturbations "
                f"({name!r} only: {only_here[:10]}; {first_name!r} only: {only_there[:10]}). "
                f"Compare predictors on the same perturbations: subset the predictions to "
                f"the common ones."
            )
    de = _observed_de(observed, de, de_method, layer, control_label)
    frames = []
    for name, item in aligned.items():
        table = _score(item, de, exclude=settings, top_k=top_k, alpha=alpha,
                       retrieval=retrieval, distance=distance)
        table.insert(0, "model", name)
        frames.append(table)
    long = pd.concat(frames, ignore_index=True)
    table = _side_by_side(summarize(long), [CONDITIONING[s] for s in settings])
    return (table, long) if details else table


def _side_by_side(summary: pd.DataFrame, conditionings: list[str]) -> pd.DataFrame:
    metrics = list(dict.fromkeys(summary["metric"]))
    models = list(dict.fromkeys(summary["model"]))
    index = pd.MultiIndex.from_product([metrics, models], names=["metric", "model"])
    out = pd.DataFrame(index=index)
    out["higher_is_better"] = [higher_is_better(m) for m in index.get_level_values(0)]
    for cond in conditionings:
        part = summary[summary["conditioning"] == cond].set_index(["metric", "model"])["mean"]
        values = part.reindex(index)
        out[f"value [{cond}]"] = values.to_numpy()
        # Rank within each metric: 1 = best in that metric's direction.
        signed = np.where(out["higher_is_better"], -values.to_numpy(), values.to_numpy())
        out[f"rank [{cond}]"] = (
            pd.Series(signed, index=index).groupby(level="metric").rank(method="min")
        )
    rank_cols = [f"rank [{c}]" for c in conditionings]
    changed = out[rank_cols].nunique(axis=1) > 1
    out["rank_changed"] = changed.groupby(level="metric").transform("any").to_numpy()
    return out.reset_index()
