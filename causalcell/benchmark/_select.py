"""Nested selection: choose among candidate estimators or networks inside the training data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.base import BaseEstimator, clone

from causalcell._validation import DEPRECATED, renamed
from causalcell.benchmark._cross_validate import (
    check_models,
    cross_predict,
    perturbation_folds,
    resolve_network,
    takes_network,
)
from causalcell.errors import NotFittedError, ParameterError
from causalcell.evaluate import compare, higher_is_better, metric_names
from causalcell.evaluate._exclude import exclude_rule

__all__ = ["Selection", "select"]

_TOP_K = (20,)  # the top-k set of an inner comparison


class Selection(BaseEstimator):
    """An estimator that picks the best of several candidates by cross-validation on
    the data it is fitted on, then refits that candidate on all of it.

    Given to :func:`~causalcell.benchmark.cross_validate` like any model, it
    makes the selection *nested*: each outer fold chooses among the
    candidates by an inner cross-validation of its own training split, so the
    choice never sees the perturbations it is scored on.

    Parameters
    ----------
    candidates : mapping of str to estimator or (estimator, network)
        The grid. A bare estimator is fitted with the network passed to
        :meth:`fit`; an ``(estimator, network)`` pair with its own network: a
        graph, or a function of the training cells returning one (e.g.
        :func:`causalcell.graph.learn_network`, run on each inner training
        split and finally on all the data given to :meth:`fit`).
    metric : str, default "mse"
        The metric of :func:`causalcell.evaluate.compare` to choose by
        (its direction is known: lower is better for errors).
    exclude : str, default "targeted"
        The rule of :func:`causalcell.evaluate.compare` to choose under:
        ``"targeted"`` (the targeted genes are not scored) or ``"none"``.
    folds : int, default 3
        Inner folds; at most the number of perturbations of the data given
        to :meth:`fit` (then leave-one-out).
    random_state : int, default 0
        Seed of the inner folds.
    conditioning : str or None, default None
        Deprecated name of ``exclude`` (FutureWarning; ``"targeted excluded"``
        is now ``"targeted"``).

    Attributes
    ----------
    selected_ : str
        The chosen candidate.
    scores_ : pandas.Series
        Inner cross-validated mean of ``metric`` per candidate.
    estimator_ : estimator
        The chosen candidate, refitted on all the data.
    network_ : networkx.DiGraph or None
        The network it was refitted with.
    """

    def __init__(
        self,
        candidates: Mapping[str, Any],
        *,
        metric: str = "mse",
        exclude: str = "targeted",
        folds: int = 3,
        random_state: int | None = 0,
        conditioning: str | None = None,
    ) -> None:
        self.candidates = candidates
        self.metric = metric
        self.exclude = exclude
        self.folds = folds
        self.random_state = random_state
        self.conditioning = conditioning

    def _grid(self) -> dict[str, tuple[Any, Any, bool]]:
        """name -> (estimator, network source, has its own network)."""
        if not isinstance(self.candidates, Mapping) or len(self.candidates) < 1:
            raise ParameterError("select() needs a non-empty mapping {'name': estimator or "
                                 "(estimator, network)} of candidates.")
        grid, estimators = {}, {}
        for name, item in self.candidates.items():
            if isinstance(item, tuple) and len(item) == 2:
                grid[name] = (item[0], item[1], True)
            else:
                grid[name] = (item, None, False)
            estimators[name] = grid[name][0]
        check_models(estimators)
        return grid

    def fit(self, adata: AnnData, network: nx.DiGraph | None = None) -> Selection:
        """Choose a candidate by inner cross-validation on ``adata``, refit it on all of it.

        Raises
        ------
        ParameterError
            Bad candidates, an unknown metric or ``exclude``, or fewer than
            2 scorable perturbations in ``adata`` (nothing to cross-validate).
        """
        grid = self._grid()
        # None, not the DEPRECATED sentinel: clone() deep-copies the parameters.
        old = DEPRECATED if self.conditioning is None else self.conditioning
        exclude = renamed("Selection", "conditioning", old, "exclude", self.exclude, "targeted")
        exclude = exclude_rule("Selection", exclude)
        known = [*metric_names(_TOP_K), "retrieval_rank"]
        if self.metric not in known:
            raise ParameterError(f"metric={self.metric!r} cannot be selected on; choose one of "
                                 f"{known}.")
        # At most one inner fold per perturbation of this training split.
        _, labels = perturbation_folds(adata, 2, random_state=self.random_state)
        inner = min(int(self.folds), len(labels))
        uses_de = self.metric.startswith("de_")
        predictions, observed = {}, None
        for name, (estimator, source, own) in grid.items():
            result = cross_predict({name: estimator}, adata, source if own else network,
                                   folds=inner, random_state=self.random_state, verbose=False)
            predictions[name] = result.predictions[name]
            observed = result.observed
        # One comparison: every candidate on the same perturbations.
        table = compare(predictions, observed, baseline=None, n_resamples=1,
                        top_k=_TOP_K, de_method="t-test" if uses_de else None,
                        retrieval=self.metric == "retrieval_rank")
        rows = table[table["metric"] == self.metric]
        scores = rows.set_index("model")[f"value [{exclude}]"].astype(float)
        sign = 1.0 if higher_is_better(self.metric) else -1.0
        ranked = (sign * scores).fillna(-np.inf)
        self.selected_ = str(ranked.idxmax())
        self.scores_ = pd.Series(scores, name=self.metric)
        estimator, source, own = grid[self.selected_]
        self.estimator_ = clone(estimator)
        self.network_ = resolve_network(source if own else network, adata)
        if takes_network(self.estimator_):
            self.estimator_.fit(adata, self.network_)
        else:
            self.estimator_.fit(adata)
        return self

    def predict(self, perturbations: Any) -> AnnData:
        """Predict with the selected candidate."""
        if not hasattr(self, "estimator_"):
            raise NotFittedError("This Selection is not fitted yet; call fit(adata) first.")
        return self.estimator_.predict(perturbations)


def select(candidates: Mapping[str, Any], **options: Any) -> Selection:
    """Nested selection among candidate estimators or networks (see :class:`Selection`).

    Parameters
    ----------
    candidates
        ``{"name": estimator}`` or ``{"name": (estimator, network)}``; e.g.
        estimators of a hyper-parameter grid (built with
        :class:`sklearn.model_selection.ParameterGrid`), or one estimator on
        several networks.
    **options
        ``metric``, ``exclude``, ``folds``, ``random_state`` of
        :class:`Selection`.

    Returns
    -------
    Selection
        An unfitted estimator: give it to
        :func:`~causalcell.benchmark.cross_validate`.

    Examples
    --------
    >>> import causalcell as cc
    >>> from causalcell.models import ConditionalGRNRegressor, MeanBaseline
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, n_combinations=0, random_state=0)
    >>> graphs = select({"true": (ConditionalGRNRegressor(verbose=False), sim.network),
    ...                  "reversed": (ConditionalGRNRegressor(verbose=False),
    ...                               sim.network.reverse())})
    >>> result = cc.benchmark.cross_validate({"selected": graphs, "mean": MeanBaseline()},
    ...                                      sim.adata, folds=3, top_k=[5], verbose=False)
    >>> [fold.selected_ for fold in result.fitted["selected"]]
    ['true', 'true', 'true']
    """
    return Selection(candidates, **options)
