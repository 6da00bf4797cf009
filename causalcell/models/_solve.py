"""The batched exact ridge / OLS solves of every gene's regression on its regulators.

:class:`~causalcell.models.ConditionalGRNRegressor` regresses every gene g on
its regulators R_g using only the samples where g is *not* targeted, with
targeted regulators entering at their level T. Fitting one scikit-learn model
per gene repeats the same work thousands of times; here it is shared:

1. **One pass over the samples** (:func:`causalcell.data._moments.moments`)
   forms the cross-products of every regulator with every gene, already
   without each target's targeted samples, and the regulator Gram matrix.
2. **Per gene**, the regulator Gram is downdated by the few excluded rows
   (:class:`causalcell.data._moments.LeftOut`): exclusion is exact, bit for bit.
3. **Solves are batched**: genes with the same number of regulators are
   stacked and solved in one LAPACK call per stack (from 20 regulators on,
   one Cholesky factorization per system, :func:`_solve_symmetric`); genes
   that share one regulator set (a regulator list such as the human TFs)
   share one factorization; when every gene is regressed on all other members of a
   pool, the precision-matrix identity gives every untargeted member's ridge
   regression from one inverse (see :func:`_pool_solve`).

The centred normal equations solved are those of scikit-learn's ``Ridge``
with ``fit_intercept=True`` (unpenalized intercept): with S the scatter
matrix of the included samples about their mean,
``beta = (S_RR + alpha I)^{-1} S_Rg`` and
``intercept = mean_g - mean_R . beta``.

Complexity, with n samples, p genes, u regulators in all, r_g regulators of
gene g and k_g samples targeting g: the pass costs ``2 n u (p + v)`` flops
(v targeted regulators) and ``8 u (p + v)`` bytes; each stacked gene costs
``r_g^3 / 3 + 2 k_g r_g^2`` flops (x4 for ``alpha="gcv"``, which needs an
eigendecomposition); a shared regulator set or pool of size f costs
``f^3`` once. Targeted genes of a large pool are the expensive case
(``f^3`` each): :func:`fit_linear` estimates the cost first and raises a
:class:`~causalcell.errors.ParameterError` when it would not fit in memory
or take hours.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from causalcell._blas import one_blas_thread
from causalcell._progress import tqdm
from causalcell.data._design import Design
from causalcell.data._interventions import Interventions
from causalcell.data._moments import (
    BLOCK_VALUES,
    Moments,
    PassBuffers,
    leave_out_gather,
    left_out,
    moments,
)
from causalcell.data.lazy import format_bytes, is_dask_array, physical_memory
from causalcell.errors import ParameterError

__all__ = ["MAX_MEMORY_FRACTION", "MAX_SECONDS", "STACK_VALUES", "LinearFit", "fit_linear"]

#: Working memory for one stack of per-gene systems (float64 values), for every
#: stacked solve of the package (the IV fit's too). A stack is read several
#: times (gather, centring, symmetrizing, solve, RSS): stacks of 16 MB stay in
#: cache between those steps and reuse freed memory (measured: a 40-128 MB stack
#: of fresh arrays costs more in first touches than in arithmetic; the spline
#: benchmark's 2,000 systems of 250 regulators take about 1 s less CPU, the
#: ridge solve step at 20k x 2,000 99 -> 71 ms).
STACK_VALUES = 1 << 21
# Stacked systems up to this size are solved with single-threaded LAPACK.
_SINGLE_THREAD_SYSTEMS = 1024
# Fixed-penalty systems with at least this many regulators are solved by Cholesky
# (one LAPACK posv per system, in place), fewer by one stacked LU: the crossover
# measured on this package's 2-core machines, per system, single-threaded:
# r = 10: LU 0.8 us, Cholesky 1.4 us; r = 20: 2.5 / 2.1 us; r = 30: 4.7 / 3.2 us;
# r = 50: 14 / 8.3 us; r = 80: 34 / 16 us (the stacked LU copies each matrix and
# does twice the flops; the loop's Python call costs about 1 us per system).
_CHOLESKY_SYSTEMS = 20
# Cost model for the early feasibility check (2-core machine, BLAS-bound work).
_FLOPS_PER_SECOND = 1e10
MAX_SECONDS = 4 * 3600.0
MAX_MEMORY_FRACTION = 0.8


# --------------------------------------------------------------------------- solutions
@dataclass
class LinearFit:
    """The fitted per-gene linear models.

    Attributes
    ----------
    coef : scipy.sparse.csr_array
        (p, p), ``coef[r, g]`` the weight of regulator r in gene g's model;
        the stored entries are exactly the fitted (regulator, target) pairs.
    intercept : numpy.ndarray
        (p,)
    alpha : numpy.ndarray
        (p,) ridge penalty used per gene (0 for OLS).
    n_samples : numpy.ndarray
        (p,) samples used per gene.
    rss : numpy.ndarray
        (p,) residual sum of squares.
    stderr : scipy.sparse.csr_array or None
        Standard errors with the structure of ``coef`` (OLS inference only).
    dof : numpy.ndarray
        (p,) residual degrees of freedom ``n_samples - r - 1``.
    """

    coef: sp.csr_array
    intercept: np.ndarray
    alpha: np.ndarray
    n_samples: np.ndarray
    rss: np.ndarray
    stderr: sp.csr_array | None
    dof: np.ndarray
    samples: Moments | None = None  # the pass (its control sums; Dask: gathered values)
    reads: Design | None = None  # the design the leave-outs read (Dask: gathered values)


class _Collector:
    """Accumulates per-gene results of the different solve paths."""

    def __init__(self, p: int, inference: bool) -> None:
        self.p = p
        self.inference = inference
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.ses: list[np.ndarray] = []
        self.intercept = np.zeros(p)
        self.alpha = np.zeros(p)
        self.rss = np.zeros(p)
        self.n_samples = np.zeros(p, dtype=np.int64)
        self.n_regs = np.zeros(p, dtype=np.int64)

    def add(
        self,
        genes: np.ndarray,
        regs: np.ndarray,
        beta: np.ndarray,
        *,
        intercept,
        alpha,
        rss,
        n_samples,
        diag: np.ndarray | None = None,
    ) -> None:
        """Record genes (m,) with regulators ``regs`` (m, r) and coefficients (m, r).

        ``diag`` (broadcastable to (m, r)): the diagonal of ``S_RR^{-1}``; with
        it, OLS standard errors ``sqrt(diag * rss / (n - r - 1))`` are stored.
        """
        m, r = beta.shape
        se = None
        if diag is not None:
            sigma2 = rss / (np.asarray(n_samples, dtype=np.float64) - r - 1)
            se = np.sqrt(np.maximum(diag, 0.0) * sigma2[:, None])
        self.rows.append(regs.reshape(-1))
        self.cols.append(np.repeat(genes, r))
        self.vals.append(beta.reshape(-1))
        if self.inference:
            self.ses.append(se.reshape(-1) if se is not None else np.full(m * r, np.nan))
        self.intercept[genes] = intercept
        self.alpha[genes] = alpha
        self.rss[genes] = rss
        self.n_samples[genes] = n_samples
        self.n_regs[genes] = r

    def result(self) -> LinearFit:
        p = self.p

        def build(values: list[np.ndarray]) -> sp.csr_array:
            rows = np.concatenate(self.rows) if self.rows else np.zeros(0, np.int64)
            cols = np.concatenate(self.cols) if self.cols else np.zeros(0, np.int64)
            data = np.concatenate(values) if values else np.zeros(0)
            # Distinct (row, col) pairs: COO -> CSR only sorts, zeros stay stored.
            return sp.csr_array((data, (rows, cols)), shape=(p, p))

        coef = build(self.vals)
        stderr = build(self.ses) if self.inference else None
        dof = self.n_samples - self.n_regs - 1
        return LinearFit(
            coef=coef,
            intercept=self.intercept,
            alpha=self.alpha,
            n_samples=self.n_samples,
            rss=self.rss,
            stderr=stderr,
            dof=dof,
        )


@dataclass(frozen=True)
class _Solver:
    method: Literal["ridge", "ols"]
    alpha: float
    alphas: np.ndarray | None  # GCV choice among these when not None
    inference: bool


def _gcv_choice(
    lam: np.ndarray, z: np.ndarray, syy: np.ndarray, n: np.ndarray, alphas: np.ndarray
) -> np.ndarray:
    """Index of the GCV-best alpha per system (Golub, Heath & Wahba 1979).

    For centred data with eigendecomposition S_RR = Q diag(lam) Q^T and
    z = Q^T S_Rg (``lam``, ``z``: (m, r)), ridge with penalty a has
    ``RSS = S_gg - sum z^2 (lam + 2a) / (lam + a)^2`` and hat-matrix trace
    ``df = 1 + sum lam / (lam + a)`` (the 1: the unpenalized intercept);
    ``GCV = n RSS / (n - df)^2``. Nothing here reads the samples.
    """
    a = alphas[None, :, None]
    lam3 = lam[:, None, :]
    denom = lam3 + a
    rss = syy[:, None] - np.sum(z[:, None, :] ** 2 * (lam3 + 2 * a) / denom**2, axis=2)
    df = 1.0 + np.sum(lam3 / denom, axis=2)
    resid_df = n[:, None] - df
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(resid_df > 0, n[:, None] * np.maximum(rss, 0.0) / resid_df**2, np.inf)
    return np.argmin(score, axis=1)


def _solve_systems(
    S: np.ndarray, b: np.ndarray, syy: np.ndarray, n: np.ndarray, solver: _Solver
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Solve stacked centred systems S (m, r, r), b (m, r).

    Returns beta (m, r), alpha (m,), rss (m,), and the diagonal of S^{-1}
    (m, r) for OLS inference (else None). ``S`` is the caller's to give up:
    a fixed penalty is added to its diagonal in place, so that no second
    stack is allocated, and the factorizations may overwrite it.
    """
    m = b.shape[0]
    if solver.method == "ols":
        try:
            np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            raise _singular_error() from None
        inv = np.linalg.inv(S)
        beta = np.einsum("mij,mj->mi", inv, b)
        rss = syy - np.einsum("mi,mi->m", beta, b)
        diag = np.diagonal(inv, axis1=1, axis2=2).copy() if solver.inference else None
        return beta, np.zeros(m), rss, diag
    if solver.alphas is None:
        diagonal = np.einsum("mii->mi", S)  # a writable view of the stack's diagonals
        diagonal += solver.alpha
        beta = _solve_symmetric(S, b)
        alpha = np.full(m, solver.alpha)
    else:
        lam, Q = np.linalg.eigh(S)
        lam = np.maximum(lam, 0.0)
        z = np.einsum("mij,mi->mj", Q, b)
        choice = _gcv_choice(lam, z, syy, n, solver.alphas)
        alpha = solver.alphas[choice]
        beta = np.einsum("mij,mj->mi", Q, z / (lam + alpha[:, None]))
    # RSS = S_gg - 2 beta.b + beta^T S beta, and (S + alpha I) beta = b gives
    # beta^T S beta = beta.b - alpha |beta|^2: no product with S (which the
    # factorizations may have overwritten).
    rss = (syy - np.einsum("mi,mi->m", beta, b)
           - alpha * np.einsum("mi,mi->m", beta, beta))
    return beta, alpha, rss, None


