"""Cross-validation over perturbations: every perturbation predicted once, by models
that never saw it, and scored with coverage, intervals and calibration."""

from __future__ import annotations

import inspect
import numbers
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.base import clone
from sklearn.model_selection import KFold

from causalcell._progress import tqdm
from causalcell.benchmark._request import observed_request
from causalcell.data import PERTURBATION, Interventions
from causalcell.data.lazy import in_memory_copy
from causalcell.errors import DataContractError, ParameterError, UnmeasuredTargetWarning
from causalcell.evaluate import compare, replicate_ceiling

__all__ = [
    "CrossPrediction",
    "CrossValidation",
    "cross_predict",
    "cross_validate",
    "perturbation_folds",
]

NetworkSource = nx.DiGraph | Callable[[AnnData], nx.DiGraph] | None
Networks = NetworkSource | Mapping[str, NetworkSource]


@dataclass(frozen=True, repr=False)
class CrossValidation:
    """The result of :func:`cross_validate`.

    Attributes
    ----------
    table : pandas.DataFrame
        The :func:`causalcell.evaluate.compare` table of the cross-validated
        predictions: one row per (metric, model) with, per conditioning, the
        mean, its interval, ``n``, ``n_undefined``, rank, the paired
        difference from the baseline with its p-value and the calibrated
        score (see there).
    predictions : dict of str to AnnData
        Each model's predicted profiles of every scored perturbation (each
        predicted by the model fitted on the folds that do not hold it).
    observed : AnnData
        The cells the predictions were scored against: those of the scored
        perturbations and the controls.
    folds : pandas.DataFrame
        One row per scored perturbation (its target-set label): ``fold``.
    ceiling : pandas.DataFrame or None
        The :func:`causalcell.evaluate.replicate_ceiling` table, if computed.
    long : pandas.DataFrame
        The per-perturbation scores of every model (``compare(...,
        details=True)``).
    fit_seconds : dict of str to float
        Fit and predict time of each model, summed over folds.
    networks : dict of str to networkx.DiGraph
        For each model that was given a network: that network (a callable's
        output on the first fold's training split).
    fold_networks : dict of str to list of networkx.DiGraph
        The same, one per fold.
    fitted : dict of str to list
        The fitted estimator of every fold, per model (e.g. to read what a
        :func:`~causalcell.benchmark.select` chose).
    """

    table: pd.DataFrame
    predictions: dict[str, AnnData]
    observed: AnnData
    folds: pd.DataFrame
    ceiling: pd.DataFrame | None
    long: pd.DataFrame
    fit_seconds: dict[str, float] = field(default_factory=dict)
    networks: dict[str, nx.DiGraph] = field(default_factory=dict)
    fold_networks: dict[str, list[nx.DiGraph]] = field(default_factory=dict)
    fitted: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def held_out(self) -> list[str]:
        """Every scored perturbation (each was held out in one fold), sorted."""
        return sorted(self.long[PERTURBATION].unique())

    def __repr__(self) -> str:
        return (f"CrossValidation({len(self.predictions)} models, {len(self.held_out)} "
                f"perturbations in {self.folds['fold'].nunique()} folds)")


def check_models(models: object) -> dict[str, Any]:
    """The models of :func:`cross_validate`, checked: a mapping of names to
    unfitted scikit-learn-style estimators."""
    if not isinstance(models, Mapping) or not models:
        raise ParameterError(
            f"models must be a non-empty mapping {{'name': estimator}} (e.g. {{'mean': "
            f"causalcell.models.MeanBaseline()}}), got {type(models).__name__}."
        )
    for name, model in models.items():
        if not isinstance(name, str) or not name:
            raise ParameterError(f"Model names must be non-empty strings, got {name!r}.")
        missing = [m for m in ("fit", "predict", "get_params") if not callable(
            getattr(model, m, None))]
        if inspect.isclass(model) or missing:
            what = "a class" if inspect.isclass(model) else f"a {type(model).__name__}"
            raise ParameterError(
                f"models[{name!r}] is {what}, not an estimator instance (it needs fit, "
                f"predict and get_params; missing {missing or ['an instance']}). Pass an "
                f"unfitted estimator such as causalcell.models.MeanBaseline() (note the "
                f"parentheses); it is cloned for every fold."
            )
    return dict(models)


