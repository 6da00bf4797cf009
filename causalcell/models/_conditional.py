"""`ConditionalGRNRegressor`: per-gene models of P(x_g | regulators), fitted where
g is not targeted, clamped at T and propagated on the intervention graph.

Fit: for each gene g, regress x_g on its regulators (its parents in a
network, or every gene of a regulator list) using only the samples in which g
is *not* targeted (combinations containing g are left out too); a targeted
regulator enters at its level T (knockout: 0; unknown T: its measured value).
Ridge and OLS use the batched exact solver (``causalcell.models._solve``), and
so does the additive spline model (``regressor="spline"``: every regulator
expanded in a B-spline basis, ``causalcell.models._spline``); any
scikit-learn regressor goes through a per-gene path.

Predict: start from a state (the training control mean by default), clamp
every targeted gene at its level T and propagate the change through the
intervention graph (targets have no parents):
``x_g <- start_g + f_g(x) - f_g(start)`` for every other gene, a given number
of steps or to the steady state (closed form for linear models, fixed-point
iteration otherwise).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy import stats

from causalcell._validation import check_layer, check_n_jobs, is_int, is_real
from causalcell.data._design import Design
from causalcell.data._moments import PassBuffers
from causalcell.data._pseudobulk import control_weights
from causalcell.data._stats import bh_qvalues, weighted_column_sums
from causalcell.data.contract import PERTURBATION, expression_matrix, expression_name
from causalcell.data.lazy import LOAD_IN_MEMORY, compute_if_small, is_dask_array
from causalcell.errors import (
    CausalCellWarning,
    DataFileError,
    NetworkError,
    ParameterError,
    PredictionError,
)
from causalcell.graph._io import check_network_genes, to_adjacency
from causalcell.models._base import (
    PerturbationModel,
    make_prediction,
    observed_target_levels,
    prediction_request,
    resolve_levels,
    training_data,
)
from causalcell.models._basis import KNOT_PLACEMENTS, SplineBasis
from causalcell.models._generic import fit_per_gene, regulator_lists
from causalcell.models._iv import fit_iv, unidentified_message
from causalcell.models._model_file import (
    CONDITIONAL_LEVELS_N,
    check_arrays,
    check_genes,
    level_arrays_spec,
    levels_from_arrays,
    levels_to_arrays,
    load_arrays,
    model_from_header,
    save_arrays,
)
from causalcell.models._propagate import SteadyState, clamp, propagate, propagate_generic
from causalcell.models._solve import fit_linear
from causalcell.models._spline import SplineFit, fit_spline

__all__ = ["DEFAULT_ALPHAS", "ConditionalGRNRegressor"]

#: Candidate ridge penalties for ``alpha="gcv"`` (scikit-learn ``Ridge`` scale:
#: the penalty is compared with a sum of squares over samples).
DEFAULT_ALPHAS: tuple[float, ...] = (
    0.001,
    0.01,
    0.1,
    0.3,
    1.0,
    3.0,
    10.0,
    30.0,
    100.0,
    300.0,
    1000.0,
    3000.0,
    10000.0,
    100000.0,
)
_STRING_REGRESSORS = ("ridge", "ols", "iv", "lasso", "spline")
_IV_FALLBACKS = ("ridge", "drop")
_STEADY_STATE_METHODS = ("auto", "closed_form", "iteration")
_MAX_CELL_STARTS = 1 << 24  # start-state values built at once when averaging over cells


def _pass_buffers(adata: AnnData, layer: str | None,
                  network: nx.DiGraph | None) -> PassBuffers | None:
    """The work arrays of the pass over ``adata``'s expression when it is a dense array
    in memory (the pass's dense path), started now; None otherwise (sparse, backed or
    Dask X, a layer that does not exist, not an AnnData: the contract check then says
    so). The regulators are at most the network's nodes with an out-edge that are
    genes (node names match ``var_names`` exactly, as for the fit)."""
    if not isinstance(adata, AnnData) or not (layer is None or isinstance(layer, str)):
        return None  # the contract check refuses it, with its own error
    X = adata.X if layer is None else adata.layers.get(layer)
    if not isinstance(X, np.ndarray) or X.ndim != 2 or not X.size:
        return None
    bound = None
    if isinstance(network, nx.DiGraph):
        sources = [node for node, degree in network.out_degree() if degree]
        bound = int(pd.Index(adata.var_names).astype(str).isin(sources).sum())
    return PassBuffers(*X.shape, regulators=bound)


def _on_a_cycle(parents: sp.csc_array | None, pool: np.ndarray | None, p: int) -> np.ndarray:
    """(p,) bool: the gene lies on a directed cycle of the regulator structure.

    Network mode: a strongly connected component of two or more genes. Pool
    mode: every gene regresses on all pool members but itself, so pool
    members form cycles as soon as the pool has two of them.
    """
    if parents is None:
        out = np.zeros(p, dtype=bool)
        members = np.unique(np.asarray(pool, dtype=np.int64))
        out[members] = len(members) >= 2
        return out
    from scipy.sparse.csgraph import connected_components

    P = sp.csr_array(parents, dtype=bool)
    P.setdiag(False)
    P.eliminate_zeros()
    _, label = connected_components(P, directed=True, connection="strong")
    return np.bincount(label, minlength=p)[label] >= 2


class ConditionalGRNRegressor(PerturbationModel):
    """Per-gene regressions on regulators, fitted where the gene is not targeted.

    Parameters
    ----------
    regressor : {"ridge", "ols", "iv", "lasso", "spline"} or scikit-learn regressor, default "ridge"
        ``"ridge"`` and ``"ols"`` use the batched exact solver (one pass over
        the samples, exact per-gene exclusion by downdating; see
        ``causalcell.models._solve``); ``"ols"`` also gives statistical
        inference (:meth:`coef_table`). ``"iv"`` is the feedback-consistent
        fit: two-stage least squares with the perturbation conditions as
        instruments for the regulators (``causalcell.models._iv``), which
        equals the weighted least squares of the per-condition means of the
        gene on those of its regulators, over the conditions that do not
        target the gene (weights: samples per condition). Per-gene ridge / OLS
        regressions are biased when the network has feedback loops (the
        regulators depend on the gene's own noise through the loop) and the
        bias does not shrink with data; ``"iv"`` is consistent as the cells
        per condition grow. It needs every gene's regulators to be moved
        independently by the conditions that keep the gene (in practice:
        each regulator perturbed in some condition that does not target the
        gene, and at least ``r + 1`` such conditions for ``r`` regulators);
        a gene with edges the conditions do not identify is handled as
        ``iv_fallback`` says, with a warning naming the edges. Unpenalized
        (``alpha`` serves only the ridge fallback); one pass over the samples,
        Dask too (two with fallback genes). ``"spline"`` is additive non-linear
        regulation, ``x_g = intercept + sum_r c_rg(x_r)``: each regulator is
        expanded in a B-spline basis (scikit-learn's ``SplineTransformer``
        with ``n_knots``, ``degree``, ``knots``, linear extrapolation outside
        the training range, ``include_bias=False``) and every gene's ridge
        fit on those basis functions is solved by the same batched exact
        solver, ``alpha`` / ``alpha="gcv"`` included; its curves are in
        :meth:`response_curves` and its predictions propagate by fixed-point
        iteration. ``"lasso"`` fits
        :class:`sklearn.linear_model.Lasso` per gene; any other scikit-learn
        regressor instance is cloned and fitted per gene (parallel with
        ``n_jobs``). Models whose fitted estimators expose ``coef_`` and
        ``intercept_`` are linear and get the closed-form steady state.
    alpha : float or "gcv", default 1.0
        Ridge penalty on the sum of squares (scikit-learn ``Ridge`` scale, so
        it grows with the number of samples), or ``"gcv"`` to choose it per
        gene among ``alphas`` by generalized cross-validation (exact, from
        the Gram matrix). For ``"lasso"`` it is scikit-learn's ``Lasso``
        alpha (per-sample scale; ~0.01 suits log-normalized data). For
        ``"spline"`` it penalizes the basis coefficients as ridge does. For
        ``"iv"`` it is the penalty of the ridge fallback (``iv_fallback``).
        Ignored by ``"ols"`` and estimator instances.
    alphas : sequence of float, default :data:`DEFAULT_ALPHAS`
        Candidates for ``alpha="gcv"``.
    iv_fallback : {"ridge", "drop"}, default "ridge"
        ``regressor="iv"`` only: what to do with a gene that has an edge the
        perturbation conditions do not identify (first-stage F < 10,
        ``causalcell.models._iv``; typically a regulator never perturbed in
        a condition that keeps the gene). ``"ridge"``: unless the gene lies
        on a directed cycle of the network, it gets the per-gene ridge fit on
        all its regulators (``alpha`` / ``alphas``, the same batched solver:
        its column equals that of ``regressor="ridge"``), consistent for an
        acyclic network but biased if the gene is in a feedback loop the
        network misses; the other genes keep their 2SLS fit. ``"drop"``, and
        genes on a cycle under ``"ridge"`` (where the per-gene fit is
        biased): the unidentified edges are left out (the intercept absorbs
        the regulator, so perturbing it is predicted to have no effect
        through them). Either way a warning names the edges.
    regulators : sequence of str, optional
        Eligible regulators, e.g. the transcription factors
        (:func:`causalcell.datasets.load_tf_names`). Without a network every
        gene is regressed on all of them but itself; with a network, on its
        network parents among them. Names not measured are ignored (with a
        warning). ``None``: network parents, or all other genes without a
        network.
    layer : str, optional
        Layer of log-normalized expression to fit on (``None``: ``X``).
    n_knots : int, default 4
        ``regressor="spline"``: knots per regulator (>= 2), placed over the
        range of the regulator's design values in all training samples
        (targeted entries at T, e.g. 0 for knockouts). With ``degree=3``,
        4 knots give 5 basis functions per regulator: flexible enough for
        saturating and switch-like (Hill) responses. The fit's pass over the
        samples grows with the number of regressors (regulators x basis
        functions): about 6x a ridge fit at 2,000 genes with 300 regulators
        (``benchmarks/bench_spline.py``), fewer knots cost less.
    degree : int, default 3
        ``regressor="spline"``: polynomial degree of the basis (>= 1); each
        regulator gets ``n_knots + degree - 2`` basis functions.
    knots : {"uniform", "quantile"}, default "uniform"
        ``regressor="spline"``: knots evenly spaced between the smallest and
        the largest training value, or at its quantiles.
    max_iter : int, default 1000
        Iterations allowed for a non-linear steady state.
    tol : float, default 1e-9
        Relative convergence tolerance of a non-linear steady state.
    n_jobs : int, optional
        Parallel workers for the per-gene path (joblib; ``None``: 1).
    verbose : bool, default False
        Progress bars for long work.

    Attributes
    ----------
    genes_ : pandas.Index
        The genes (training ``var_names``).
    n_features_in_ : int
    feature_names_in_ : numpy.ndarray of str
        The genes, as scikit-learn names the input features.
    coef_ : scipy.sparse.csr_array or None
        (n_genes, n_genes) regulator x target coefficients; the stored entries
        are the fitted edges. ``None`` for non-linear regressors.
    iv_unidentified_ : pandas.DataFrame
        ``regressor="iv"`` only: the edges (``regulator``, ``target``) that
        the perturbation conditions do not identify (first-stage F < 10,
        ``causalcell.models._iv``). With ``iv_fallback="drop"`` they are
        left out of ``coef_``; with ``"ridge"`` their targets are in
        ``iv_fallback_genes_`` unless on a cycle of the network.
    iv_fallback_genes_ : pandas.Index
        ``regressor="iv"`` only: the genes fitted by the per-gene ridge fit
        instead of 2SLS (with ``iv_fallback="ridge"``, the targets of
        ``iv_unidentified_`` that are not on a cycle of the network; else
        empty).
    stderr_ : scipy.sparse.csr_array
        ``regressor="ols"`` and ``"iv"`` only: standard errors with the
        structure of ``coef_`` (OLS; for ``"iv"`` the 2SLS ones,
        ``sqrt(rss_ / dof_ * inv(Zhat.T @ Zhat)[r, r])`` with Zhat the
        first-stage fitted regulators, as statsmodels' ``IV2SLS``; NaN for
        ``iv_fallback_genes_``, whose ridge fit has none).
    rss_ : numpy.ndarray
        ``regressor="ols"`` and ``"iv"`` only: residual sum of squares per
        gene over its samples (for ``"iv"`` the structural residuals
        x_g - intercept - coef . z with the measured regulators z, not the
        first-stage fitted values; the ridge fit's for
        ``iv_fallback_genes_``).
    dof_ : numpy.ndarray
        ``regressor="ols"`` and ``"iv"`` only: residual degrees of freedom
        per gene, ``n_samples_ - n_regulators - 1``.
    spline_coef_ : scipy.sparse.csr_array
        ``regressor="spline"`` only: (n_regulators * n_basis, n_genes), the
        coefficient of basis function b of regulator j in gene g's model at
        row ``j * n_basis + b``.
    spline_regulators_ : pandas.Index
        ``regressor="spline"`` only: the regulators, in the order of the rows
        of ``spline_knots_``.
    spline_knots_ : numpy.ndarray
        ``regressor="spline"`` only: (n_regulators, n_knots) base knots of
        each regulator (the first and last bound its training range). The
        fit of gene g equals ``make_pipeline(SplineTransformer(knots=
        spline_knots_[R].T, degree=degree, extrapolation="linear",
        include_bias=False), Ridge(alpha_[g]))`` on g's samples, R its
        regulators.
    intercept_ : numpy.ndarray
    alpha_ : numpy.ndarray
        Ridge penalty used per gene (``regressor="iv"``: 0, the penalty of
        the ridge fallback for ``iv_fallback_genes_``).
    n_samples_ : numpy.ndarray
        Training samples used per gene (those not targeting it).
    control_mean_ : numpy.ndarray
        Mean control profile of the training data (NaN without controls).
    target_levels_ : pandas.DataFrame
        Mean observed level per training perturbation and target (used when
        a request gives no level), from
        ``causalcell.models._base.observed_target_levels``.
    network_ : networkx.DiGraph
        The fitted model as a weighted network.
    estimators_ : list or None
        Per-gene fitted estimators (non-linear regressors only).

    Examples
    --------
    >>> import causalcell as cc
    >>> from causalcell.models import ConditionalGRNRegressor
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> model = ConditionalGRNRegressor().fit(sim.adata, sim.network)
    >>> pred = model.predict(sim.truth.obs)
    >>> pred.shape == sim.truth.shape
    True
    """

    def __init__(
        self,
        regressor: str | Any = "ridge",
        *,
        alpha: float | Literal["gcv"] = 1.0,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        iv_fallback: Literal["ridge", "drop"] = "ridge",
        regulators: Sequence[str] | None = None,
        layer: str | None = None,
        n_knots: int = 4,
        degree: int = 3,
        knots: Literal["uniform", "quantile"] = "uniform",
        max_iter: int = 1000,
        tol: float = 1e-9,
        n_jobs: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.regressor = regressor
        self.alpha = alpha
        self.alphas = alphas
        self.iv_fallback = iv_fallback
        self.regulators = regulators
        self.layer = layer
        self.n_knots = n_knots
        self.degree = degree
        self.knots = knots
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.verbose = verbose

    # ================================================================== fit
    def fit(self, adata: AnnData, network: nx.DiGraph | None = None) -> ConditionalGRNRegressor:
        """Fit every gene on its regulators, leaving out the samples that target it.

        Parameters
        ----------
        adata
            Cells or pseudobulk rows following the data contract.
        network
            Regulator -> target network over gene symbols (e.g. from
            :func:`causalcell.graph.read_network`); self-loops are ignored.
            ``None``: every gene is regressed on all eligible regulators.

        Returns
        -------
        self

        Raises
        ------
        DataContractError
            ``adata`` breaks the contract.
        NetworkError
            ``network`` is not a DiGraph, shares no gene with ``var_names``,
            or has no edge between two measured genes.
        ParameterError
            An invalid parameter, or a fit too large for this machine.
        """
        kind = self._check_params()
        # The ridge / OLS pass over dense X: its work arrays' pages are first touched
        # on the other core while the obs are validated and the network is read.
        prepared = (_pass_buffers(adata, self.layer, network) if kind in ("ridge", "ols")
                    else None)
        # The ridge / OLS pass over the samples checks X's values itself.
        X, iv = training_data(adata, self.layer, scan_values=kind not in ("ridge", "ols"))
        genes = pd.Index(adata.var_names).astype(str)
        parents, pool = self._structure(genes, network)
        self._reset()
        lazy = is_dask_array(X)
        if lazy and kind not in ("ridge", "ols", "iv"):
            raise ParameterError(
                f"regressor={self.regressor!r} needs X in memory; X is out of core (a Dask "
                f"array or a backed file). Use regressor='ridge', 'ols' or 'iv' (exact, one "
                f"pass over the blocks), or {LOAD_IN_MEMORY}."
            )
        samples = None
        if kind == "iv":
            samples = self._fit_iv(X, iv, parents, pool, genes, control_weights(adata, iv))
        elif kind in ("ridge", "ols"):
            samples = self._fit_linear(X, iv, parents, pool, kind, genes,
                                       control_weights(adata, iv), prepared)
        elif kind == "spline":
            self._fit_spline(X, iv, parents, pool, genes)
        else:
            self._fit_generic(X, iv, parents, pool, kind)
        n_lost = int(np.sum(self.n_samples_ == 0))
        if n_lost:
            lost = genes[self.n_samples_ == 0][:5].tolist()
            warnings.warn(
                f"{n_lost} gene(s) are targeted in every training sample (e.g. {lost}): "
                f"their model could not be fitted (coefficients 0, intercept 0). Add "
                f"control samples.",
                CausalCellWarning,
                stacklevel=2,
            )
        self._set_genes(genes)
        self._summarize_training(adata, X, iv, samples)
        return self

    def _fit_linear(
        self, X: Any, iv: Any, parents: sp.csc_array | None, pool: np.ndarray | None,
        kind: str, genes: pd.Index, control: np.ndarray | None,
        prepared: PassBuffers | None = None,
    ) -> Any:
        """The batched exact ridge / OLS fit; returns the pass over a Dask X (else None).
        ``prepared``: the pass's work arrays (see :func:`_pass_buffers`)."""
        fit = self._linear_fit(X, iv, parents, pool, kind, genes, control, prepared=prepared)
        self.coef_ = fit.coef
        self.intercept_ = fit.intercept
        self.alpha_ = fit.alpha
        self.n_samples_ = fit.n_samples
        if kind == "ols":
            self.stderr_ = fit.stderr
            self.dof_ = fit.dof
            self.rss_ = fit.rss
        self.estimators_ = None
        self._regulators = None
        return fit.samples

    def _linear_fit(
        self, X: Any, iv: Any, parents: sp.csc_array | None, pool: np.ndarray | None,
        kind: str, genes: pd.Index, control: np.ndarray | None,
        responses: np.ndarray | None = None, samples: Any = None,
        prepared: PassBuffers | None = None,
    ) -> Any:
        """:func:`fit_linear` with this model's penalty (``alpha`` or ``alpha="gcv"``);
        ``samples``: reuse that pass over the samples (``X`` is then its design)."""
        gcv = isinstance(self.alpha, str)
        return fit_linear(
            X,
            iv,
            parents=parents,
            pool=pool,
            responses=responses,
            method=kind,
            alpha=0.0 if gcv or kind == "ols" else float(self.alpha),
            alphas=np.asarray(self.alphas, dtype=float) if gcv and kind == "ridge" else None,
            inference=kind == "ols",
            row_weights=control,
            samples=samples,
            verbose=self.verbose,
            names=genes,
            what=expression_name(self.layer),
            prepared=prepared,
        )

    def _fit_iv(
        self, X: Any, iv: Any, parents: sp.csc_array | None, pool: np.ndarray | None,
        genes: pd.Index, control: np.ndarray,
    ) -> Any:
        """Two-stage least squares, the perturbation conditions as instruments; genes
        with edges the conditions do not identify get the per-gene ridge fit
        (``iv_fallback="ridge"``) or lose those edges (``"drop"``), with a warning.
        Returns the pass over the samples (its control sums)."""
        fit, unidentified = fit_iv(X, iv, parents=parents, pool=pool, names=genes,
                                   verbose=self.verbose, row_weights=control)
        coef, intercept, alpha = fit.coef, fit.intercept, fit.alpha
        stderr, rss, dof = fit.stderr, fit.rss, fit.dof
        names = np.asarray(genes, dtype=object)
        self.iv_unidentified_ = pd.DataFrame({"regulator": names[unidentified[:, 0]],
                                              "target": names[unidentified[:, 1]]})
        targets = np.unique(unidentified[:, 1])
        fallback = np.zeros(0, dtype=np.int64)
        if self.iv_fallback == "ridge":
            # The per-gene fit is consistent only off loops: a gene on a loop of the
            # network keeps its unidentified edges left out.
            fallback = targets[~_on_a_cycle(parents, pool, len(genes))[targets]]
        parts = []
        if fallback.size:
            coef, intercept, alpha, rss, stderr, dof = self._iv_fallback_fit(
                parents, pool, genes, fit, fallback)
            parts.append(
                f"The {fallback.size} gene(s) with such edges off the network's loops are "
                f"fitted instead by the per-gene ridge fit on all their regulators "
                f"(iv_fallback='ridge', alpha={self.alpha!r}; listed in iv_fallback_genes_): "
                f"consistent for an acyclic network, biased if a gene's regulators depend on "
                f"its own noise (a feedback loop the network misses)."
            )
        n_left = targets.size - fallback.size
        if n_left:
            why = ("they lie on a loop of the network, where the per-gene fit is biased"
                   if self.iv_fallback == "ridge" else "iv_fallback='drop'")
            parts.append(
                f"The unidentified edges into {n_left} gene(s) are left out of the fit ({why}): "
                f"the intercept absorbs a regulator that the conditions do not move, but "
                f"perturbing that regulator is then predicted to have no effect through them."
            )
        parts.append("Perturb the regulators for the feedback-consistent fit.")
        what = " ".join(parts)
        self.iv_fallback_genes_ = pd.Index(names[fallback], dtype=object)
        if len(unidentified):
            warnings.warn(
                f"{unidentified_message(unidentified, genes)} (listed in iv_unidentified_). "
                f"{what}",
                CausalCellWarning,
                stacklevel=3,
            )
        self.coef_ = coef
        self.intercept_ = intercept
        self.alpha_ = alpha
        self.n_samples_ = fit.n_samples
        self.stderr_ = stderr
        self.dof_ = dof
        self.rss_ = rss
        self.estimators_ = None
        self._regulators = None
        return fit.samples

    def _iv_fallback_fit(
        self, parents: sp.csc_array | None, pool: np.ndarray | None, genes: pd.Index,
        fit: Any, fallback: np.ndarray,
    ) -> tuple[sp.csr_array, np.ndarray, np.ndarray, np.ndarray, sp.csr_array, np.ndarray]:
        """The IV fit with the columns of ``fallback`` genes replaced by their ridge fit:
        coefficients, intercepts, penalties, residual sums of squares, standard
        errors (NaN for the ridge-fitted genes' edges: the ridge fit has none) and
        residual degrees of freedom.

        The batched solver fits only those genes (in network mode the parent
        matrix is restricted to their columns, in pool mode ``responses``
        selects them) from the IV fit's own pass over the samples, whose
        regulators include theirs: X is not read again. Identified genes keep
        their 2SLS fit.
        """
        p = len(genes)
        is_fallback = np.zeros(p, dtype=bool)
        is_fallback[fallback] = True
        if parents is not None:
            P = sp.coo_array(parents)
            keep = is_fallback[P.col]
            parents = sp.csc_array((P.data[keep], (P.row[keep], P.col[keep])), shape=(p, p))
        ridge = self._linear_fit(fit.reads, None, parents, pool, "ridge", genes, None,
                                 responses=fallback, samples=fit.samples)
        C, R = sp.coo_array(fit.coef), sp.coo_array(ridge.coef)
        kept, new = ~is_fallback[C.col], is_fallback[R.col]
        rows = np.concatenate([C.row[kept], R.row[new]])
        cols = np.concatenate([C.col[kept], R.col[new]])
        coef = sp.csr_array((np.concatenate([C.data[kept], R.data[new]]), (rows, cols)),
                            shape=(p, p))
        kept_se = np.asarray(sp.csr_array(fit.stderr)[C.row[kept], C.col[kept]],
                             dtype=float).ravel()
        stderr = sp.csr_array((np.r_[kept_se, np.full(int(new.sum()), np.nan)], (rows, cols)),
                              shape=(p, p))
        dof = fit.n_samples - np.diff(sp.csc_array(coef).indptr) - 1
        return (coef, np.where(is_fallback, ridge.intercept, fit.intercept),
                np.where(is_fallback, ridge.alpha, fit.alpha),
                np.where(is_fallback, ridge.rss, fit.rss), stderr, dof)

    def _fit_spline(
        self, X: Any, iv: Any, parents: sp.csc_array | None, pool: np.ndarray | None,
        genes: pd.Index,
    ) -> None:
        """The additive spline fit: the ridge solver on every regulator's basis."""
        gcv = isinstance(self.alpha, str)
        fit = fit_spline(
            X, iv, parents=parents, pool=pool, n_knots=int(self.n_knots),
            degree=int(self.degree), knots=self.knots,
            alpha=1.0 if gcv else float(self.alpha),
            alphas=np.asarray(self.alphas, dtype=float) if gcv else None,
            verbose=self.verbose, names=genes,
        )
        self._set_spline(fit, genes)
        self.intercept_ = fit.intercept
        self.alpha_ = fit.alpha
        self.n_samples_ = fit.n_samples
        self.estimators_ = None

    def _set_spline(self, fit: SplineFit, genes: pd.Index) -> None:
        self._spline = fit
        self.coef_ = None
        self.spline_coef_ = fit.coef
        self.spline_regulators_ = pd.Index(genes[fit.regulators], dtype=str)
        self.spline_knots_ = fit.basis.knots
        E = sp.csc_array(fit.edges)
        self._regulators = [E.indices[E.indptr[g] : E.indptr[g + 1]] for g in range(len(genes))]

    def _summarize_training(self, adata: AnnData, X: Any, iv: Any, samples: Any) -> None:
        """The training control mean and the mean level of each training target."""
        p = len(self.genes_)
        if samples is not None:
            # The pass over the samples already summed the controls (and, over Dask
            # blocks, read the targeted entries): X is not read a second time.
            control = samples.weighted_sum
            measured = X if samples.gathered is None else samples.gathered
        else:
            control, measured = weighted_column_sums(X, control_weights(adata, iv)), X
        self.control_mean_ = control if iv.is_control.any() else np.full(p, np.nan)
        self.target_levels_ = observed_target_levels(measured, iv)

    def _reset(self) -> None:
        for name in ("stderr_", "dof_", "rss_", "spline_coef_", "spline_regulators_",
                     "spline_knots_", "iv_unidentified_", "iv_fallback_genes_"):
            if hasattr(self, name):
                delattr(self, name)
        self._steady = None
        self._network = None
        self._spline = None

    def _check_params(self) -> str:
        reg = self.regressor
        if isinstance(reg, str):
            if reg not in _STRING_REGRESSORS:
                raise ParameterError(
                    f"regressor={reg!r} is not known; use 'ridge', 'ols', 'iv', 'lasso', 'spline' "
                    f"or a scikit-learn regressor instance (e.g. "
                    f"sklearn.linear_model.ElasticNet())."
                )
            kind = reg
        elif hasattr(reg, "fit") and hasattr(reg, "predict"):
            kind = "estimator"
        else:
            raise ParameterError(
                f"regressor must be 'ridge', 'ols', 'iv', 'lasso', 'spline' or a scikit-learn "
                f"regressor (an object with fit and predict); got {type(reg).__name__}."
            )
        alpha = self.alpha
        if isinstance(alpha, str):
            if alpha != "gcv":
                raise ParameterError(f"alpha must be a number >= 0 or 'gcv'; got {alpha!r}.")
            if kind == "lasso":
                raise ParameterError(
                    "alpha='gcv' is for ridge; give regressor='lasso' a number (e.g. 0.01), or "
                    "pass sklearn.linear_model.LassoCV() as the regressor."
                )
            alphas = np.asarray(self.alphas, dtype=float).ravel()
            if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas < 0):
                raise ParameterError(f"alphas must be finite numbers >= 0; got {self.alphas!r}.")
        elif not is_real(alpha) or alpha < 0:
            raise ParameterError(f"alpha must be a number >= 0 or 'gcv'; got {alpha!r}.")
        elif kind == "lasso" and alpha <= 0:
            raise ParameterError("regressor='lasso' needs alpha > 0 (e.g. 0.01).")
        if self.iv_fallback not in _IV_FALLBACKS:
            raise ParameterError(
                f"iv_fallback must be one of {list(_IV_FALLBACKS)} (what regressor='iv' does "
                f"with a gene whose regulators the conditions do not identify); got "
                f"{self.iv_fallback!r}."
            )
        if kind == "spline":
            if not is_int(self.n_knots) or self.n_knots < 2:
                raise ParameterError(
                    f"n_knots must be an integer >= 2 (knots per regulator of "
                    f"regressor='spline'); got {self.n_knots!r}."
                )
            if not is_int(self.degree) or self.degree < 1:
                raise ParameterError(
                    f"degree must be an integer >= 1 (polynomial degree of the spline basis; "
                    f"3 is cubic); got {self.degree!r}."
                )
            if self.knots not in KNOT_PLACEMENTS:
                raise ParameterError(
                    f"knots must be one of {list(KNOT_PLACEMENTS)} (where the spline knots of "
                    f"each regulator are placed); got {self.knots!r}."
                )
        if not is_int(self.max_iter) or self.max_iter < 1:
            raise ParameterError(f"max_iter must be an integer >= 1; got {self.max_iter!r}.")
        if not is_real(self.tol) or not self.tol > 0:
            raise ParameterError(f"tol must be a number > 0; got {self.tol!r}.")
        check_layer(self.layer, type(self).__name__)
        regs = self.regulators
        if regs is not None and not isinstance(regs, str) and not (
            isinstance(regs, Sequence | pd.Index | np.ndarray)
            and all(isinstance(r, str) for r in regs)
        ):
            raise ParameterError(
                f"regulators must be a list of gene symbols (str) or None; got {regs!r}."
            )
        if self.n_jobs is not None:
            check_n_jobs(self.n_jobs)
        if not isinstance(self.verbose, bool | np.bool_):
            raise ParameterError(f"verbose must be True or False; got {self.verbose!r}.")
        return kind

    def _structure(
        self, genes: pd.Index, network: nx.DiGraph | None
    ) -> tuple[sp.csc_array | None, np.ndarray | None]:
        """Regulators of every gene: parents (network mode) or a pool (list mode)."""
        p = len(genes)
        allowed = None
        if self.regulators is not None:
            names = [self.regulators] if isinstance(self.regulators, str) else list(self.regulators)
            idx = genes.get_indexer(pd.Index(names).astype(str))
            missing = int(np.sum(idx < 0))
            if missing == len(names):
                raise ParameterError(
                    f"None of the {len(names)} regulators= names is a measured gene (e.g. "
                    f"{names[:3]}); they must match var_names."
                )
            if missing:
                warnings.warn(
                    f"{missing} of the {len(names)} regulators are not measured genes and are "
                    f"ignored.",
                    CausalCellWarning,
                    stacklevel=3,
                )
            allowed = np.unique(idx[idx >= 0])
        if network is None:
            return None, (np.arange(p) if allowed is None else allowed)
        shared = check_network_genes(network, genes, "network")
        A = to_adjacency(network, genes, weight=None).tocoo()  # the regulators, not weights
        keep = A.row != A.col  # self-loops: a gene is not its own regulator
        if allowed is not None:
            ok = np.zeros(p, dtype=bool)
            ok[allowed] = True
            keep &= ok[A.row]
        if not keep.any():
            raise NetworkError(
                f"No edge of the network joins two different measured genes"
                f"{' among the given regulators' if allowed is not None else ''} "
                f"({shared} of its nodes are measured). Check the network's gene names."
            )
        parents = sp.csc_array(
            (np.ones(int(keep.sum()), dtype=bool), (A.row[keep], A.col[keep])), shape=(p, p)
        )
        return parents, None

    # ------------------------------------------------------------- generic path
    def _fit_generic(
        self, X: Any, iv: Any, parents: sp.csc_array | None, pool: np.ndarray | None, kind: str
    ) -> None:
        from sklearn.linear_model import Lasso

        p = X.shape[1]
        estimator = Lasso(alpha=float(self.alpha)) if kind == "lasso" else self.regressor
        fit = fit_per_gene(Design(X, iv), regulator_lists(parents, pool, p), estimator,
                           n_jobs=self.n_jobs, verbose=self.verbose)
        self.n_samples_ = fit.n_samples
        self.alpha_ = np.full(p, float(self.alpha) if kind == "lasso" else np.nan)
        self._regulators = fit.regulators
        linear = fit.linear()
        if linear is not None:
            self.coef_, self.intercept_ = linear
            self.estimators_ = None
        else:
            self.coef_ = None
            self.intercept_ = fit.intercept
            self.estimators_ = fit.estimators
            self._generic = fit

    # ================================================================== predict
    def predict(
        self,
        perturbations: AnnData | pd.DataFrame,
        *,
        steps: int | Literal["steady_state"] = "steady_state",
        start: np.ndarray | AnnData | None = None,
        method: Literal["auto", "closed_form", "iteration"] = "auto",
    ) -> AnnData:
        """Predict the expression profile of each requested perturbation.

        Every targeted gene is clamped at its level T (knockout: 0; missing:
        the mean level observed in training for that perturbation) and the
        change from the start state propagates through the intervention
        graph (the targets lose their regulators):
        ``x_g = start_g + f_g(x) - f_g(start)`` for every other gene. A
        control row returns its start state.

        Parameters
        ----------
        perturbations
            An AnnData (its obs is used) or a DataFrame with the obs contract
            columns (``expression_level_after_perturbation`` optional).
        steps
            ``"steady_state"`` (closed form for linear models; iterated to
            convergence otherwise) or a number of propagation steps (0: just
            the clamp).
        method
            How the steady state is found: ``"auto"`` (closed form for linear
            models, fixed-point iteration for non-linear ones),
            ``"closed_form"`` (linear models only: a spline or other
            non-linear model has none, and is refused) or ``"iteration"``
            (``x <- start + f(x) - f(start)`` until the largest change is at
            most ``tol * (1 + max |x|)``, at most ``max_iter`` times; for a
            linear model it converges to the closed form when the regulation
            is stable).
        start
            ``None``: the training control mean. An array of shape
            ``(n_genes,)`` (one start state) or ``(n_requests, n_genes)``
            (one per request row, e.g. the matching control cell). An
            AnnData of control cells (genes matched by name): each request
            is predicted from every cell and the predictions are averaged
            (for linear models this equals starting from the cells' mean,
            by linearity, and is computed that way).

        Returns
        -------
        anndata.AnnData
            The request's obs (rows aligned with it) and the model's genes.

        Raises
        ------
        NotFittedError
            ``fit`` was not called.
        PredictionError
            A targeted gene unknown to the model, a level that is missing
            and was not observed in training, unstable regulation (steady
            state), no convergence (naming the feedback loop whose slopes
            make the iteration diverge, when that is the cause), or
            ``method="closed_form"`` for a non-linear model.
        ParameterError
            Invalid ``steps``, ``start`` or ``method``.
        """
        self._check_fitted()
        if not (
            steps == "steady_state"
            or (is_int(steps) and steps >= 0)
        ):
            raise ParameterError(f"steps must be 'steady_state' or an integer >= 0; got {steps!r}.")
        self._check_method(method, steps)
        obs, iv = prediction_request(perturbations, self.genes_)
        iv = iv.with_levels(resolve_levels(iv, self.target_levels_))
        n, p = len(obs), len(self.genes_)
        labels = iv.conditions[PERTURBATION].to_numpy()[iv.codes]
        if isinstance(start, AnnData):
            cells = self._cell_states(start)
            if self.coef_ is not None:
                start_state = np.broadcast_to(cells.mean(axis=0), (n, p)).copy()
            else:
                return make_prediction(
                    obs, self.genes_, self._average_over_cells(iv, cells, steps, labels, method)
                )
        else:
            start_state = self._start_state(start, n)
        values = self._propagate(iv, start_state, steps, labels, method)
        return make_prediction(obs, self.genes_, values)

    def _check_method(self, method: str, steps: Any) -> None:
        if method not in _STEADY_STATE_METHODS:
            raise ParameterError(
                f"method must be one of {list(_STEADY_STATE_METHODS)} (how the steady state is "
                f"found); got {method!r}."
            )
        if method == "closed_form" and self.coef_ is None:
            what = "a spline" if self._is_spline() else "a non-linear"
            raise PredictionError(
                f"This model ({what} regressor, {self.regressor!r}) has no closed-form steady "
                f"state: its regulation is non-linear, so the steady state is found by "
                f"fixed-point iteration. Use method='auto' or 'iteration' (converges to within "
                f"tol={self.tol:g}, at most max_iter={self.max_iter} steps), or a number of "
                f"steps (steps=k); a linear regressor ('ridge', 'ols') has the closed form."
            )
        if method == "closed_form" and steps != "steady_state":
            raise ParameterError(
                f"method='closed_form' computes the steady state; it does not apply to "
                f"steps={steps!r}. Use steps='steady_state', or method='auto'."
            )

    def _is_spline(self) -> bool:
        return getattr(self, "_spline", None) is not None

    def _propagate(
        self, iv: Any, start: np.ndarray, steps: Any, labels: Any, method: str = "auto"
    ) -> np.ndarray:
        """Clamp and propagate with the fitted regulation (linear, spline or per-gene)."""
        if self.coef_ is None:
            regulation = self._spline.predict if self._is_spline() else self._generic.predict
            try:
                return propagate(regulation, iv, start, steps, labels=labels,
                                 max_iter=self.max_iter, tol=self.tol)
            except PredictionError:
                if self._is_spline():
                    self._diagnose_divergence(iv, start, labels)
                raise
        if method == "iteration" and steps == "steady_state":
            W, b = self.coef_, self.intercept_
            return propagate_generic(lambda x: np.asarray(x @ W) + b, iv, start, steps,
                                     max_iter=self.max_iter, tol=self.tol)
        regulation = self.coef_
        if steps == "steady_state" and getattr(self, "_steady", None) is None:
            self._steady = SteadyState(self.coef_, self.genes_)  # cached factorization
        return propagate(regulation, iv, start, steps, steady=getattr(self, "_steady", None),
                         labels=labels, max_iter=self.max_iter, tol=self.tol)

    def _diagnose_divergence(self, iv: Any, start: np.ndarray, labels: Any) -> None:
        """Name the feedback loop that keeps the spline iteration from converging.

        Runs the iteration ``max_iter`` steps, takes the first request that
        still moves, and checks the spectral radius of the fitted curves'
        slopes at its last state on that request's intervention graph (a
        fixed point whose slopes have spectral radius >= 1 repels the
        iteration). Raises the :class:`SteadyState` stability error when
        that is the cause; returns otherwise (the caller re-raises).
        """
        x = propagate(self._spline.predict, iv, start, self.max_iter)
        nxt = propagate(self._spline.predict, iv, start, self.max_iter + 1)
        moving = np.flatnonzero(np.max(np.abs(nxt - x), axis=1)
                                > self.tol * (1.0 + np.max(np.abs(x), axis=1)))
        if moving.size == 0:
            return
        i = int(moving[0])
        targets = iv.mask.indices[iv.mask.indptr[i] : iv.mask.indptr[i + 1]]
        SteadyState(self._spline.slopes(x[i]), self.genes_).check(
            targets, repr(str(labels[i])) if labels is not None else "")

    def _start_state(self, start: np.ndarray | None, n: int) -> np.ndarray:
        p = len(self.genes_)
        if start is None:
            if np.isnan(self.control_mean_).any():
                raise PredictionError(
                    "The training data had no control sample, so there is no default start "
                    "state: pass start= (an array of n_genes values, or one row per request)."
                )
            return np.tile(self.control_mean_, (n, 1))
        try:
            arr = np.asarray(start, dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError(
                f"start={start!r} is not a start state: give None, an array of n_genes numbers "
                f"(one state, genes in the model's order), one row per request, or an AnnData "
                f"of control cells."
            ) from None
        if arr.shape == (p,):
            arr = np.tile(arr, (n, 1))
        elif arr.shape != (n, p):
            raise ParameterError(
                f"start must have shape ({p},) or ({n}, {p}) (genes in the model's order, "
                f"genes_); got {arr.shape}."
            )
        else:
            arr = arr.copy()
        if not np.isfinite(arr).all():
            raise ParameterError("start contains NaN or infinite values.")
        return arr

    def _cell_states(self, cells: AnnData) -> np.ndarray:
        idx = pd.Index(cells.var_names).astype(str).get_indexer(self.genes_)
        if (idx < 0).any():
            missing = self.genes_[idx < 0][:5].tolist()
            raise ParameterError(
                f"The start cells lack {int((idx < 0).sum())} of the model's genes (e.g. "
                f"{missing}); give cells measured on the model's genes (genes_)."
            )
        X = expression_matrix(cells, self.layer, what="the start cells")
        X = compute_if_small(X[:, idx], "predict(start=cells)")
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] == 0 or not np.isfinite(X).all():
            raise ParameterError("start cells must be a non-empty AnnData of finite values.")
        return X

    def _average_over_cells(
        self, iv: Any, cells: np.ndarray, steps: Any, labels: Any, method: str = "auto"
    ) -> np.ndarray:
        """Non-linear models: predict every request from every cell, then average."""
        n, p = iv.shape
        c = cells.shape[0]
        out = np.zeros((n, p))
        rows_per = max(1, _MAX_CELL_STARTS // max(1, c * p))
        for s in range(0, n, rows_per):
            rows = np.arange(s, min(s + rows_per, n))
            rep = np.repeat(rows, c)
            start = np.tile(cells, (len(rows), 1))
            pred = self._propagate(iv.take(rep), start, steps, labels[rep], method)
            out[rows] = pred.reshape(len(rows), c, p).mean(axis=1)
        clamp(out, iv)  # averaging can move a clamped value by rounding: targets are exactly T
        return out

    # ================================================================== outputs
    @property
    def network_(self) -> nx.DiGraph:
        """The fitted model as a DiGraph (edge ``weight``: the coefficient).

        Linear models: one edge per nonzero coefficient. Non-linear
        regressors: one edge per regulator input, without weight.
        """
        self._check_fitted()
        cached = getattr(self, "_network", None)
        if cached is not None:
            return cached
        G = nx.DiGraph()
        names = np.asarray(self.genes_, dtype=object)
        G.add_nodes_from(names.tolist())
        if self.coef_ is not None:
            C = self.coef_.tocoo()
            nz = C.data != 0
            G.add_weighted_edges_from(
                zip(
                    names[C.row[nz]].tolist(),
                    names[C.col[nz]].tolist(),
                    C.data[nz].tolist(),
                    strict=True,
                )
            )
        else:
            G.add_edges_from(
                (names[r], names[g]) for g, regs in enumerate(self._regulators) for r in regs
            )
        self._network = G
        return G

    def coef_table(self) -> pd.DataFrame:
        """One row per fitted edge: regulator, target, coef (and OLS inference).

        For ``regressor="ols"`` and ``"iv"`` the columns ``se``, ``t``,
        ``p_value`` (two-sided t test with the gene's residual degrees of
        freedom) and ``q_value`` (Benjamini-Hochberg over all edges) are
        added; they equal statsmodels' ``OLS`` (``IV2SLS`` for ``"iv"``)
        results for each gene's regression (NaN for the ridge-refitted
        ``iv_fallback_genes_``).

        Returns
        -------
        pandas.DataFrame
        """
        self._check_fitted()
        if self.coef_ is None:
            raise ParameterError(
                "coef_table() needs a linear model; this model uses a non-linear regressor"
                + (": its fitted curves are in response_curves()." if self._is_spline() else ".")
            )
        C = self.coef_.tocoo()
        order = np.lexsort((C.row, C.col))
        names = np.asarray(self.genes_, dtype=object)
        table = pd.DataFrame(
            {
                "regulator": names[C.row[order]],
                "target": names[C.col[order]],
                "coef": C.data[order],
            }
        )
        if hasattr(self, "stderr_"):
            se = self.stderr_.tocoo()
            lookup = pd.Series(se.data, index=pd.MultiIndex.from_arrays([se.row, se.col]))
            se_val = lookup.reindex(
                pd.MultiIndex.from_arrays([C.row[order], C.col[order]])
            ).to_numpy()
            dof = self.dof_[C.col[order]].astype(float)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = table["coef"].to_numpy() / se_val
            pval = 2.0 * stats.t.sf(np.abs(t), dof)
            table["se"] = se_val
            table["t"] = t
            table["p_value"] = pval
            table["q_value"] = bh_qvalues(pval)  # one family: every edge
        return table

    def response_curves(
        self,
        regulators: Sequence[str] | None = None,
        targets: Sequence[str] | None = None,
        *,
        levels: Sequence[float] | np.ndarray | None = None,
        n_levels: int = 50,
    ) -> pd.DataFrame:
        """The fitted response of every target to each of its regulators, edge by edge.

        For an edge r -> g, the change of g's fitted value when r moves from
        its control level to ``level`` while its other regulators stay put:
        ``c_rg(level) - c_rg(control level)``. Spline models give their
        fitted curves (straight lines outside ``in_range``, the linear
        extrapolation); linear models give ``coef * (level - control
        level)``, for comparison.

        Parameters
        ----------
        regulators, targets
            Restrict to edges from these regulators / into these targets
            (gene names; default: every fitted edge).
        levels
            The regulator levels to evaluate (log-normalized scale). Default:
            ``n_levels`` points from 0 to the regulator's largest training
            value (spline) or to twice its control level (linear).
        n_levels
            Points of the default grid (>= 2).

        Returns
        -------
        pandas.DataFrame
            One row per edge and level: ``regulator``, ``target``, ``level``,
            ``response``, ``control_level`` (the regulator's level the
            response is measured from) and ``in_range`` (the level lies in
            the regulator's training range; always True for linear models,
            which have one slope everywhere).

        Raises
        ------
        NotFittedError
        ParameterError
            A model with a scikit-learn regressor (no curve to read), no
            control samples in training (no reference level), names that are
            not fitted genes, or an invalid grid.
        """
        self._check_fitted()
        if self.coef_ is None and not self._is_spline():
            raise ParameterError(
                "response_curves() reads the fitted curves of a linear or spline model; this "
                f"model uses a scikit-learn regressor ({type(self.regressor).__name__})."
            )
        if np.isnan(self.control_mean_).any():
            raise ParameterError(
                "response_curves() measures each response from the regulator's control level, "
                "and the training data had no control sample."
            )
        if levels is None and (not is_int(n_levels) or n_levels < 2):
            raise ParameterError(f"n_levels must be an integer >= 2; got {n_levels!r}.")
        if levels is not None:
            grid = np.asarray(levels, dtype=float).ravel()
            if grid.size == 0 or not np.isfinite(grid).all():
                raise ParameterError("levels must be a non-empty sequence of finite numbers.")
        edges = sp.coo_array(self._spline.edges if self._is_spline() else self.coef_ != 0)
        keep = np.ones(edges.nnz, dtype=bool)
        for names, index, what in ((regulators, edges.row, "regulators"),
                                   (targets, edges.col, "targets")):
            if names is None:
                continue
            names = [names] if isinstance(names, str) else list(names)
            idx = self.genes_.get_indexer(pd.Index(names).astype(str))
            if (idx < 0).any():
                missing = [n for n, i in zip(names, idx, strict=True) if i < 0][:5]
                raise ParameterError(f"{what}= names genes the model was not fitted on: "
                                     f"{missing}.")
            keep &= np.isin(index, idx)
        reg, tgt = edges.row[keep].astype(np.int64), edges.col[keep].astype(np.int64)
        order = np.lexsort((tgt, reg))
        reg, tgt = reg[order], tgt[order]
        reference = self.control_mean_[reg]
        if self._is_spline():
            fit = self._spline
            position = np.full(len(self.genes_), -1, dtype=np.int64)
            position[fit.regulators] = np.arange(len(fit.regulators))
            low = fit.basis.low[position[reg]]
            high = fit.basis.high[position[reg]]
            top = high
        else:
            low, high = np.full(len(reg), -np.inf), np.full(len(reg), np.inf)
            top = 2.0 * reference
        if levels is None:
            grid2 = np.linspace(np.zeros(len(reg)), top, n_levels, axis=1)
        else:
            grid2 = np.broadcast_to(grid, (len(reg), grid.size))
        if self._is_spline():
            response = self._spline.curves(reg, tgt, grid2, reference)
        else:
            slope = np.asarray(sp.csr_array(self.coef_)[reg, tgt]).ravel()
            response = slope[:, None] * (grid2 - reference[:, None])
        L = grid2.shape[1]
        names = np.asarray(self.genes_, dtype=object)
        return pd.DataFrame({
            "regulator": np.repeat(names[reg], L),
            "target": np.repeat(names[tgt], L),
            "level": grid2.ravel(),
            "response": response.ravel(),
            "control_level": np.repeat(reference, L),
            "in_range": ((grid2 >= low[:, None]) & (grid2 <= high[:, None])).ravel(),
        })

    # ================================================================== persistence
    def save(self, path: str | Path) -> Path:
        """Save the fitted model as ``.npz`` + JSON (no pickle; loading runs no code).

        Returns
        -------
        pathlib.Path
            The file written (``.npz`` appended when missing).

        Raises
        ------
        NotFittedError
        ParameterError
            Models with a non-linear scikit-learn regressor: those cannot be
            stored without pickle.
        """
        self._check_fitted()
        spline = self._is_spline()
        if self.coef_ is None and not spline:
            raise ParameterError(
                f"A model with a non-linear regressor ({type(self.regressor).__name__}) "
                f"cannot be saved safely (it would need pickle, which runs code when "
                f"loaded). Refit it from the data instead, or use a linear or spline regressor."
            )
        p = len(self.genes_)
        C = sp.csr_array((p, p)) if spline else sp.csr_array(self.coef_)
        arrays = {
            "genes": np.asarray(self.genes_, dtype=str),
            "coef_data": C.data,
            "coef_indices": C.indices,
            "coef_indptr": C.indptr,
            "intercept": self.intercept_,
            "alpha": self.alpha_,
            "n_samples": self.n_samples_,
            "control_mean": self.control_mean_,
            **levels_to_arrays(self.target_levels_, CONDITIONAL_LEVELS_N),
        }
        inference = hasattr(self, "stderr_")
        if inference:
            S = sp.csr_array(self.stderr_)
            arrays.update(
                se_data=S.data,
                se_indices=S.indices,
                se_indptr=S.indptr,
                dof=self.dof_,
                rss=self.rss_,
            )
        iv = hasattr(self, "iv_unidentified_")
        if iv:
            # What the IV fit could not identify, and the genes it refitted by ridge.
            arrays.update(
                iv_unidentified_regulator=np.asarray(self.iv_unidentified_["regulator"],
                                                     dtype=str),
                iv_unidentified_target=np.asarray(self.iv_unidentified_["target"], dtype=str),
                iv_fallback_genes=np.asarray(self.iv_fallback_genes_, dtype=str),
            )
        if spline:
            S = sp.csr_array(self._spline.coef)
            arrays.update(
                spline_data=S.data,
                spline_indices=S.indices,
                spline_indptr=S.indptr,
                spline_knots=self._spline.basis.knots,
                spline_regulators=self._spline.regulators,
            )
        meta = {
            "inference": inference,
            "iv": iv,
            "spline": spline,
            "regressor": self.regressor
            if isinstance(self.regressor, str)
            else repr(self.regressor),
        }
        return save_arrays(path, self, arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> ConditionalGRNRegressor:
        """Load a model written by :meth:`save` (never executes code).

        Raises
        ------
        DataFileError
            Missing, truncated or corrupt file, another class or format version.
        """
        arrays, header = load_arrays(path, cls.__name__)
        model = model_from_header(cls, header, path, convert={"alphas": tuple})
        spec = {
            "genes": ("U", ("genes",)),
            "coef_data": ("fiu", ("edges",)),
            "coef_indices": ("iu", ("edges",)),
            "coef_indptr": ("iu", ("genes+1",)),
            **{name: ("fiu", ("genes",)) for name in ("intercept", "alpha", "control_mean")},
            "n_samples": ("iu", ("genes",)),
            **level_arrays_spec(CONDITIONAL_LEVELS_N),
        }
        inference = header["meta"].get("inference")
        if inference:
            spec.update({
                "se_data": ("fiu", ("se",)),
                "se_indices": ("iu", ("se",)),
                "se_indptr": ("iu", ("genes+1",)),
                "dof": ("iu", ("genes",)),
                "rss": ("fiu", ("genes",)),
            })
        # Files written before the IV fit's attributes were saved have no "iv" entry.
        iv = bool(header["meta"].get("iv"))
        if iv:
            spec.update({
                "iv_unidentified_regulator": ("U", ("unidentified",)),
                "iv_unidentified_target": ("U", ("unidentified",)),
                "iv_fallback_genes": ("U", ("fallback",)),
            })
        spline = bool(header["meta"].get("spline"))
        if spline:
            spec.update({
                "spline_data": ("fiu", ("spline",)),
                "spline_indices": ("iu", ("spline",)),
                "spline_indptr": ("iu", ("features+1",)),
                "spline_knots": ("fiu", ("regulators", "knots")),
                "spline_regulators": ("iu", ("regulators",)),
            })
        p = len(arrays["genes"]) if "genes" in arrays else 0
        check_arrays(arrays, spec, path, {"genes": p, "genes+1": p + 1})
        genes = pd.Index(check_genes(arrays["genes"], path).astype(str))
        try:
            coef = sp.csr_array(
                (arrays["coef_data"].astype(float), arrays["coef_indices"], arrays["coef_indptr"]),
                shape=(p, p),
            )
            coef.check_format(full_check=True)
            model._set_genes(genes)
            model.coef_ = coef
            model.intercept_ = arrays["intercept"].astype(float)
            model.alpha_ = arrays["alpha"].astype(float)
            model.n_samples_ = arrays["n_samples"].astype(np.int64)
            model.control_mean_ = arrays["control_mean"].astype(float)
            model.target_levels_ = levels_from_arrays(arrays, CONDITIONAL_LEVELS_N)
            if inference:
                model.stderr_ = sp.csr_array(
                    (arrays["se_data"].astype(float), arrays["se_indices"], arrays["se_indptr"]),
                    shape=(p, p),
                )
                model.stderr_.check_format(full_check=True)
                model.dof_ = arrays["dof"].astype(np.int64)
                model.rss_ = arrays["rss"].astype(float)
            if iv:
                model.iv_unidentified_ = pd.DataFrame({
                    "regulator": arrays["iv_unidentified_regulator"].astype(str).astype(object),
                    "target": arrays["iv_unidentified_target"].astype(str).astype(object)})
                model.iv_fallback_genes_ = pd.Index(
                    arrays["iv_fallback_genes"].astype(str).astype(object), dtype=object)
            model.estimators_ = None
            model._regulators = None
            model._spline = None
            if spline:
                knots = arrays["spline_knots"].astype(float)
                basis = SplineBasis.from_knots(knots, int(model.degree))
                regulators = arrays["spline_regulators"].astype(np.int64)
                spline_coef = sp.csr_array(
                    (arrays["spline_data"].astype(float), arrays["spline_indices"],
                     arrays["spline_indptr"]), shape=(basis.n_features, p))
                spline_coef.check_format(full_check=True)
                if len(regulators) != basis.n_regulators or (
                        len(regulators) and (regulators.min() < 0 or regulators.max() >= p)):
                    raise ValueError("spline regulators do not match the knots or the genes")
                model._set_spline(SplineFit(basis, regulators, spline_coef, model.intercept_,
                                            model.alpha_, model.n_samples_, np.full(p, np.nan)),
                                  genes)
        except (ValueError, TypeError, IndexError) as exc:
            raise DataFileError(
                f"{str(path)!r} is a causalcell model file but its contents are malformed "
                f"({type(exc).__name__}: {exc}); save the model again."
            ) from exc
        model._steady = None
        model._network = None
        return model
