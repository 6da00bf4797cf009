"""Any scikit-learn regressor per gene, with the same exclusion rule as the batched solver.

Gene g's regressor is a clone of the given one, fitted on the samples that do
not target g (:meth:`causalcell.data._design.Design.excluded_rows`), with its
regulators read from the design matrix under intervention (targeted
regulators at T). There is no matrix form for an arbitrary regressor, so this
path loops over genes, in chunks run in parallel by joblib.

A :class:`GenericFit` offers what propagation needs
(:meth:`GenericFit.predict`, see :func:`causalcell.models._propagate.propagate`)
and, when every fitted regressor is linear (``coef_`` and ``intercept_``),
its weights (:meth:`GenericFit.linear`) for the closed-form steady state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.base import clone

from causalcell._progress import tqdm
from causalcell.data._design import Design

__all__ = ["GenericFit", "fit_per_gene", "regulator_lists"]

_GENES_PER_TASK = 64


@dataclass
class GenericFit:
    """Per-gene fitted regressors.

    Attributes
    ----------
    estimators : list
        The fitted regressor of each gene; None for genes without regulators
        or without a sample left.
    regulators : list of numpy.ndarray
        Regulator gene indices of each gene.
    intercept : numpy.ndarray
        Mean of each gene over its included samples (its prediction when it
        has no regressor).
    n_samples : numpy.ndarray
        Samples used per gene.
    """

    estimators: list[Any]
    regulators: list[np.ndarray]
    intercept: np.ndarray
    n_samples: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Every modelled gene's prediction from the states ``x`` (n, p); 0 elsewhere."""
        out = np.zeros(x.shape)
        for g, est in enumerate(self.estimators):  # one scikit-learn model per gene
            if est is not None:
                out[:, g] = est.predict(x[:, self.regulators[g]])
        return out

    def linear(self) -> tuple[sp.csr_array, np.ndarray] | None:
        """(p, p) regulator x target weights and intercepts, when every regressor is linear."""
        regs, estimators = self.regulators, self.estimators
        p = len(regs)
        is_linear = all(
            e is None
            or (
                np.ndim(getattr(e, "coef_", None)) == 1
                and np.size(e.coef_) == len(regs[g])
                and np.ndim(getattr(e, "intercept_", None)) == 0
            )
            for g, e in enumerate(estimators)
        )
        if not is_linear:
            return None
        sizes = [len(r) for r in regs]
        rows = np.concatenate(regs) if p else np.zeros(0, np.int64)
        cols = np.repeat(np.arange(p), sizes)
        values = [np.asarray(e.coef_, dtype=float) for e in estimators if e is not None]
        data = np.zeros(len(rows))
        has_model = np.array([e is not None and len(r) > 0
                              for r, e in zip(regs, estimators, strict=True)], dtype=bool)
        if values:
            data[np.repeat(has_model, sizes)] = np.concatenate(values)
        intercept = np.array([float(e.intercept_) if e is not None else c
                              for e, c in zip(estimators, self.intercept, strict=True)])
        return sp.csr_array((data, (rows, cols)), shape=(p, p)), intercept


def regulator_lists(
    parents: sp.csc_array | None, pool: np.ndarray | None, p: int
) -> list[np.ndarray]:
    """Sorted regulator indices of every gene: its parents, or the pool but itself."""
    if parents is not None:
        P = sp.csc_array(parents)
        P.sort_indices()
        return [P.indices[P.indptr[g] : P.indptr[g + 1]].astype(np.int64) for g in range(p)]
    if pool is None:
        raise ValueError("regulator_lists: give parents or pool.")
    return [pool[pool != g] for g in range(p)]


def fit_per_gene(
    design: Design,
    regulators: list[np.ndarray],
    estimator: Any,
    *,
    n_jobs: int | None = None,
    verbose: bool = False,
) -> GenericFit:
    """Fit a clone of ``estimator`` per gene on its regulators, leaving out its targeted samples.

    Parameters
    ----------
    design
        X (in memory) and its interventions.
    regulators
        Regulator gene indices of each gene.
    estimator
        A scikit-learn regressor (cloned per gene).
    n_jobs
        joblib workers (``None``: 1).
    verbose
        Progress bar over chunks of genes.

    Returns
    -------
    GenericFit
    """
    p = design.shape[1]
    if sp.issparse(design.X):
        design = design.with_values(sp.csc_array(design.X))  # per-gene column access
    chunks = [np.arange(s, min(s + _GENES_PER_TASK, p)) for s in range(0, p, _GENES_PER_TASK)]
    tasks = (
        delayed(_fit_genes)(design, c, [regulators[g] for g in c], estimator) for c in chunks
    )
    results: list[tuple[Any, float, int]] = []
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    for part in tqdm(parallel(tasks), total=len(chunks), desc="Fitting genes", unit="chunk",
                     disable=not verbose, leave=False):
        results.extend(part)
    return GenericFit(
        estimators=[r[0] for r in results],
        regulators=regulators,
        intercept=np.array([r[1] for r in results], dtype=float),
        n_samples=np.array([r[2] for r in results], dtype=np.int64),
    )


def _fit_genes(
    design: Design, genes: np.ndarray, regs: list[np.ndarray], estimator: Any
) -> list[tuple[Any, float, int]]:
    """Fit a chunk of genes (joblib task): (fitted estimator or None, mean, n_samples)."""
    X = design.X
    n = X.shape[0]
    out = []
    for g, r in zip(genes, regs, strict=True):
        keep = np.ones(n, dtype=bool)
        keep[design.excluded_rows(g)] = False
        rows = np.flatnonzero(keep)
        if rows.size == 0:
            out.append((None, 0.0, 0))
            continue
        # The target's own values: g is not targeted in these rows, so Z = X.
        y = (
            X[:, [g]][rows].toarray().ravel()
            if sp.issparse(X)
            else np.asarray(X[rows, g], dtype=np.float64)
        )
        y = y.astype(np.float64)
        if len(r) == 0:
            out.append((None, float(y.mean()), rows.size))
            continue
        est = clone(estimator).fit(design.block(rows, r), y)
        out.append((est, float(y.mean()), rows.size))
    return out