def takes_network(model: Any) -> bool:
    """True when ``model.fit`` has a ``network`` parameter."""
    try:
        return "network" in inspect.signature(model.fit).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


def resolve_network(network: NetworkSource, train: AnnData) -> nx.DiGraph | None:
    """A network, or a callable's network of the training split."""
    if network is None or isinstance(network, nx.DiGraph):
        return network
    if callable(network):
        return network(train)
    raise ParameterError(
        f"network must be a networkx.DiGraph, a function of the training cells returning "
        f"one (e.g. causalcell.graph.learn_network), or None; got {type(network).__name__}."
    )


def perturbation_folds(
    adata: AnnData, folds: int, *, random_state: int | None = 0, measured_only: bool = True
) -> tuple[np.ndarray, pd.Series]:
    """Assign every scorable perturbation to one of ``folds`` folds.

    A perturbation is a set of targeted genes (``"A,B"`` == ``"B,A"``; the
    same genes perturbed by different kinds are one group, as in
    :func:`causalcell.data.split_by_perturbation`). The groups are shuffled
    and dealt into folds by :class:`sklearn.model_selection.KFold`.

    Returns
    -------
    (numpy.ndarray, pandas.Series)
        The fold of every cell (-1: always trains: controls, and with
        ``measured_only`` the perturbations of unmeasured genes) and the
        fold of every scored perturbation label.

    Raises
    ------
    ParameterError
        ``folds`` not an integer >= 2, or more folds than perturbations.
    """
    if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 2:
        raise ParameterError(f"folds={folds!r} must be an integer >= 2.")
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    labels = iv.conditions[PERTURBATION].to_numpy()[iv.codes].astype(str)
    eligible = ~iv.is_control
    if measured_only:
        cond = iv.conditions
        measured = (cond["n_measured"] == cond["n_targets"]).to_numpy()
        eligible &= measured[iv.codes]
    names = np.unique(labels[eligible])
    if folds > len(names):
        which = " with every target measured" if measured_only else ""
        raise ParameterError(
            f"folds={folds} but there are only {len(names)} perturbations{which} to hold "
            f"out ({', '.join(names[:10])}); every fold needs one. Use folds <= "
            f"{max(len(names), 2)} (folds={len(names)} is leave-one-out)."
        )
    fold_of = np.empty(len(names), dtype=np.int64)
    splitter = KFold(n_splits=int(folds), shuffle=True, random_state=random_state)
    for k, (_, test) in enumerate(splitter.split(names)):
        fold_of[test] = k
    cell_fold = np.full(adata.n_obs, -1, dtype=np.int64)
    where = np.searchsorted(names, labels[eligible])
    cell_fold[eligible] = fold_of[where]
    return cell_fold, pd.Series(fold_of, index=pd.Index(names, name=PERTURBATION), name="fold")


@dataclass(frozen=True, repr=False)
class CrossPrediction:
    """The result of :func:`cross_predict`: the attributes of
    :class:`CrossValidation` before scoring (``predictions``, ``observed``,
    ``folds``, ``fit_seconds``, ``networks``, ``fold_networks``, ``fitted``)."""

    predictions: dict[str, AnnData]
    observed: AnnData
    folds: pd.DataFrame
    fit_seconds: dict[str, float]
    networks: dict[str, nx.DiGraph]
    fold_networks: dict[str, list[nx.DiGraph]]
    fitted: dict[str, list[Any]]

    def __repr__(self) -> str:
        return (f"CrossPrediction({len(self.predictions)} models, {len(self.folds)} "
                f"perturbations in {self.folds['fold'].nunique()} folds)")


def _per_model(network: Networks, models: Mapping[str, Any]) -> dict[str, NetworkSource]:
    """The network source of each model (a mapping names the models it serves)."""
    if isinstance(network, Mapping):
        unknown = sorted(set(network) - set(models))
        if unknown:
            raise ParameterError(f"network names models {unknown} that are not among the "
                                 f"models {list(models)}.")
        return {name: network.get(name) for name in models}
    return dict.fromkeys(models, network)


