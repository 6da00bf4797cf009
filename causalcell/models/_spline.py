"""Additive spline regulation: every regulator in a B-spline basis, solved like ridge.

Gene g's model is ``x_g = intercept_g + sum_{r in R_g} c_rg(x_r)``, one response
curve ``c_rg`` per regulator, each a combination of the B-spline basis of
:class:`~causalcell.models._basis.SplineBasis` (linear extrapolation outside
the training range). The model is linear in its parameters, so it is fitted
exactly as ridge is, by the same solver
(:func:`causalcell.models._solve.fit_linear`): the regressors are the basis
functions instead of the regulator levels.

The design matrix under intervention is extended by the basis of every
regulator's design value: ``[X | B(Z_U)]`` (:class:`_ExpandedDesign`), with
B evaluated block by block as the pass over the samples reads the rows (it is
never stored whole), and a targeted regulator entering at its level T
(knockouts: 0) before it is expanded. The exclusion rule is the engine's own:
gene g's statistics leave out the samples that target it, by the exact
downdate. With a regulator list, gene g is regressed on the basis of every
regulator but itself (:func:`~causalcell.models._solve.fit_linear`'s
``pool_owner``): untargeted genes share one eigendecomposition, GCV included.

Each regulator's knots come from its design values over all training samples,
so that one basis serves every gene and the per-gene pipeline
``SplineTransformer(knots=spline_knots_[R_g].T, degree, extrapolation="linear",
include_bias=False)`` followed by ``Ridge(alpha)`` on the gene's samples gives
the same fit (tested to 1e-6).

Prediction propagates non-linearly: ``x <- start + f(x) - f(start)``, with
the targets clamped at T, by fixed-point iteration
(:func:`causalcell.models._propagate.propagate_generic`); there is no closed
form.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from causalcell.data._design import Design
from causalcell.data._interventions import Interventions
from causalcell.models._basis import SplineBasis
from causalcell.models._solve import fit_linear

__all__ = ["SplineFit", "fit_spline"]

# Rows per block when the regulators' range is read before the fit.
_RANGE_BLOCK_VALUES = 1 << 22


class _ExpandedValues:
    """``[X | B(Z_U)]`` by row blocks: the pass over the samples reads it like X."""

    ndim = 2
    dtype = np.dtype(np.float64)

    def __init__(self, design: Design, regulators: np.ndarray, basis: SplineBasis) -> None:
        self.design = design
        self.regulators = regulators
        self.basis = basis
        n, p = design.shape
        self.shape = (n, p + basis.n_features)

    def __getitem__(self, rows: Any) -> np.ndarray:
        idx = np.arange(self.shape[0])[rows]
        return self._fill(rows, idx, np.empty((len(idx), self.shape[1])))

    def read_rows_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Rows ``start:stop`` written into ``out`` (float64, at least that many rows):
        the pass over the samples fills its own block buffer, with no block-sized
        array of its own here."""
        return self._fill(slice(start, stop), np.arange(start, stop), out[: stop - start])

    def _fill(self, rows: Any, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
        # The pass reads contiguous row blocks: a slice of dense X is a view, copied
        # once, into the expanded block.
        X = self.design.X[rows] if isinstance(rows, slice) else self.design.X[idx]
        p = self.design.shape[1]
        if sp.issparse(X):
            out[:, :p] = X.toarray()
        else:
            np.copyto(out[:, :p], X, casting="unsafe")
        self.basis.transform(self.design.block(idx, self.regulators), out=out[:, p:])
        return out


class _ExpandedDesign(Design):
    """The design matrix under intervention extended by the regulators' basis.

    Columns ``0 .. p-1`` are the genes (with their interventions); column
    ``p + j * n_basis + b`` is basis function b of regulator j, evaluated at
    the regulator's design value (T where it is targeted with a known level).
    Basis columns are never targeted. Point reads (the downdates) evaluate
    the basis at the requested entries only.
    """

    def __init__(self, design: Design, regulators: np.ndarray, basis: SplineBasis) -> None:
        values = _ExpandedValues(design, regulators, basis)
        iv = design.interventions
        padded = copy.copy(iv)  # same samples and targets, more (never targeted) columns
        padded.mask = sp.csr_array((iv.mask.data, iv.mask.indices, iv.mask.indptr),
                                   shape=values.shape)
        super().__init__(values, padded)
        self.base = design
        self.regulators = regulators
        self.basis = basis

    def measured(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        p = self.base.shape[1]
        out = np.empty(len(rows))
        gene = cols < p
        out[gene] = self.base.measured(rows[gene], cols[gene])
        feature = np.flatnonzero(~gene)
        if feature.size:
            j, b = np.divmod(cols[feature] - p, self.basis.n_basis)
            # Each (sample, regulator) once: its level, then all its basis functions.
            pair, inverse = np.unique(rows[feature] * len(self.regulators) + j,
                                      return_inverse=True)
            pair_row, pair_j = np.divmod(pair, len(self.regulators))
            level = self.base.values(pair_row, self.regulators[pair_j])
            out[feature] = self.basis.evaluate(level, pair_j)[inverse.ravel(), b]
        return out

    def block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        r, c = np.meshgrid(rows, cols, indexing="ij")
        return self.values(r, c)


@dataclass
class SplineFit:
    """The fitted additive spline models of every gene.

    Attributes
    ----------
    basis : SplineBasis
        The basis of every regulator.
    regulators : numpy.ndarray
        (u,) gene index of each regulator (rows of ``basis.knots``).
    coef : scipy.sparse.csr_array
        (u * n_basis, p): coefficient of basis function b of regulator j in
        gene g's model at row ``j * n_basis + b``, column g.
    intercept, alpha, n_samples, rss : numpy.ndarray
        (p,) per gene, as :class:`~causalcell.models._solve.LinearFit`.
    """

    basis: SplineBasis
    regulators: np.ndarray
    coef: sp.csr_array
    intercept: np.ndarray
    alpha: np.ndarray
    n_samples: np.ndarray
    rss: np.ndarray

    @property
    def edges(self) -> sp.csr_array:
        """(p, p) bool: regulator r of gene g at (r, g) (every fitted curve)."""
        p = self.coef.shape[1]
        C = self.coef.tocoo()
        rows = self.regulators[C.row // self.basis.n_basis]
        E = sp.csr_array((np.ones(len(rows), dtype=bool), (rows, C.col)), shape=(p, p))
        E.sum_duplicates()
        return E

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Every gene's fitted value from the states ``x`` (n, p)."""
        features = self.basis.transform(x[:, self.regulators])
        return np.asarray(self.coef.T @ features.T).T + self.intercept

    def slopes(self, x: np.ndarray) -> sp.csr_array:
        """(p, p) derivatives ``c_rg'(x_r)`` of every curve at one state ``x`` (p,)."""
        p = self.coef.shape[1]
        nb = self.basis.n_basis
        u = len(self.regulators)
        derivative = self.basis.evaluate(x[self.regulators], np.arange(u), derivative=True)
        C = self.coef.tocoo()
        j = C.row // nb
        values = C.data * derivative[j, C.row % nb]
        J = sp.csr_array((values, (self.regulators[j], C.col)), shape=(p, p))
        J.sum_duplicates()
        return J

    def curves(self, regulator: np.ndarray, target: np.ndarray, levels: np.ndarray,
               reference: np.ndarray) -> np.ndarray:
        """``c_rg(level) - c_rg(reference)`` for edges (r, g) at levels (e, L) -> (e, L).

        ``reference`` (e,) is each edge's reference level (e.g. the control
        level of the regulator).
        """
        nb = self.basis.n_basis
        if len(target) == 0:
            return np.zeros(levels.shape)
        position = np.full(self.coef.shape[1], -1, dtype=np.int64)
        position[self.regulators] = np.arange(len(self.regulators))
        j = position[regulator]
        rows = j[:, None] * nb + np.arange(nb)[None, :]  # (e, nb)
        C = sp.csc_array(self.coef)
        coef = C[rows.ravel(), np.repeat(target, nb)]
        coef = np.asarray(coef).reshape(len(target), nb)
        e, L = levels.shape
        at = np.concatenate([levels, reference[:, None]], axis=1)  # (e, L + 1)
        basis = self.basis.evaluate(at.ravel(), np.repeat(j, L + 1)).reshape(e, L + 1, nb)
        value = np.einsum("elb,eb->el", basis, coef)
        return value[:, :L] - value[:, L:]


def _regulator_values(design: Design, regulators: np.ndarray, placement: str) -> Any:
    """What the knots need: the design values' range (uniform) or the values (quantile)."""
    n = design.shape[0]
    step = max(1, _RANGE_BLOCK_VALUES // max(1, len(regulators)))
    if placement == "quantile":
        return np.vstack([design.block(np.arange(s, min(s + step, n)), regulators)
                          for s in range(0, n, step)])
    low = np.full(len(regulators), np.inf)
    high = np.full(len(regulators), -np.inf)
    for s in range(0, n, step):
        block = design.block(np.arange(s, min(s + step, n)), regulators)
        low = np.minimum(low, block.min(axis=0))
        high = np.maximum(high, block.max(axis=0))
    return low, high


def fit_spline(
    X: Any,
    interventions: Interventions,
    *,
    parents: sp.csc_array | None = None,
    pool: np.ndarray | None = None,
    n_knots: int = 4,
    degree: int = 3,
    knots: str = "uniform",
    alpha: float = 1.0,
    alphas: np.ndarray | None = None,
    verbose: bool = False,
    names: Any = None,
) -> SplineFit:
    """Fit every gene's additive spline model on its regulators, exactly.

    Parameters
    ----------
    X, interventions, parents, pool, alpha, alphas, verbose, names
        As :func:`causalcell.models._solve.fit_linear` (ridge).
    n_knots, degree, knots
        The basis, as :class:`sklearn.preprocessing.SplineTransformer`'s
        parameters of the same names (``knots``: "uniform" or "quantile").

    Returns
    -------
    SplineFit
    """
    design = Design(X, interventions)
    p = design.shape[1]
    if parents is not None:
        P = sp.csc_array(parents).astype(bool)
        P.setdiag(False)
        P.eliminate_zeros()
        regulators = np.unique(P.indices).astype(np.int64)
    else:
        regulators = np.unique(np.asarray(pool, dtype=np.int64))
    if knots == "quantile":
        basis = SplineBasis.from_values(_regulator_values(design, regulators, knots), n_knots,
                                        degree, "quantile")
    else:
        low, high = _regulator_values(design, regulators, knots)
        basis = SplineBasis.from_ranges(low, high, n_knots, degree)
    nb = basis.n_basis
    expanded = _ExpandedDesign(design, regulators, basis)
    width = expanded.shape[1]
    features = p + np.arange(basis.n_features)
    owner = np.repeat(regulators, nb)
    if parents is not None:
        position = np.full(p, -1, dtype=np.int64)
        position[regulators] = np.arange(len(regulators))
        E = P.tocoo()
        rows = p + (position[E.row][:, None] * nb + np.arange(nb)[None, :]).ravel()
        cols = np.repeat(E.col, nb)
        expanded_parents = sp.csc_array((np.ones(len(rows), dtype=bool), (rows, cols)),
                                        shape=(width, width))
        fit = fit_linear(expanded, None, parents=expanded_parents, responses=np.arange(p),
                         method="ridge", alpha=alpha, alphas=alphas, verbose=verbose,
                         names=_names(names, regulators, nb))
    else:
        fit = fit_linear(expanded, None, pool=features, pool_owner=owner,
                         responses=np.arange(p), method="ridge", alpha=alpha, alphas=alphas,
                         verbose=verbose, names=_names(names, regulators, nb))
    return SplineFit(
        basis=basis,
        regulators=regulators,
        coef=sp.csr_array(fit.coef[p:, :p]),
        intercept=fit.intercept[:p],
        alpha=fit.alpha[:p],
        n_samples=fit.n_samples[:p],
        rss=fit.rss[:p],
    )


def _names(names: Any, regulators: np.ndarray, nb: int) -> Any:
    """Names of the expanded columns (genes, then ``regulator[b]``), for messages."""
    if names is None:
        return None
    genes = pd.Index(names).astype(str)
    basis = [f"{g}[spline {b}]" for g in genes[regulators] for b in range(nb)]
    return genes.append(pd.Index(basis))