def _solve_symmetric(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve stacked symmetric systems A (m, r, r) x = b (m, r), A positive definite
    when alpha > 0.

    Small systems: one stacked LU (``np.linalg.solve``). From
    :data:`_CHOLESKY_SYSTEMS` regulators on (a network's typical 50
    regulators, a spline basis of 5 columns per regulator), one Cholesky
    factorization and solve per system (LAPACK ``posv``): half the flops of
    the LU and no copy, measured 1.5x (r = 30) to 2x (r = 80) faster than
    the stacked LU single-threaded; the loop is over systems whose LAPACK
    work (>= r^3 / 3 flops) outweighs the call. A system that is not
    numerically positive definite (alpha = 0 with collinear regulators) is
    solved by LU.

    The factorizations overwrite ``A`` (the caller's to give up): LAPACK
    factorizes each system where it lies, with no copy (a symmetric matrix
    in C order is its own transpose in Fortran order), which is 1.25x faster
    for r = 250 than SciPy's ``cho_factor`` on a copy. The factorization
    writes one triangle and the diagonal; a system it refuses is rebuilt from
    the other triangle and its saved diagonal before the LU.
    """
    m, r = b.shape
    if r < _CHOLESKY_SYSTEMS:
        return np.linalg.solve(A, b[..., None])[..., 0]
    (posv,) = la.get_lapack_funcs(("posv",), (A,))
    diagonal = np.einsum("mii->mi", A).copy()
    out = np.empty((m, r))
    for i in range(m):
        _, out[i], info = posv(A[i].T, b[i], lower=1, overwrite_a=1)
        if info != 0:
            # A[i]'s strict lower triangle (C order) is the part posv left alone.
            below = np.tril(A[i], -1)
            out[i] = np.linalg.solve(below + below.T + np.diag(diagonal[i]), b[i])
    return out


def _singular_error() -> ParameterError:
    return ParameterError(
        "regressor='ols': a gene's regulator matrix is singular (collinear regulators, or "
        "fewer samples than regulators). Use regressor='ridge' with alpha > 0, or a network "
        "with fewer regulators per gene."
    )


def _stack_chunks(m: int, r: int, k_max: int, factor: int) -> int:
    """Genes per stack so that a stack's arrays stay within the working budget."""
    per_gene = factor * r * r + k_max * r + 8 * r
    return max(1, STACK_VALUES // max(1, per_gene))


def _stack_solve(
    ctx: _Context, genes: np.ndarray, regs: np.ndarray, solver: _Solver, out: _Collector
) -> None:
    """Build and solve the systems of genes (m,) with regulators regs (m, r)."""
    # The exact leave-out: each gene without the samples that target it.
    lo = left_out(ctx.moments, ctx.design, genes, regs)
    S = lo.symmetric_scatter()
    beta, alpha, rss, diag = _solve_systems(
        S, lo.target_scatter(), lo.target_sum_of_squares(), lo.n, solver
    )
    intercept = lo.target_means() - np.einsum("mi,mi->m", lo.regulator_means(), beta)
    out.add(genes, regs, beta, intercept=intercept, alpha=alpha, rss=rss,
            n_samples=ctx.moments.n_included[genes], diag=diag)


@dataclass
class _Context:
    design: Design  # the values the downdates read (gathered by the pass for Dask X)
    moments: Moments


def _solve_by_size(
    ctx: _Context,
    genes: np.ndarray,
    regs_of: Any,
    sizes: np.ndarray,
    solver: _Solver,
    out: _Collector,
    verbose: bool,
) -> None:
    """Stacked solves of ``genes`` grouped by regulator count.

    Genes that are never targeted and targeted genes (which need downdates,
    sorted by their number of excluded rows to limit padding) are stacked
    separately. ``regs_of(genes_chunk, r)`` returns the (m, r) regulator
    matrix.
    """
    counts = ctx.design.n_targeted[genes]
    order = np.lexsort((counts, counts > 0, sizes))
    genes, sizes, counts = genes[order], sizes[order], counts[order]
    key = sizes * 2 + (counts > 0)
    bounds = np.flatnonzero(np.diff(key)) + 1
    factor = 3 if solver.alphas is None else 5
    work = []
    for grp in np.split(np.arange(len(genes)), bounds) if len(genes) else []:
        r = int(sizes[grp[0]])
        i = 0
        while i < len(grp):  # chunks (not genes): sized by the chunk's largest exclusion
            guess = _stack_chunks(len(grp), r, int(counts[grp[i]]), factor)
            last = grp[min(i + guess, len(grp)) - 1]
            step = _stack_chunks(len(grp), r, int(counts[last]), factor)
            work.append((grp[i : i + step], r))
            i += step
    # Stacks of systems: LAPACK per matrix on one thread (see causalcell._blas). Threads
    # only pay for single large systems.
    largest = int(sizes.max(initial=0))
    threads = one_blas_thread(largest) if largest <= _SINGLE_THREAD_SYSTEMS else nullcontext()
    with threads:
        for chunk, r in tqdm(
            work, desc="Solving genes", unit="stack", disable=not verbose, leave=False
        ):
            g = genes[chunk]
            _stack_solve(ctx, g, regs_of(g, r), solver, out)


def _pool_scatter(
    cp: Moments, pool: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Positions, sample count, sums and the (symmetrized) scatter matrix of a pool
    over every sample (its untargeted genes need no leave-out)."""
    pos = cp.position[pool]
    n = float(cp.n)
    s_r = cp.regulator_sums[pos]
    S = cp.gram(pos[:, None], pos[None, :]) - np.outer(s_r, s_r) / n
    return pos, n, s_r, 0.5 * (S + S.T)


def _pool_factor(S: np.ndarray, solver: _Solver) -> tuple[Any, float]:
    """Cholesky factor of ``S + a I`` for the fixed penalty a (0 for OLS), and a."""
    a = 0.0 if solver.method == "ols" else solver.alpha
    try:
        return la.cho_factor(S + a * np.eye(len(S)), lower=True), a
    except la.LinAlgError:
        raise _singular_error() from None


def _shared_solve(
    ctx: _Context, genes: np.ndarray, pool: np.ndarray, solver: _Solver, out: _Collector
) -> None:
    """Untargeted genes (not in the pool) regressed on the whole pool: one factorization."""
    cp = ctx.moments
    pos, n, s_r, S = _pool_scatter(cp, pool)
    s_y = cp.target_sums[genes]
    B = cp.cross[pos][:, genes] - np.outer(s_r, s_y) / n  # (f, m)
    syy = cp.target_squares[genes] - s_y**2 / n
    m, f = len(genes), len(pool)
    diag = None
    if solver.method == "ols" or solver.alphas is None:
        factor, a = _pool_factor(S, solver)
        beta = la.cho_solve(factor, B).T  # (m, f)
        alpha = np.full(m, a)
        if solver.inference:
            diag = np.diag(la.cho_solve(factor, np.eye(f)))
    else:
        lam, Q = np.linalg.eigh(S)
        lam = np.maximum(lam, 0.0)
        z = (Q.T @ B).T  # (m, f)
        choice = _gcv_choice(np.broadcast_to(lam, z.shape), z, syy, np.full(m, n), solver.alphas)
        alpha = solver.alphas[choice]
        beta = (z / (lam[None, :] + alpha[:, None])) @ Q.T
    # RSS = S_gg - 2 beta.b + beta^T S beta
    rss = syy - 2 * np.einsum("mf,fm->m", beta, B) + np.einsum("mf,mf->m", beta, beta @ S)
    mean_r = cp.shift[pool] + s_r / n
    intercept = cp.shift[genes] + s_y / n - beta @ mean_r
    out.add(genes, np.broadcast_to(pool, (m, f)), beta, intercept=intercept, alpha=alpha,
            rss=rss, n_samples=cp.n_included[genes],
            diag=None if diag is None else diag[None, :])


def _pool_solve(
    ctx: _Context, genes: np.ndarray, pool: np.ndarray, solver: _Solver, out: _Collector
) -> None:
    """Untargeted pool members, each regressed on all other pool members.

    Precision-matrix identity: with A = S_FF + a I over the pool F and
    Theta = A^{-1}, the ridge solution of g on R = F minus g is
    ``beta = -Theta[R, g] / Theta[g, g]``, because A_RR beta = S_Rg is the
    first block row of A Theta[:, g] = e_g after dividing by -Theta[g, g]
    (the diagonal entry A_gg does not enter). One f^3 inverse serves all f
    genes instead of f solves of size f - 1. For ``alpha="gcv"`` the
    eigendecomposition S_FF = Q diag(lam) Q^T gives, per alpha and for all g
    at once, Theta_gg, (Theta S)_gg and |Theta[:, g]|^2 and from them RSS and
    the hat-matrix trace of every leave-g-out regression (via
    A_RR^{-1} = Theta_RR - Theta_Rg Theta_gR / Theta_gg).
    """
    cp = ctx.moments
    _pos, n, s_r, S = _pool_scatter(cp, pool)
    f = len(pool)
    cols = np.searchsorted(pool, genes)  # positions of the genes in the pool
    m = len(genes)
    sgg = np.diag(S)[cols]
    if solver.method == "ols" or solver.alphas is None:
        factor, a = _pool_factor(S, solver)
        E = np.zeros((f, m))
        E[cols, np.arange(m)] = 1.0
        theta = la.cho_solve(factor, E)  # (f, m): Theta[:, genes]
        alpha = np.full(m, a)
        full_theta = la.cho_solve(factor, np.eye(f)) if solver.inference else None
    else:
        lam, Q = np.linalg.eigh(S)
        lam = np.maximum(lam, 0.0)
        Q2 = Q[cols] ** 2  # (m, f): Q_gi^2
        a = solver.alphas[:, None]  # (k, 1)
        d1 = 1.0 / (lam[None, :] + a)  # (k, f)
        t_gg = Q2 @ d1.T  # (m, k)
        ts_gg = Q2 @ (lam[None, :] * d1).T
        t_sq = Q2 @ (d1**2).T
        tr = d1.sum(axis=1)[None, :]  # tr(Theta)
        beta_b = -(ts_gg - t_gg * sgg[:, None]) / t_gg
        beta_sq = (t_sq - t_gg**2) / t_gg**2
        rss = sgg[:, None] - beta_b - a.T * beta_sq
        tr_rr = tr - t_gg - (t_sq - t_gg**2) / t_gg
        df = 1.0 + (f - 1) - a.T * tr_rr
        resid_df = n - df
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(resid_df > 0, n * np.maximum(rss, 0.0) / resid_df**2, np.inf)
        choice = np.argmin(score, axis=1)
        alpha = solver.alphas[choice]
        theta = np.empty((f, m))
        for j in np.unique(choice):  # one product per distinct chosen alpha
            sel = np.flatnonzero(choice == j)
            theta[:, sel] = (Q * (1.0 / (lam + solver.alphas[j]))) @ Q[cols[sel]].T
        full_theta = None
    t_gg = theta[cols, np.arange(m)]
    # Coefficients of g on every other pool member: -Theta[R, g] / Theta[g, g].
    keep = np.ones((m, f), dtype=bool)
    keep[np.arange(m), cols] = False
    beta_full = -(theta / t_gg[None, :]).T  # (m, f), entry g itself dropped below
    beta = beta_full[keep].reshape(m, f - 1)
    regs = np.broadcast_to(pool, (m, f))[keep].reshape(m, f - 1)
    b = S[:, cols].T[keep].reshape(m, f - 1)
    # RSS = S_gg - 2 beta.b + beta^T S_RR beta, with S_RR beta from the full S.
    Sb_full = (beta_full * keep) @ S  # (m, f)
    rss = (
        sgg
        - 2 * np.einsum("mi,mi->m", beta, b)
        + np.einsum("mi,mi->m", beta, Sb_full[keep].reshape(m, f - 1))
    )
    mean_all = cp.shift[pool] + s_r / n
    mean_r = np.broadcast_to(mean_all, (m, f))[keep].reshape(m, f - 1)
    intercept = mean_all[cols] - np.einsum("mi,mi->m", mean_r, beta)
    diag = None
    if full_theta is not None:
        # diag((S_RR)^{-1}) = diag(Theta_RR) - Theta_Rg^2 / Theta_gg
        dg = np.diag(full_theta)[None, :] - (theta**2).T / t_gg[:, None]
        diag = dg[keep].reshape(m, f - 1)
    out.add(genes, regs, beta, intercept=intercept, alpha=alpha, rss=rss,
            n_samples=cp.n_included[genes], diag=diag)


def _group_pool_solve(
    ctx: _Context, genes: np.ndarray, pool: np.ndarray, owned: list[np.ndarray],
    solver: _Solver, out: _Collector,
) -> None:
    """Untargeted genes, each regressed on the pool minus the k members it owns.

    The pool is a set of regressors (e.g. the spline basis functions of every
    regulator) and gene g owns a group G of them (its own basis): g is
    regressed on R = F minus G. Block form of the precision-matrix identity
    of :func:`_pool_solve`: with A = S_FF + a I and Theta = A^{-1},
    ``A_RR^{-1} = Theta_RR - Theta_RG Theta_GG^{-1} Theta_GR``. With b' the
    centred cross-products of g with the pool, zero on G, the padded solution
    is ``v = Theta b' - Theta_FG Theta_GG^{-1} (Theta b')_G`` (v_G = 0). In
    the eigenbasis S_FF = Q diag(lam) Q^T, z = Q^T b' and D = 1 / (lam + a),
    ``v = Q w`` with ``w = D (z - Q_G^T c)``, ``c = Theta_GG^{-1} (Theta b')_G``,
    so ``RSS = S_gg - 2 w.z + sum lam w^2`` and the hat-matrix trace
    ``1 + |R| - a tr(A_RR^{-1})`` with
    ``tr(A_RR^{-1}) = tr(Theta) - tr(Theta_GG^{-1} (Theta^2)_GG)``. Per gene
    and candidate alpha this costs O(k^2 f) (f = |F|), after one
    eigendecomposition of S_FF and one product Q^T B': every gene and every
    GCV candidate for about the price of one f x f factorization.
    """
    if solver.method != "ridge":
        raise ParameterError("fit_linear: grouped pool members need method='ridge'.")
    cp = ctx.moments
    pos, n, s_r, S = _pool_scatter(cp, pool)
    f = len(pool)
    member = {int(g): np.searchsorted(pool, owned_g) for g, owned_g in zip(genes, owned,
                                                                            strict=True)}
    lam, Q = np.linalg.eigh(S)
    lam = np.maximum(lam, 0.0)
    alphas = np.array([solver.alpha]) if solver.alphas is None else solver.alphas
    sizes = np.array([len(member[int(g)]) for g in genes])
    work = []
    for k in np.unique(sizes):  # one pass per group size (all equal for a spline basis)
        same = genes[sizes == k]
        step = max(1, STACK_VALUES // max(1, 4 * int(k) * f))
        work += [(same[i : i + step], int(k)) for i in range(0, len(same), step)]
    for chosen, k in work:
        G = np.array([member[int(g)] for g in chosen]).reshape(len(chosen), k)  # (m, k)
        m = len(chosen)
        s_y = cp.target_sums[chosen]
        B = cp.cross[pos][:, chosen] - np.outer(s_r, s_y) / n  # (f, m)
        B[G.T, np.arange(m)[None, :]] = 0.0
        syy = cp.target_squares[chosen] - s_y**2 / n
        z = Q.T @ B  # (f, m)
        QG = Q[G]  # (m, k, f)

        def padded_solution(a: np.ndarray, z=z, QG=QG, m=m, k=k):
            """w (m, f) and tr(A_RR^{-1}) (m,) for per-gene penalties a (m,)."""
            D = 1.0 / (lam[None, :] + a[:, None])  # (m, f)
            zt = z.T
            theta_b = np.einsum("mkf,mf->mk", QG, D * zt)  # (Theta b')_G
            theta_gg = np.einsum("mkf,mf,mlf->mkl", QG, D, QG)
            theta2_gg = np.einsum("mkf,mf,mlf->mkl", QG, D * D, QG)
            c = np.linalg.solve(theta_gg, theta_b[..., None])[..., 0]
            w = D * (zt - np.einsum("mkf,mk->mf", QG, c))
            inner = np.linalg.solve(theta_gg, theta2_gg)
            trace = D.sum(axis=1) - np.trace(inner, axis1=1, axis2=2)
            return w, trace

        best = np.full(m, np.inf)
        choice = np.zeros(m, dtype=np.int64)
        if len(alphas) > 1:
            for j, a in enumerate(alphas):
                w, trace = padded_solution(np.full(m, a))
                rss = syy - 2 * np.einsum("mf,fm->m", w, z) + np.einsum("f,mf->m", lam, w * w)
                df = 1.0 + (f - k) - a * trace
                with np.errstate(divide="ignore", invalid="ignore"):
                    score = np.where(n - df > 0, n * np.maximum(rss, 0.0) / (n - df) ** 2,
                                     np.inf)
                score = np.where(np.isfinite(score), score, np.inf)
                better = score < best
                best[better] = score[better]
                choice[better] = j
        alpha = alphas[choice]
        w, _ = padded_solution(alpha)
        v = (Q @ w.T).T  # (m, f), zero on each gene's own group
        rss = syy - 2 * np.einsum("mf,fm->m", w, z) + np.einsum("f,mf->m", lam, w * w)
        keep = np.ones((m, f), dtype=bool)
        keep[np.arange(m)[:, None], G] = False
        beta = v[keep].reshape(m, f - k)
        regs = np.broadcast_to(pool, (m, f))[keep].reshape(m, f - k)
        mean_all = cp.shift[pool] + s_r / n
        mean_r = np.broadcast_to(mean_all, (m, f))[keep].reshape(m, f - k)
        intercept = cp.shift[chosen] + s_y / n - np.einsum("mi,mi->m", mean_r, beta)
        out.add(chosen, regs, beta, intercept=intercept, alpha=alpha, rss=rss,
                n_samples=cp.n_included[chosen])


# --------------------------------------------------------------------------- entry point
def _check_cost(
    n: int,
    p: int,
    u: int,
    v: int,
    stacked_flops: float,
    pool_flops: float,
    coef_entries: float,
    pool_size: int,
) -> None:
    """Fail early when the fit would not fit in memory or would take hours."""
    memory = 8.0 * u * (p + v) + 8.0 * 3 * pool_size**2 + 16.0 * coef_entries
    memory += 8.0 * (BLOCK_VALUES * 3 + STACK_VALUES * 2)
    flops = 2.0 * n * u * (p + v) + stacked_flops + pool_flops
    seconds = flops / _FLOPS_PER_SECOND
    limit = MAX_MEMORY_FRACTION * physical_memory()
    if memory > limit or seconds > MAX_SECONDS:
        raise ParameterError(
            f"Fitting {p} genes on {u} regulators from {n} samples would need about "
            f"{format_bytes(memory)} of memory (limit {format_bytes(limit)}) and "
            f"{flops:.2g} floating-point operations (about {seconds / 60:.0f} min at "
            f"{_FLOPS_PER_SECOND:.0e}/s; limit {MAX_SECONDS / 60:.0f} min). Give a network "
            f"(fit(adata, network)) or a shorter regulators= list (e.g. the transcription "
            f"factors, causalcell.datasets.load_tf_names()), or fit on pseudobulk rows "
            f"(causalcell.data.pseudobulk) to reduce the per-gene downdates."
        )


@dataclass(frozen=True)
class _Structure:
    """Who regresses on whom: network parents or a regulator pool, and the cost."""

    parents: sp.csc_array | None  # (p, p) bool, regulators r of g at (r, g)
    pool: np.ndarray  # sorted pool (empty in network mode)
    owner: np.ndarray  # gene owning each pool member (a gene is not regressed on its own)
    sizes: np.ndarray  # (p,) regulators per gene
    regulators: np.ndarray  # U: every gene that regulates some gene
    stacked_flops: float
    pool_flops: float
    coef_entries: float


def _solver(
    method: str, alpha: float, alphas: np.ndarray | None, inference: bool
) -> _Solver:
    """Check the solve arguments."""
    if method not in ("ridge", "ols"):
        raise ParameterError(f"fit_linear: method must be 'ridge' or 'ols', got {method!r}.")
    if method == "ridge" and alphas is None and not (math.isfinite(alpha) and alpha >= 0):
        raise ParameterError(f"alpha must be a finite number >= 0, got {alpha!r}.")
    if alphas is not None:
        alphas = np.asarray(alphas, dtype=np.float64).ravel()
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas < 0):
            raise ParameterError(f"alphas must be finite numbers >= 0, got {alphas!r}.")
    return _Solver(
        method=method,  # type: ignore[arg-type]
        alpha=float(alpha) if method == "ridge" else 0.0,
        alphas=alphas if method == "ridge" else None,
        inference=inference and method == "ols",
    )


def _structure(
    parents: sp.csc_array | None, pool: np.ndarray | None, n_targeted: np.ndarray,
    gcv: bool, pool_owner: np.ndarray | None = None, responses: np.ndarray | None = None,
) -> _Structure:
    """Regulator sets of every gene and the flops of their solves (for the cost check)."""
    p = len(n_targeted)
    fitted = np.ones(p, dtype=bool)
    if responses is not None:
        fitted = np.zeros(p, dtype=bool)
        fitted[np.asarray(responses, dtype=np.int64)] = True
    if (parents is None) == (pool is None):
        raise ParameterError("fit_linear: give exactly one of parents= and pool=.")
    gcv_factor = 4 if gcv else 1
    if parents is not None:
        P = sp.csc_array(parents).astype(bool)
        P.setdiag(False)
        P.eliminate_zeros()
        P.sort_indices()
        sizes = np.where(fitted, np.diff(P.indptr), 0)
        r = sizes.astype(float)
        return _Structure(
            parents=P,
            pool=np.zeros(0, dtype=np.int64),
            owner=np.zeros(0, dtype=np.int64),
            sizes=sizes,
            regulators=np.unique(P.indices),
            stacked_flops=float(np.sum(r**3 / 3 * gcv_factor + 2 * n_targeted * r**2)),
            pool_flops=0.0,
            coef_entries=float(P.nnz),
        )
    pool_idx, first = np.unique(np.asarray(pool, dtype=np.int64), return_index=True)
    if pool_idx.size and (pool_idx[0] < 0 or pool_idx[-1] >= p):
        raise ParameterError("fit_linear: pool holds gene indices out of range.")
    if pool_owner is None:
        owner = pool_idx
    else:
        owner = np.asarray(pool_owner, dtype=np.int64)
        if owner.shape != np.shape(pool) or (owner.size and (owner.min() < -1 or owner.max() >= p)):
            raise ParameterError("fit_linear: pool_owner needs one gene index (or -1) per pool "
                                 "member.")
        owner = owner[first]
    f = len(pool_idx)
    owned = np.bincount(owner[owner >= 0], minlength=p)
    n_t = float(np.count_nonzero(n_targeted))
    return _Structure(
        parents=None,
        pool=pool_idx,
        owner=owner,
        sizes=np.where(fitted, f - owned, 0),
        regulators=pool_idx,
        stacked_flops=n_t * f**3 / 3 * gcv_factor + 2.0 * float(n_targeted.sum()) * f**2,
        pool_flops=2.0 * f**3 * gcv_factor + 2.0 * f * f * p,
        coef_entries=float(f) * p,
    )


def fit_linear(
    X: Any,
    interventions: Interventions | None,
    *,
    parents: sp.csc_array | None = None,
    pool: np.ndarray | None = None,
    pool_owner: np.ndarray | None = None,
    responses: np.ndarray | None = None,
    method: Literal["ridge", "ols"] = "ridge",
    alpha: float = 1.0,
    alphas: np.ndarray | None = None,
    inference: bool = False,
    block_rows: int | None = None,
    row_weights: np.ndarray | None = None,
    samples: Moments | None = None,
    verbose: bool = False,
    names: Any = None,
    what: str = "X",
    prepared: PassBuffers | None = None,
) -> LinearFit:
    """Fit every gene's ridge / OLS regression on its regulators, exactly.

    For each gene g: the samples in which g is targeted are left out; the
    regulators take their level T where they are targeted with a known level
    (their measured value otherwise); the intercept is not penalized. The
    result equals a per-gene ``sklearn.linear_model.Ridge`` /
    ``LinearRegression`` fit on those samples (see the module docstring for
    how it is computed).

    Parameters
    ----------
    X
        Expression, samples x genes: a NumPy array, a SciPy sparse matrix or
        a Dask array chunked along samples (read once, block by block, on the
        active Dask client or the threaded scheduler; the values the
        per-gene downdates need are collected during that pass). Or a
        :class:`~causalcell.data._design.Design` (X with its interventions,
        e.g. one whose columns include derived regressors such as the spline
        basis of :mod:`causalcell.models._spline`); ``interventions`` is
        then None.
    interventions
        The interventions of the samples (their mask and levels T).
    parents
        (p, p) sparse matrix whose nonzero entries (r, g) are the regulators r
        of g (network mode). The diagonal is ignored.
    pool
        Gene indices: every gene is regressed on all pool members but itself
        (regulator-list mode). Exactly one of ``parents`` and ``pool``.
    pool_owner
        With ``pool``: the gene (column index, or -1) that owns each pool
        member; a gene is regressed on every pool member it does not own
        (default: each member owns itself). Ridge only.
    responses
        Columns to fit (default: every column); the others get an
        intercept-only model.
    method
        ``"ridge"`` or ``"ols"`` (no penalty).
    alpha
        Ridge penalty on the sum of squares (scikit-learn's ``Ridge`` scale).
    alphas
        When given, choose the penalty per gene among these by generalized
        cross-validation (``alpha`` is then ignored).
    inference
        Also compute OLS standard errors (``method="ols"`` only).
    block_rows
        Rows per block of the pass over the samples.
    row_weights
        Also compute ``row_weights @ X`` in the same pass
        (``LinearFit.samples.weighted_sum``, e.g. the control mean): X is read once.
    samples
        A pass over these samples already made (``LinearFit.samples`` of an
        earlier fit on the same design, whose regulators include this fit's):
        reused, X is not read again. ``X`` is then that fit's
        ``LinearFit.reads`` (for a Dask X, the design holding the values its
        pass gathered, which must cover this fit's leave-outs).
    verbose
        Progress bars.
    names
        Gene names, for messages.
    what
        The expression matrix's name, for messages (e.g. ``"layer 'log1p'"``).
    prepared
        The pass's work arrays, made before the caller's setup (see
        :class:`~causalcell.data._moments.PassBuffers`); dense X in memory only.

    Returns
    -------
    LinearFit

    Raises
    ------
    DataContractError
        X holds NaN or infinite values (found by the pass over the samples, see
        :func:`~causalcell.data._moments.moments`).
    ParameterError
        Invalid arguments, a singular OLS system, or a fit too large for this
        machine (with the expected memory and time, and what to do instead).
    """
    solver = _solver(method, alpha, alphas, inference)
    design = X if isinstance(X, Design) else Design(X, interventions)
    X = design.X
    structure = _structure(parents, pool, design.n_targeted, solver.alphas is not None,
                           pool_owner, responses)
    n, p = design.shape
    regulators = structure.regulators
    v = int(np.count_nonzero(design.n_targeted[regulators]))
    _check_cost(n, p, len(regulators), v, structure.stacked_flops, structure.pool_flops,
                structure.coef_entries, len(structure.pool))
    if samples is None:
        lazy = is_dask_array(X)
        gather = (leave_out_gather(design, structure.parents, structure.pool, "fit_linear")
                  if lazy else None)
        cp = moments(design, regulators, block_rows=block_rows, gather=gather,
                     row_weights=row_weights, what=what, verbose=verbose,
                     prepared=prepared)
        reads = design.with_values(cp.gathered) if lazy else design
    else:
        if row_weights is not None or not np.isin(regulators, samples.regulators).all():
            raise ValueError("fit_linear: samples= must cover every regulator of this fit, "
                             "and row_weights= cannot be computed from it.")
        cp, reads = samples, design
    ctx = _Context(design=reads, moments=cp)
    out = _Collector(p, solver.inference)
    if structure.parents is not None:
        fitted = _solve_network(ctx, structure, solver, out, verbose, names)
    else:
        fitted = _solve_pool(ctx, structure, solver, out, verbose, names)
    _intercept_only(cp, ~fitted & (cp.n_included > 0), solver, out)
    result = out.result()
    result.samples, result.reads = cp, reads
    return result


def _solve_network(
    ctx: _Context, structure: _Structure, solver: _Solver, out: _Collector, verbose: bool,
    names: Any,
) -> np.ndarray:
    """Network mode: every gene on its own parents, in stacks. Returns the fitted genes."""
    P, sizes = structure.parents, structure.sizes
    n_included = ctx.moments.n_included
    fit_genes = np.flatnonzero((sizes > 0) & (n_included > 0))

    def regs_of(genes: np.ndarray, r: int) -> np.ndarray:
        idx = P.indptr[genes][:, None] + np.arange(r)[None, :]
        return P.indices[idx].astype(np.int64)

    _check_ols_dof(solver, n_included[fit_genes], sizes[fit_genes], fit_genes, names)
    _solve_by_size(ctx, fit_genes, regs_of, sizes[fit_genes], solver, out, verbose)
    fitted = np.zeros(len(sizes), dtype=bool)
    fitted[fit_genes] = True
    return fitted


def _solve_pool(
    ctx: _Context, structure: _Structure, solver: _Solver, out: _Collector, verbose: bool,
    names: Any,
) -> np.ndarray:
    """Regulator-list mode: every gene on all pool members but itself. Returns the fitted genes.

    Untargeted genes outside the pool share one factorization, untargeted
    members one inverse; targeted genes need their own downdated systems.
    """
    pool, sizes, owner = structure.pool, structure.sizes, structure.owner
    p, f = len(sizes), len(pool)
    all_genes = np.arange(p)
    in_pool = np.bincount(owner[owner >= 0], minlength=p) > 0  # owns pool members
    targeted = ctx.design.n_targeted > 0
    fitted = (sizes > 0) & (ctx.moments.n_included > 0)
    _check_ols_dof(solver, ctx.moments.n_included[fitted], sizes[fitted], all_genes[fitted],
                   names)
    shared = all_genes[fitted & ~targeted & ~in_pool]
    members = all_genes[fitted & ~targeted & in_pool]
    rest = all_genes[fitted & targeted]
    if shared.size:
        _shared_solve(ctx, shared, pool, solver, out)
    if members.size and np.array_equal(owner, pool):  # each gene owns its own column
        _pool_solve(ctx, members, pool, solver, out)
    elif members.size:
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], members)
        counts = np.bincount(owner[owner >= 0], minlength=p)[members]
        owned = [pool[order[b : b + c]] for b, c in zip(bounds, counts, strict=True)]
        _group_pool_solve(ctx, members, pool, owned, solver, out)
    if rest.size:

        def regs_of(genes: np.ndarray, r: int) -> np.ndarray:
            full = np.broadcast_to(pool, (len(genes), f))
            if r == f:
                return np.array(full)
            mine = np.broadcast_to(owner, (len(genes), f)) == genes[:, None]
            return full[~mine].reshape(len(genes), r)

        _solve_by_size(ctx, rest, regs_of, sizes[rest], solver, out, verbose)
    return fitted


def _intercept_only(cp: Moments, only: np.ndarray, solver: _Solver, out: _Collector) -> None:
    """Genes without regulators: the mean over the samples where they are not targeted."""
    n_only = cp.n_included[only].astype(np.float64)
    out.intercept[only] = cp.shift[only] + cp.target_sums[only] / n_only
    out.rss[only] = cp.target_squares[only] - cp.target_sums[only] ** 2 / n_only
    out.n_samples[only] = cp.n_included[only]
    out.alpha[only] = solver.alpha


def _check_ols_dof(
    solver: _Solver, n_used: np.ndarray, sizes: np.ndarray, genes: np.ndarray, names: Any
) -> None:
    if solver.method != "ols":
        return
    bad = np.flatnonzero(n_used <= sizes + 1 if solver.inference else n_used <= sizes)
    if bad.size:
        i = bad[0]
        gene = repr(str(names[genes[i]])) if names is not None else f"#{int(genes[i])}"
        raise ParameterError(
            f"regressor='ols': gene {gene} has {int(sizes[i])} regulators but only "
            f"{int(n_used[i])} samples in which it is not targeted ({bad.size} such genes); "
            f"OLS needs more samples than regulators + 1. Use regressor='ridge', fewer "
            f"regulators, or more samples."
        )