def cross_predict(
    models: Mapping[str, Any],
    adata: AnnData,
    network: Networks = None,
    *,
    folds: int = 5,
    random_state: int | None = 0,
    measured_only: bool = True,
    verbose: bool = True,
    request: Callable[[AnnData], pd.DataFrame] | None = None,
) -> CrossPrediction:
    """Predict every perturbation once, with models fitted without it (no scoring).

    The fold loop of :func:`cross_validate` (see there for the parameters):
    for each fold, every model is cloned, fitted on the other cells and asked
    for the fold's perturbations, told their observed level T.
    ``request(held_out_cells)`` builds what the models are asked (default
    :func:`observed_request`: one row per perturbation at its mean T; the
    dose-response scoring asks one row per dose bin).

    Returns
    -------
    CrossPrediction

    Raises
    ------
    ParameterError
        As :func:`cross_validate`.
    """
    models = check_models(models)
    sources = _per_model(network, models)
    request_of = request
    cell_fold, fold_table = perturbation_folds(adata, folds, random_state=random_state,
                                               measured_only=measured_only)
    predictions: dict[str, list[AnnData]] = {name: [] for name in models}
    seconds = dict.fromkeys(models, 0.0)
    fold_networks: dict[str, list[nx.DiGraph]] = {}
    fitted: dict[str, list[Any]] = {name: [] for name in models}
    steps = [(k, name) for k in range(int(folds)) for name in models]
    bar = tqdm(steps, desc="cross-validate", unit="fit", disable=not verbose, leave=False)
    current, train, request = -1, None, None
    graphs: dict[int, nx.DiGraph | None] = {}  # per source, computed once per fold
    with warnings.catch_warnings():
        # Unmeasured targets always train; they are reported by Interventions once.
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)
        for k, name in bar:
            bar.set_postfix_str(f"fold {k + 1}/{folds}: {name}")
            if k != current:
                current = k
                # A view: models read their training data and never write to it.
                train = adata[cell_fold != k]
                request = (observed_request if request_of is None else request_of)(
                    adata[cell_fold == k])
                graphs = {}
            start = time.perf_counter()
            model = clone(models[name])
            if takes_network(model):
                source = sources[name]
                if id(source) not in graphs:
                    graphs[id(source)] = resolve_network(source, train)
                graph = graphs[id(source)]
                if graph is not None:
                    fold_networks.setdefault(name, []).append(graph)
                model.fit(train, graph)
            else:
                model.fit(train)
            predictions[name].append(model.predict(request))
            fitted[name].append(model)
            seconds[name] += time.perf_counter() - start
        bar.close()
        joined = {name: ad.concat(parts, merge="same") for name, parts in predictions.items()}
        controls = Interventions.from_adata(adata, warn_unmeasured=False).is_control
    observed = in_memory_copy(adata[(cell_fold != -1) | controls])
    return CrossPrediction(
        predictions=joined, observed=observed, folds=fold_table.to_frame(),
        fit_seconds=seconds, networks={name: graphs[0] for name, graphs in fold_networks.items()},
        fold_networks=fold_networks, fitted=fitted,
    )


