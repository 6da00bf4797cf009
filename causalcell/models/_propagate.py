"""Propagation on the intervention graph: clamp the targets at T, let the change flow.

A prediction starts from a state (e.g. the control mean), clamps every
targeted gene at its level T (:func:`clamp`, the one rule every path
applies) and propagates the change to the other genes, whose regulators
determine them: ``x_g = start_g + f_g(x) - f_g(start)``. Targets have no
parents on the intervention graph, so they stay at T.

- Linear models (:func:`propagate_linear`): ``delta <- W^T delta`` a number of
  steps, or the steady state in closed form (:class:`SteadyState`).
- Any scikit-learn regressor (:func:`propagate_generic`): one prediction per
  gene and step, iterated a number of steps or to convergence.

:func:`propagate` takes either fit (:class:`~causalcell.models._solve.LinearFit`
or :class:`~causalcell.models._generic.GenericFit`) behind one interface.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from causalcell.data._interventions import Interventions
from causalcell.errors import PredictionError

__all__ = ["SteadyState", "clamp", "propagate", "propagate_generic", "propagate_linear"]

Steps = int | Literal["steady_state"]


def clamp(x: np.ndarray, interventions: Interventions, values: np.ndarray | None = None) -> None:
    """Set every targeted entry of ``x`` (samples x genes) to its level T, in place.

    ``values`` (one per targeted entry) replaces the levels, e.g. the clamped
    *changes* of a propagation written in changes from the start state.
    """
    x[interventions.entry_rows, interventions.mask.indices] = (
        interventions.levels if values is None else values
    )


# Spectral radii of components up to this size are computed densely.
_DENSE_EIGEN = 200
# (I - W^T) is factored densely up to this many genes or above this density.
_DENSE_FACTOR_GENES = 3000
_DENSE_FACTOR_DENSITY = 0.05
_STABLE_MARGIN = 1e-10
# Pivots of I - W^T below this fraction of the largest count as zero (singular).
_SINGULAR_PIVOT = 1e-12
# Genes of an unstable component named in the error message, at most.
_SHOWN_GENES = 10


def _operand(M: sp.csr_array) -> Any:
    """M for repeated products: a dense array when it is dense enough for BLAS."""
    k = M.shape[0]
    return M.toarray() if M.nnz > 0.2 * k * k else M


def _norm2_bound(M: sp.csr_array) -> float:
    """Upper bound of the spectral norm ||M||_2 (>= the spectral radius of M and of
    every principal submatrix): Frobenius when it suffices, else the largest
    singular value (Lanczos) with a small safety factor."""
    fro = float(np.sqrt(np.sum(M.data**2)))
    if fro < 1.0 - _STABLE_MARGIN or M.nnz == 0:
        return fro
    k = M.shape[0]
    if k <= _DENSE_EIGEN:
        return float(np.linalg.norm(M.toarray(), 2)) * (1 + 1e-12)
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, svds

    try:
        top = svds(_operand(M), k=1, return_singular_vectors=False, tol=1e-10)
    except (ArpackNoConvergence, ArpackError):
        return fro
    return float(np.max(top)) * (1 + 1e-8)


def _spectral_radius(M: sp.csr_array) -> float:
    """Largest eigenvalue modulus of a square sparse matrix.

    Dense eigenvalues for small matrices; ARPACK (a few dozen products with
    M) for larger ones, with a dense fallback when it does not converge.
    """
    k = M.shape[0]
    if k == 0 or M.nnz == 0:
        return 0.0
    if k <= _DENSE_EIGEN:
        return float(np.max(np.abs(np.linalg.eigvals(M.toarray()))))
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigs

    try:
        # Several eigenvalues and a wide Krylov space: k=1 can settle on the
        # wrong one when the largest moduli are close (complex pairs).
        vals = eigs(
            _operand(M),
            k=min(6, k - 2),
            which="LM",
            return_eigenvectors=False,
            tol=1e-10,
            ncv=min(k, 40),
            maxiter=max(1000, 10 * k),
        )
        return float(np.max(np.abs(vals)))
    except (ArpackNoConvergence, ArpackError):
        return float(np.max(np.abs(np.linalg.eigvals(M.toarray()))))


def _perron_bound(A: sp.csr_array, iterations: int = 50) -> float:
    """Upper bound of the spectral radius of a non-negative matrix.

    Collatz-Wielandt: rho(A) <= max_i (A x)_i / x_i for any positive x;
    power iteration from the all-ones vector tightens it. Cheap (a few
    dozen sparse products) and sufficient to prove stability.
    """
    k = A.shape[0]
    if k == 0 or A.nnz == 0:
        return 0.0
    A = _operand(A)
    x = np.ones(k)
    best = np.inf
    for _ in range(iterations):
        y = A @ x
        best = min(best, float(np.max(y / x)))
        if best < 1.0 - _STABLE_MARGIN:
            break
        top = float(np.max(y))
        if top <= 0.0:
            return 0.0
        # Keep x positive (a reducible A can zero entries out).
        x = np.maximum(y / top, 1e-300)
    return best


class SteadyState:
    """Steady states of the linear propagation ``x = start + W_do^T (x - start)``.

    With A = I - W^T, a perturbation clamping targets T at changes d (level
    minus start) has the steady change ``delta = A^{-1}[:, T] (A^{-1}[T, T])^{-1} d``:
    delta solves (A delta)_g = 0 for every non-target g (each non-target
    follows its regulators) and delta_T = d, and A delta is supported on T,
    so delta = A^{-1} u with u_T fixed by delta_T = d. One factorization of A
    serves every request; each distinct target set costs one small |T| x |T|
    solve, vectorized over the requests that share it.

    Stability: the steady state is the limit of the propagation only when
    the spectral radius of the intervention graph's weights (W without the
    edges into targets; only its strongly connected components matter) is
    below 1. A component whose absolute weights already have spectral radius
    below 1 is stable under every intervention (Perron-Frobenius: removing
    nodes and taking absolute values cannot increase it); other components
    are checked exactly for each target set.

    Parameters
    ----------
    W : scipy.sparse.csr_array
        (p, p) regulator x target weights.
    names : sequence of str, optional
        Gene names, for messages.
    """

    def __init__(self, W: sp.csr_array, names: Any = None) -> None:
        from scipy.sparse.csgraph import connected_components

        self.W = sp.csr_array(W, dtype=np.float64)
        self.p = self.W.shape[0]
        self.names = names
        pattern = self.W.copy()
        pattern.eliminate_zeros()
        _, labels = connected_components(pattern, directed=True, connection="strong")
        sizes = np.bincount(labels)
        self._components: list[np.ndarray] = []
        for comp in np.flatnonzero(sizes >= 2):
            nodes = np.flatnonzero(labels == comp)
            # Stable under every intervention if the absolute weights' spectral
            # radius or the spectral norm is below 1 (both bound every
            # principal submatrix's spectral radius).
            sub = pattern[nodes][:, nodes]
            if _perron_bound(abs(sub)) < 1.0 - _STABLE_MARGIN:
                continue
            if _norm2_bound(sub) < 1.0 - _STABLE_MARGIN:
                continue
            if _spectral_radius(abs(sub)) >= 1.0 - _STABLE_MARGIN:
                self._components.append(nodes)
        self._radius: dict[tuple[int, bytes], float] = {}
        self._factor: Any = None

    # ------------------------------------------------------------------ stability
    def check(self, targets: np.ndarray, label: str = "") -> None:
        """Raise PredictionError if the intervention graph of ``targets`` is unstable."""
        for c, nodes in enumerate(self._components):
            keep = nodes[~np.isin(nodes, targets)]
            key = (c, keep.tobytes())
            if key not in self._radius:
                sub = self.W[keep][:, keep]
                bound = _perron_bound(abs(sub))
                self._radius[key] = bound if bound < 1.0 - _STABLE_MARGIN else _spectral_radius(sub)
            rho = self._radius[key]
            if rho >= 1.0 - _STABLE_MARGIN:
                raise self._unstable(nodes, rho, label)

    def _unstable(self, nodes: np.ndarray, rho: float, label: str) -> PredictionError:
        """The error naming the strongly connected component whose loop diverges."""
        if self.names is not None:
            shown = ", ".join(str(self.names[i]) for i in nodes[:_SHOWN_GENES])
            if len(nodes) > _SHOWN_GENES:
                shown += f", ... ({len(nodes)} genes)"
        else:
            shown = f"{len(nodes)} genes"
        return PredictionError(
            f"The fitted regulation is unstable under {label or 'this perturbation'}: the "
            f"weights of the feedback loop through {shown} (a strongly connected component of "
            f"the intervention graph) have spectral radius {rho:.3g} >= 1, so the propagation "
            f"has no steady state. Refit with a larger alpha (or alpha='gcv'), use a network "
            f"with fewer feedback edges, or predict a finite number of steps (steps=k). Per-gene "
            f"fits (ridge, ols) of a network with feedback loops are biased, and the bias does "
            f"not shrink with data: refit with regressor='iv' (consistent under feedback)."
        )

    # ------------------------------------------------------------------ solve
    def _inverse_columns(self, targets: np.ndarray) -> np.ndarray:
        """Columns ``targets`` of (I - W^T)^{-1}, shape (p, len(targets))."""
        p = self.p
        if self._factor == "singular":  # known from an earlier call: do not factor again
            raise self._singular()
        if self._factor is None:
            self._factor = "singular"  # until a factorization succeeds
            A = sp.eye_array(p, format="csr") - self.W.T.tocsr()
            dense = p <= _DENSE_FACTOR_GENES or self.W.nnz > _DENSE_FACTOR_DENSITY * p * p
            if dense:
                with warnings.catch_warnings():
                    # An exactly zero pivot warns; it is reported as singular below.
                    warnings.simplefilter("ignore", la.LinAlgWarning)
                    lu, piv = la.lu_factor(A.toarray(), check_finite=False)
                pivots = np.abs(np.diag(lu))
                if pivots.min(initial=1.0) <= _SINGULAR_PIVOT * pivots.max(initial=1.0):
                    raise self._singular()
                self._factor = ("dense", (lu, piv))
            else:
                from scipy.sparse.linalg import splu

                try:
                    lu = splu(A.tocsc())
                except RuntimeError:
                    raise self._singular() from None
                pivots = np.abs(lu.U.diagonal())
                if pivots.min(initial=1.0) <= _SINGULAR_PIVOT * pivots.max(initial=1.0):
                    raise self._singular()
                self._factor = ("sparse", lu)
        kind, fac = self._factor
        E = np.zeros((p, len(targets)))
        E[targets, np.arange(len(targets))] = 1.0
        if kind == "dense":
            return la.lu_solve(fac, E, check_finite=False)
        return fac.solve(E)

    @staticmethod
    def _singular() -> PredictionError:
        return PredictionError(
            "The fitted regulation has an eigenvalue equal to 1 (I - W^T is singular): no "
            "unique steady state. Refit with a larger alpha, or predict a finite number of "
            "steps (steps=k)."
        )

    def _cut_changes(self, tset: np.ndarray, D: np.ndarray) -> np.ndarray:
        """Steady changes (rows, p) on the intervention graph of targets ``tset``.

        For the other genes N: ``delta_N = W[N, N]^T delta_N + W[T, N]^T d``,
        solved directly on the intervention graph (one factorization of
        ``I - W[N, N]^T`` per target set). Used when I - W^T itself is
        singular, e.g. a loop with eigenvalue 1 that the intervention cuts.
        """
        p = self.p
        rest = np.setdiff1d(np.arange(p), tset, assume_unique=False)
        W = self.W
        A = sp.eye_array(len(rest), format="csc") - sp.csc_array(W[rest][:, rest].T)
        rhs = np.asarray(sp.csr_array(W[tset][:, rest]).T @ D.T)  # (|N|, rows)
        try:
            if len(rest) <= _DENSE_FACTOR_GENES:
                sol = la.solve(A.toarray(), rhs, check_finite=False)
            else:
                from scipy.sparse.linalg import splu

                sol = splu(A).solve(rhs)
        except (la.LinAlgError, RuntimeError):
            raise self._singular() from None
        if not np.isfinite(sol).all():
            raise self._singular()
        delta = np.zeros((D.shape[0], p))
        delta[:, rest] = sol.T
        delta[:, tset] = D
        return delta

    def changes(self, mask: sp.csr_array, d: np.ndarray, labels: Any = None) -> np.ndarray:
        """Steady changes (n, p) for clamped changes ``d`` at the entries of ``mask``."""
        n, p = mask.shape
        delta = np.zeros((n, p))
        indptr, cols = mask.indptr, mask.indices
        counts = np.diff(indptr)
        if mask.nnz == 0:
            return delta
        # Distinct target sets (rows padded with -1), checked and solved once each.
        width = int(counts.max())
        padded = np.full((n, width), -1, dtype=np.int64)
        which = np.repeat(np.arange(n), counts)
        offset = np.arange(mask.nnz) - np.repeat(indptr[:-1], counts)
        padded[which, offset] = cols
        perturbed = np.flatnonzero(counts > 0)
        sets, first, inverse = np.unique(
            padded[perturbed], axis=0, return_index=True, return_inverse=True
        )
        inverse = inverse.ravel()
        if self._components:
            for s, tset in enumerate(sets):
                label = None if labels is None else repr(str(labels[perturbed[first[s]]]))
                self.check(tset[tset >= 0], label or "")
        targets = np.unique(cols)
        try:
            K = self._inverse_columns(targets)
        except PredictionError:
            # I - W^T is singular, but each intervention graph may not be (the
            # stability check above passed): solve on those, one per target set.
            for s, tset in enumerate(sets):
                rows = perturbed[inverse == s]
                tgt = tset[tset >= 0]
                D = d[indptr[rows][:, None] + np.arange(len(tgt))[None, :]]
                delta[rows] = self._cut_changes(tgt, D)
            return delta
        col_of = np.full(p, -1, dtype=np.int64)
        col_of[targets] = np.arange(len(targets))
        single = perturbed[counts[perturbed] == 1]
        if single.size:
            t = cols[indptr[single]]
            j = col_of[t]
            scale = d[indptr[single]] / K[t, j]
            delta[single] = K[:, j].T * scale[:, None]
        # Combinations: one small solve per distinct target set.
        is_multi = counts[perturbed] > 1
        order = np.argsort(inverse, kind="stable")
        order = order[is_multi[order]]
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        for group in np.split(order, bounds) if order.size else []:
            rows = perturbed[group]
            tset = sets[inverse[group[0]]]
            tgt = tset[tset >= 0]
            j = col_of[tgt]
            m = len(tgt)
            D = d[indptr[rows][:, None] + np.arange(m)[None, :]]  # (rows, m)
            U = np.linalg.solve(K[np.ix_(tgt, j)], D.T)
            delta[rows] = (K[:, j] @ U).T
        return delta


def propagate_linear(
    W: sp.csr_array,
    interventions: Interventions,
    start: np.ndarray,
    steps: Steps,
    steady: SteadyState | None = None,
    labels: Any = None,
) -> np.ndarray:
    """Clamp targets at their levels and propagate changes on the intervention graph.

    ``x = start + delta`` with ``delta_t = T_t - start_t`` for every target t
    and ``delta_g = sum_r W[r, g] delta_r`` for every other gene (the linear
    model's change from the start state), iterated ``steps`` times or to the
    steady state (closed form, see :class:`SteadyState`). Targets have no
    parents on the intervention graph, so they stay at T; an empty
    intervention returns ``start`` exactly.

    Parameters
    ----------
    W
        (p, p) regulator x target weights.
    interventions
        The request (targeted entries and their levels, all finite).
    start
        (n, p) start states.
    steps
        Number of propagation steps, or ``"steady_state"``.
    steady
        A :class:`SteadyState` for W (reused across calls: it caches the
        factorization).
    labels
        Per-row labels for messages.

    Returns
    -------
    numpy.ndarray
        (n, p) predicted states; targets equal their levels exactly.
    """
    iv = interventions
    n, p = iv.shape
    d = iv.levels - start[iv.entry_rows, iv.mask.indices]
    if steps == "steady_state":
        steady = SteadyState(W) if steady is None else steady
        delta = steady.changes(iv.mask, d, labels)
    else:
        delta = np.zeros((n, p))
        clamp(delta, iv, d)
        Wc = sp.csr_array(W, dtype=np.float64)
        for _ in range(int(steps)):
            delta = np.asarray(delta @ Wc)
            clamp(delta, iv, d)
    out = start + delta
    clamp(out, iv)
    return out


def propagate_generic(
    predict: Any,
    interventions: Interventions,
    start: np.ndarray,
    steps: Steps,
    *,
    max_iter: int,
    tol: float,
) -> np.ndarray:
    """Clamp and propagate with any per-gene model: ``x <- start + f(x) - f(start)``.

    Parameters
    ----------
    predict
        ``predict(x)``: every modelled gene's prediction from the states x
        (n, p), as an (n, p) array of changes-able values (genes without a
        model: 0).
    interventions, start, steps
        As :func:`propagate_linear`.
    max_iter, tol
        ``steps="steady_state"``: iterate until the largest change is at most
        ``tol * (1 + max |x|)``, at most ``max_iter`` times.

    Raises
    ------
    PredictionError
        If the steady state is not reached within ``max_iter`` steps.
    """
    base = predict(start)
    x = start.copy()
    clamp(x, interventions)
    limit = max_iter if steps == "steady_state" else int(steps)
    converged = steps != "steady_state"
    change = 0.0
    for _ in range(limit):
        new = start + (predict(x) - base)
        clamp(new, interventions)  # targets have no parents: they stay at T
        change = float(np.max(np.abs(new - x), initial=0.0))
        x = new
        if not math.isfinite(change):
            break
        if steps == "steady_state" and change <= tol * (1.0 + np.max(np.abs(x))):
            converged = True
            break
    if not converged:
        raise PredictionError(
            f"The propagation did not reach a steady state within max_iter={max_iter} steps "
            f"(last change {change:.3g}): the fitted regulation may be unstable. Predict a "
            f"finite number of steps (steps=k), raise max_iter, or use a more regularized "
            f"regressor."
        )
    return x


def propagate(
    regulation: sp.csr_array | Any,
    interventions: Interventions,
    start: np.ndarray,
    steps: Steps,
    *,
    steady: SteadyState | None = None,
    labels: Any = None,
    max_iter: int = 1000,
    tol: float = 1e-9,
) -> np.ndarray:
    """Clamp the targets at T and propagate, whatever the fitted regulation.

    Parameters
    ----------
    regulation
        A linear model's (p, p) regulator x target weights (closed-form
        steady state, :func:`propagate_linear`), or the ``predict(x)`` of
        per-gene scikit-learn regressors (:func:`propagate_generic`).
    interventions, start, steps, steady, labels
        See :func:`propagate_linear`.
    max_iter, tol
        See :func:`propagate_generic`.

    Returns
    -------
    numpy.ndarray
        (n, p) predicted states; targets equal their levels exactly.
    """
    if callable(regulation):
        return propagate_generic(regulation, interventions, start, steps, max_iter=max_iter,
                                 tol=tol)
    return propagate_linear(regulation, interventions, start, steps, steady, labels)