def cross_validate(
    models: Mapping[str, Any],
    adata: AnnData,
    network: Networks = None,
    *,
    folds: int = 5,
    random_state: int | None = 0,
    measured_only: bool = True,
    baseline: str | None = "mean",
    ceiling: bool = True,
    ceiling_splits: int = 5,
    top_k: Sequence[int] = (20, 100, 200),
    de_method: str | None = "t-test",
    undefined: str = "zero",
    n_resamples: int = 2000,
    confidence_level: float = 0.95,
    verbose: bool = True,
) -> CrossValidation:
    """Predict every perturbation once with models fitted without it, and compare them.

    Grouped K-fold over perturbations: the perturbations are dealt into
    ``folds`` folds (:func:`perturbation_folds`); for each fold every model
    is cloned (:func:`sklearn.base.clone`), fitted on all other cells
    (controls always train) and asked for the fold's perturbations, told the
    observed level T of their cells (:func:`observed_request`). The
    predictions of all folds are then scored together by
    :func:`causalcell.evaluate.compare` against the observed cells, with the
    data's :func:`~causalcell.evaluate.replicate_ceiling` for calibration.

    Parameters
    ----------
    models
        ``{"name": unfitted estimator}``: anything with ``fit(adata[,
        network])`` and ``predict(request)`` that :func:`sklearn.base.clone`
        can copy (every :mod:`causalcell.models` estimator; a
        :func:`~causalcell.benchmark.select` for nested selection).
    adata
        Cells following the data contract, with controls.
    network
        Given to every model whose ``fit`` takes a ``network``: a graph, or a
        function of the training cells returning one (e.g.
        :func:`causalcell.graph.learn_network`), called once per fold on
        that fold's training split only. A mapping ``{"model name": graph or
        function}`` gives each model its own (models not named get None).
    folds
        Number of folds, 2 to the number of scorable perturbations.
    random_state
        Seed of the fold assignment, of the ceiling's splits and of the
        bootstrap.
    measured_only
        Score only perturbations whose every target is measured (a model
        clamps targets at T; an unmeasured target cannot be clamped). The
        others always train.
    baseline
        Name of the model every other is compared with (paired differences,
        calibration); default ``"mean"`` (add
        ``causalcell.models.MeanBaseline()`` under that name). ``None``: no
        comparison, no calibration.
    ceiling
        Compute the replicate ceiling of the scored cells (needs cells, not
        pseudobulk rows, and a baseline) and add calibrated scores.
    ceiling_splits
        Random half splits of the ceiling.
    top_k, de_method, undefined, n_resamples, confidence_level
        As in :func:`causalcell.evaluate.compare`.
    verbose
        Show a progress bar over folds and models.

    Returns
    -------
    CrossValidation

    Raises
    ------
    ParameterError
        ``models`` that is not a mapping of names to estimator instances;
        ``folds`` below 2 or above the number of scorable perturbations; a
        ``network`` that is neither a graph nor a callable (or a mapping
        naming unknown models); a ``baseline``
        that is not among the models; and every error of
        :func:`~causalcell.evaluate.compare`.
    DataContractError
        A ceiling requested for pseudobulk rows, and every error of the
        models and of :func:`~causalcell.evaluate.compare`.

    Examples
    --------
    >>> import causalcell as cc
    >>> from causalcell.models import ConditionalGRNRegressor, MeanBaseline
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> result = cross_validate(
    ...     {"grn": ConditionalGRNRegressor(verbose=False), "mean": MeanBaseline()},
    ...     sim.adata, sim.network, folds=4, top_k=[5], verbose=False)
    >>> len(result.held_out), sorted(result.predictions)
    (20, ['grn', 'mean'])
    """
    models = check_models(models)
    if baseline is not None and baseline not in models:
        raise ParameterError(
            f"baseline={baseline!r} is not among the models {list(models)}. Add the "
            f"know-nothing reference every score is judged against (e.g. 'mean': "
            f"causalcell.models.MeanBaseline()), name another model, or pass baseline=None."
        )
    if ceiling and baseline is None:
        raise ParameterError("ceiling=True calibrates scores between the baseline and the "
                             "ceiling: give a baseline, or pass ceiling=False.")
    if ceiling and "n_cells" in adata.obs.columns:
        raise DataContractError(
            "ceiling=True needs per-cell data: the replicate ceiling splits each "
            "perturbation's cells in two, and this data holds pseudobulk profiles (obs has "
            "'n_cells'). Pass the cells, or ceiling=False."
        )
    predicted = cross_predict(models, adata, network, folds=folds, random_state=random_state,
                              measured_only=measured_only, verbose=verbose)
    ceiling_table = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)
        if ceiling:
            ceiling_table = replicate_ceiling(predicted.observed, n_splits=ceiling_splits,
                                              random_state=random_state, top_k=top_k,
                                              de_method=de_method)
        table, long = compare(predicted.predictions, predicted.observed, baseline=baseline,
                              ceiling=ceiling_table, undefined=undefined,
                              n_resamples=n_resamples, confidence_level=confidence_level,
                              random_state=random_state, top_k=top_k, de_method=de_method,
                              details=True)
    return CrossValidation(
        table=table, predictions=predicted.predictions, observed=predicted.observed,
        folds=predicted.folds, ceiling=ceiling_table, long=long,
        fit_seconds=predicted.fit_seconds, networks=predicted.networks,
        fold_networks=predicted.fold_networks, fitted=predicted.fitted,
    )
