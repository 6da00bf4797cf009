"""The feedback-consistent linear fit: two-stage least squares with the perturbations as
instruments (``ConditionalGRNRegressor(regressor="iv")``).

Under feedback (x = W^T x + e with loops), a gene's regulators depend on the
gene's own noise through the loop, so the per-gene regression of x_g on its
regulators is biased, and the bias does not shrink with data. The
perturbation conditions are valid instruments: which genes a sample's tool
targets is set by the experimenter, independent of the noise, and (for a
condition that does not target g) it moves g only through g's regulators.

With the condition indicators as instruments, the first stage of two-stage
least squares (2SLS) replaces each regulator by its mean in the sample's
condition, and the second stage regresses x_g on those means. Because the
fitted regulators are constant within a condition, 2SLS of gene g equals the
**weighted least squares of the condition means of g on the condition means
of its regulators**, weights = samples per condition, over the conditions
that do not target g (exact, not an approximation; Angrist & Pischke 2009,
section 4.1.3 on grouped-data IV). So:

1. **One pass over the samples** (:func:`causalcell.data._stats.group_moments`,
   in row blocks, on Dask too) gives the per-condition sums of X; the
   targeted entries of known level are replaced by T (the design Z, the
   convention of every causalcell fit) from one gather of those entries.
2. **Gram form**: the weighted cross-products of the condition means of
   every regulator with every gene are formed once (K conditions: K u p
   flops for u regulators and p genes); each gene's statistics are those
   totals minus the few conditions that target it (an exact downdate).
3. **Batched solves**: genes with the same number of regulators are stacked
   and solved in one LAPACK call per stack.
4. **Inference** (``rss``, ``stderr``): the residual of the structural
   equation x_g - a - z_R b uses the measured regulators, whose
   within-condition products the condition sums do not hold: a second pass
   forms the samples' moments (:func:`causalcell.data._moments.moments`, the
   ridge solver's, exact leave-out of the samples that target g), and the
   same pass gives the control mean. The 2SLS covariance is
   rss / (n - r - 1) x (Zhat^T Zhat)^-1, whose regulator block is the inverse
   of the count-weighted scatter of the condition means (Wooldridge 2010,
   Econometric Analysis of Cross Section and Panel Data, section 5.2).

Identifiability (the rank condition of 2SLS, and strong instruments): the
condition means of g's regulators, over the conditions that keep g, must move
independently of each other (with the intercept) and clearly beyond their
sampling noise. It holds when each regulator of g is perturbed in some
condition that does not target g (or is moved there independently of the
other regulators), and needs at least ``r_g + 1`` such conditions. The
strength is measured by a first-stage F statistic: the smallest eigenvalue of
the regulators' between-condition scatter in units of their pooled
within-condition variance, per instrument (a Cragg & Donald 1993 type
statistic, within-condition correlations ignored); below
:data:`MIN_FIRST_STAGE_F` = 10 (Staiger & Stock 1997) the gene counts as not
identified: 2SLS with weak instruments is biased towards the per-gene fit and
erratic. :func:`fit_iv` leaves those edges out (the intercept absorbs the
regulator) and returns them; :func:`unidentified_message` names them.
``ConditionalGRNRegressor(regressor="iv")`` warns and, with
``iv_fallback="ridge"`` (its default), refits each such gene that is not on
a loop of the network by the per-gene ridge fit on all its regulators
(consistent for an acyclic network, biased under feedback); with
``iv_fallback="drop"`` the edges stay out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from causalcell._blas import one_blas_thread
from causalcell.data._design import Design
from causalcell.data._interventions import Interventions
from causalcell.data._moments import LeftOut, Moments, leave_out_gather, left_out, moments
from causalcell.data._sparse import gather_entries
from causalcell.data._stats import group_moments
from causalcell.data.lazy import is_dask_array
from causalcell.models._solve import STACK_VALUES, LinearFit

__all__ = ["fit_iv"]

# Smallest eigenvalue of a gene's regulator correlation matrix (over the
# conditions that keep it) below which its system counts as rank-deficient.
_RANK_TOLERANCE = 1e-10
# Matrices per batched Cholesky check of the first-stage strength (a failing
# chunk falls back to eigenvalues, so failures stay cheap where they are rare).
_CHECK_CHUNK = 64
# Unidentified edges named in the error message, at most.
_SHOWN = 8
#: Smallest first-stage F statistic (see :func:`fit_iv`) of an identified gene:
#: the rule of thumb of Staiger & Stock (1997) against weak instruments.
MIN_FIRST_STAGE_F = 10.0


def condition_means(
    X: Any, interventions: Interventions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-condition means of the design Z (targeted entries of known level at T).

    One pass over X (dense, sparse or Dask, in row blocks) plus one gather of
    the targeted entries. Returns the means (K, p), the samples per condition
    (K,) and every gene's pooled within-condition variance (p,) (of the
    measured values; the noise level the first-stage strength is measured
    against).
    """
    iv = interventions
    K = len(iv.conditions)
    sums = group_moments(X, iv.codes, K, squares=True)
    total = np.asarray(sums.sums, dtype=np.float64).copy()
    rows, cols = iv.entry_rows, iv.mask.indices
    known = ~np.isnan(iv.levels)
    if known.any():
        measured = gather_entries(X, rows[known], cols[known])
        np.add.at(total, (iv.codes[rows[known]], cols[known]), iv.levels[known] - measured)
    count = np.asarray(sums.count, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = total / count[:, None]
        measured_means = np.where(count[:, None] > 0, sums.sums / count[:, None], 0.0)
    within = np.asarray(sums.squares).sum(axis=0) - (count @ measured_means**2)
    within_var = np.maximum(within, 0.0) / max(float(count.sum()) - int((count > 0).sum()), 1.0)
    return np.where(count[:, None] > 0, means, 0.0), count, within_var


def _condition_targets(interventions: Interventions) -> sp.csc_array:
    """(K, p) boolean: condition k targets gene g (from one sample of each condition)."""
    iv = interventions
    K = len(iv.conditions)
    first = np.full(K, -1, dtype=np.int64)
    order = np.arange(len(iv.codes))[::-1]
    first[iv.codes[order]] = order  # the last write per condition is its first sample
    present = (first >= 0).astype(np.float64)
    rows = sp.csr_array(iv.mask, dtype=np.float64)[np.maximum(first, 0)]
    # Conditions without samples (weight 0) target nothing.
    out = sp.csc_array(sp.diags_array(present) @ rows, dtype=bool)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def fit_iv(
    X: Any,
    interventions: Interventions,
    *,
    parents: sp.csc_array | None = None,
    pool: np.ndarray | None = None,
    names: Any = None,
    verbose: bool = False,
    min_strength: float = MIN_FIRST_STAGE_F,
    row_weights: np.ndarray | None = None,
) -> tuple[LinearFit, np.ndarray]:
    """Two-stage least squares of every gene on its regulators, the conditions as instruments.

    For gene g with regulators R: the samples that target g are left out
    (whole conditions: a condition targets the same genes in all its
    samples), targeted regulators enter at their level T, and the result
    equals a per-gene 2SLS of x_g on [1, x_R] with the indicators of the
    remaining conditions as instruments (see the module docstring for how
    it is computed from the condition sums, and the inference from a second
    pass).

    Parameters
    ----------
    X
        Expression, samples x genes (dense, sparse or Dask).
    interventions
        The samples' interventions.
    parents
        (p, p) sparse, nonzero (r, g) when r regulates g (network mode).
    pool
        Gene indices: every gene regressed on all pool members but itself.
        Exactly one of ``parents`` and ``pool``.
    names
        Gene names, for messages.
    verbose
        Progress bar over the stacks of genes.
    min_strength
        Smallest first-stage F statistic of an identified regulator set
        (default :data:`MIN_FIRST_STAGE_F`).
    row_weights
        Per-sample weights whose weighted sum of X the pass over the samples
        returns (``samples.weighted_sum``, e.g. the control mean).

    Returns
    -------
    LinearFit
        ``alpha`` is 0 (no penalty), ``n_samples`` counts the samples used.
        ``rss`` is the residual sum of squares of the structural equation,
        x_g - a_g - sum_r b_rg z_r with the measured regulators z (not the
        first-stage fitted values), over the samples that keep g;
        ``stderr`` the 2SLS standard errors sqrt(rss / dof x
        [(Zhat^T Zhat)^-1]_rr), Zhat the first-stage fitted regulators (the
        condition means) and ``dof = n - r - 1``: statsmodels' ``IV2SLS``.
        ``samples`` is the pass over the samples that gives them (its
        ``weighted_sum``; for Dask X the gathered values).
        Edges the conditions do not identify (first-stage F below
        ``min_strength``, or rank-deficient condition means) are left out
        of ``coef``; the gene's other regulators are fitted.
    numpy.ndarray
        (n_edges, 2) int: the (regulator, target) edges left out.
    """
    from causalcell._progress import tqdm

    if (parents is None) == (pool is None):
        raise ValueError("fit_iv: give exactly one of parents= and pool=.")
    means, count, within_var = condition_means(X, interventions)
    p = means.shape[1]
    targets = _condition_targets(interventions)
    regs = _Regulators(p, parents, pool)
    totals = _ConditionTotals(means, count, regs.regulators, targets)
    n_samples = totals.n_samples
    fit_genes = np.flatnonzero((regs.sizes > 0) & (n_samples > 0))
    order = np.lexsort((totals.n_excluded[fit_genes], regs.sizes[fit_genes]))
    fit_genes = fit_genes[order]

    # The samples' own moments (one more pass): the structural residuals need the
    # within-condition products of the regulators with the gene.
    samples, reads = _sample_pass(X, interventions, regs, row_weights, verbose)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    ses: list[np.ndarray] = []
    rss = np.full(p, np.nan)
    intercept = np.zeros(p)
    lost_regulators: list[np.ndarray] = []  # the edges not identified: regulator ...
    lost_targets: list[np.ndarray] = []  # ... and target
    with one_blas_thread(int(regs.sizes.max(initial=0))):
        for genes, r in tqdm(_stacks(fit_genes, regs.sizes, totals.n_excluded), desc="IV solves",
                             unit="stack", disable=not verbose, leave=False):
            R = regs.of(genes, r)  # (m, r)
            moments = totals.moments(genes, R)
            active = _identified(moments, R, within_var, totals.n_excluded[genes], count,
                                 min_strength)
            beta, gene_intercept, inverse_diagonal = moments.solve(active)
            intercept[genes] = gene_intercept
            rss[genes] = _structural_rss(samples, reads, genes, R, beta)
            dof = totals.n_samples[genes] - active.sum(axis=1) - 1
            with np.errstate(divide="ignore", invalid="ignore"):
                sigma2 = np.where(dof > 0, rss[genes] / dof, np.nan)
            ses.append(np.sqrt(np.maximum(inverse_diagonal, 0.0)
                               * sigma2[:, None])[active])
            lost_regulators.append(R[~active])
            lost_targets.append(np.broadcast_to(genes[:, None], R.shape)[~active])
            rows.append(R[active])
            cols.append(np.broadcast_to(genes[:, None], R.shape)[active])
            vals.append(beta[active])

    # Genes without regulators: their mean over the conditions that keep them.
    only = np.flatnonzero((regs.sizes == 0) & (n_samples > 0))
    if only.size:
        kept = ~targets[:, only].toarray()  # (K, m)
        intercept[only] = (count @ (means[:, only] * kept)) / (count @ kept)
        rss[only] = LeftOut(samples, only, np.zeros((len(only), 0), dtype=np.int64),
                            None).target_sum_of_squares()
    edge_rows, edge_cols = _concatenate(rows, np.int64), _concatenate(cols, np.int64)
    coef = sp.csr_array((_concatenate(vals, np.float64), (edge_rows, edge_cols)), shape=(p, p))
    stderr = sp.csr_array((_concatenate(ses, np.float64), (edge_rows, edge_cols)), shape=(p, p))
    dof = n_samples - np.diff(sp.csc_array(coef).indptr) - 1
    fit = LinearFit(coef=coef, intercept=intercept, alpha=np.zeros(p), n_samples=n_samples,
                    rss=np.where(n_samples > 0, rss, np.nan), stderr=stderr, dof=dof,
                    samples=samples, reads=reads)
    unidentified = np.column_stack([_concatenate(lost_regulators, np.int64),
                                    _concatenate(lost_targets, np.int64)])
    return fit, unidentified.astype(np.int64)


def _sample_pass(
    X: Any, interventions: Interventions, regs: _Regulators, row_weights: np.ndarray | None,
    verbose: bool,
) -> tuple[Moments, Design]:
    """The pass over the samples (the moments the ridge solver reads) and the
    design its leave-outs read (for Dask X, the values the pass gathered)."""
    design = Design(X, interventions)
    gather = (leave_out_gather(design, regs.parents, regs.regulators, "regressor='iv'")
              if is_dask_array(X) else None)
    samples = moments(design, regs.regulators, gather=gather, row_weights=row_weights,
                      verbose=verbose)
    return samples, design if gather is None else design.with_values(samples.gathered)


def _structural_rss(samples: Moments, reads: Design, genes: np.ndarray, R: np.ndarray,
                    beta: np.ndarray) -> np.ndarray:
    """Residual sums of squares of x_g - a_g - z_R b over the samples that keep each
    gene, from the centred sample moments (the 2SLS intercept makes the residuals
    sum to 0): S_gg - 2 b^T S_Rg + b^T S_RR b. In chunks of genes whose left-out
    values (targeted samples x regulators) stay below :data:`STACK_VALUES`."""
    out = np.empty(len(genes))
    most_left = max(int(reads.n_targeted[genes].max(initial=0)), 1)
    step = max(1, STACK_VALUES // (most_left * max(R.shape[1], 1)))
    for start in range(0, len(genes), step):
        part = left_out(samples, reads, genes[start:start + step], R[start:start + step])
        b = beta[start:start + step]
        quad = np.einsum("mi,mij,mj->m", b, part.scatter(), b)
        out[start:start + step] = (part.target_sum_of_squares()
                                   - 2.0 * np.einsum("mi,mi->m", b, part.target_scatter()) + quad)
    return np.maximum(out, 0.0)


def _concatenate(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


class _Regulators:
    """Which genes regulate which: from a parent matrix (network mode) or a pool
    (every gene regressed on all pool members but itself)."""

    def __init__(self, p: int, parents: sp.csc_array | None, pool: np.ndarray | None) -> None:
        self.parents = None
        if parents is not None:
            P = sp.csc_array(parents).astype(bool)
            P.setdiag(False)
            P.eliminate_zeros()
            P.sort_indices()
            self.parents = P
            self.sizes = np.diff(P.indptr).astype(np.int64)
            self.regulators = np.unique(P.indices).astype(np.int64)
        else:
            pool_idx = np.unique(np.asarray(pool, dtype=np.int64))
            self.regulators = pool_idx
            in_pool = np.zeros(p, dtype=bool)
            in_pool[pool_idx] = True
            self.sizes = len(pool_idx) - in_pool.astype(np.int64)

    def of(self, genes: np.ndarray, r: int) -> np.ndarray:
        """(m, r) regulators of ``genes``, which all have ``r`` of them."""
        if self.parents is not None:
            idx = self.parents.indptr[genes][:, None] + np.arange(r)[None, :]
            return self.parents.indices[idx].astype(np.int64)
        full = np.broadcast_to(self.regulators, (len(genes), len(self.regulators)))
        if r == len(self.regulators):
            return np.array(full)
        return full[full != genes[:, None]].reshape(len(genes), r)


def _stacks(fit_genes: np.ndarray, sizes: np.ndarray,
            n_excluded: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Genes (sorted by regulator count) in stacks of equal regulator count, each
    small enough (:data:`STACK_VALUES`) for its batched arrays."""
    stacks = []
    key = sizes[fit_genes]
    bounds = np.flatnonzero(np.diff(key)) + 1
    for grp in np.split(np.arange(len(fit_genes)), bounds) if len(fit_genes) else []:
        r = int(key[grp[0]])
        k_max = int(n_excluded[fit_genes[grp]].max(initial=0))
        step = max(1, STACK_VALUES // max(1, 3 * r * r + k_max * (r + 1) + 8 * r))
        stacks.extend((fit_genes[grp[i : i + step]], r) for i in range(0, len(grp), step))
    return stacks


class _ConditionTotals:
    """Weighted cross-products of the condition means over every condition, shifted
    by the overall mean for accuracy; a gene's own statistics are these minus the
    conditions that target it (:meth:`moments`)."""

    def __init__(self, means: np.ndarray, count: np.ndarray, regulators: np.ndarray,
                 targets: sp.csc_array) -> None:
        p = means.shape[1]
        self.count = count
        self.weight_total = float(count.sum())
        self.shift = count @ means / self.weight_total
        self.Mc = means - self.shift
        Mw = self.Mc * count[:, None]
        self.s_all = Mw.sum(axis=0)  # (p,) ~ 0 by construction, kept for exactness
        self.pos = np.full(p, -1, dtype=np.int64)
        self.pos[regulators] = np.arange(len(regulators))
        self.Q_reg = self.Mc[:, regulators].T @ Mw  # (u, p): regulators x every gene
        self.sq_all = np.einsum("kp,kp->p", self.Mc, Mw)
        self.excl_ptr, self.excl_cond = targets.indptr, targets.indices
        self.n_excluded = np.diff(self.excl_ptr)
        n_samples = np.full(p, self.weight_total) - np.asarray(
            targets.T.astype(np.float64) @ count).ravel()
        self.n_samples = np.rint(n_samples).astype(np.int64)

    def moments(self, genes: np.ndarray, R: np.ndarray) -> _GeneMoments:
        """The stacked centred moments of ``genes`` on their regulators ``R`` over
        the conditions that keep each gene (an exact downdate of the totals)."""
        m = len(genes)
        pr = self.pos[R]
        Q = self.Q_reg[pr[:, :, None], R[:, None, :]]  # (m, r, r) regulator cross-products
        b = self.Q_reg[pr, genes[:, None]]  # (m, r) regulator x gene
        s_R = self.s_all[R]
        s_g = self.s_all[genes].copy()
        W = np.full(m, self.weight_total)
        counts = self.n_excluded[genes]
        k = int(counts.max(initial=0))
        if k:
            padded = np.zeros((m, k), dtype=np.int64)
            valid = np.arange(k)[None, :] < counts[:, None]
            which = np.repeat(np.arange(m), counts)
            offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            padded[which, offset] = self.excl_cond[np.repeat(self.excl_ptr[genes], counts)
                                                   + offset]
            w = np.where(valid, self.count[padded], 0.0)  # (m, k)
            ER = self.Mc[padded[:, :, None], R[:, None, :]]  # (m, k, r)
            Eg = self.Mc[padded, genes[:, None]]  # (m, k)
            wER = ER * w[:, :, None]
            Q = Q - np.einsum("mki,mkj->mij", wER, ER)
            b = b - np.einsum("mki,mk->mi", wER, Eg)
            s_R = s_R - wER.sum(axis=1)
            s_g = s_g - (w * Eg).sum(axis=1)
            W = W - w.sum(axis=1)
        S = Q - s_R[:, :, None] * s_R[:, None, :] / W[:, None, None]
        S = 0.5 * (S + S.transpose(0, 2, 1))
        bc = b - s_R * (s_g / W)[:, None]
        mean_R = self.shift[R] + s_R / W[:, None]
        mean_g = self.shift[genes] + s_g / W
        return _GeneMoments(S, bc, mean_R, mean_g)


class _GeneMoments:
    """Stacked per-gene statistics: regulator scatter ``S`` (m, r, r), regulator x
    gene cross-products ``bc`` (m, r), and the weighted means."""

    def __init__(self, S: np.ndarray, bc: np.ndarray, mean_R: np.ndarray,
                 mean_g: np.ndarray) -> None:
        self.S, self.bc, self.mean_R, self.mean_g = S, bc, mean_R, mean_g
        self.sd = np.sqrt(np.maximum(np.diagonal(S, axis1=1, axis2=2), 0.0))
        self.scale = np.where(self.sd > 0, self.sd, 1.0)
        # The correlation form: solved and rank-checked on a unit scale.
        self.C = S / (self.scale[:, :, None] * self.scale[:, None, :])

    def solve(self, active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coefficients (m, r) on the ``active`` regulators (0 elsewhere), intercepts
        (m,), and the (m, r) diagonal of the inverse of the active regulators'
        scatter of the condition means (the regulator block of (Zhat^T Zhat)^-1,
        Zhat the first-stage fitted values with the intercept; NaN where
        inactive), from one inversion per gene (the standard errors need it)."""
        inverse = np.linalg.inv(_restricted(self.C, active, 1.0))
        rhs = np.where(active, self.bc / self.scale, 0.0)
        beta = np.einsum("mij,mj->mi", inverse, rhs) / self.scale
        beta[~active] = 0.0
        diagonal = np.diagonal(inverse, axis1=1, axis2=2) / self.scale**2
        return (beta, self.mean_g - np.einsum("mi,mi->m", self.mean_R, beta),
                np.where(active, diagonal, np.nan))


def _identified(moments: _GeneMoments, R: np.ndarray, within_var: np.ndarray,
                n_excluded: np.ndarray, count: np.ndarray, min_strength: float) -> np.ndarray:
    """(m, r) mask of the regulators each gene's conditions identify.

    First-stage strength: the between-condition scatter of the regulators in
    units of their within-condition noise, per instrument (K_g - 1 conditions
    beyond the intercept); its smallest eigenvalue is a Cragg-Donald-type F
    statistic (within-condition correlations ignored). Near 1 the condition
    means move only by sampling noise.
    """
    S, C, sd = moments.S, moments.C, moments.sd
    noise = np.sqrt(np.maximum(within_var[R], 1e-300))
    n_instruments = np.maximum(
        (count > 0).sum() - n_excluded - 1, 1)
    F = S / (noise[:, :, None] * noise[:, None, :]) / n_instruments[:, None, None]
    # A regulator whose own first-stage F is weak cannot be identified with any
    # others: all such are left out at once (batched), then the joint strength of
    # the rest is checked; the rare gene still weak is pruned greedily on its own.
    active = (np.diagonal(F, axis1=1, axis2=2) >= min_strength) & (sd > 0)
    Ca, Fa = _restricted(C, active, 1.0), _restricted(F, active, np.inf)
    ok = (_smallest_eigenvalue_above(Ca, _RANK_TOLERANCE)
          & _smallest_eigenvalue_above(np.where(np.isinf(Fa), 1e300, Fa), min_strength))
    for i in np.flatnonzero(~ok):  # still weak jointly: prune one by one
        active[i] = _identified_subset(S[i], F[i], min_strength, active[i])
    return active


def _smallest_eigenvalue_above(A: np.ndarray, threshold: float) -> np.ndarray:
    """(m,) whether each symmetric matrix of the stack ``A`` (m, r, r) has all its
    eigenvalues above ``threshold``.

    The usual case, a matrix passing, is a Cholesky factorization of
    ``A - threshold I`` (it exists exactly when ``A - threshold I`` is positive
    definite), several times cheaper than the eigenvalues. The stack is checked
    in chunks of :data:`_CHECK_CHUNK` matrices (batched); the smallest
    eigenvalues are computed only for a chunk where a factorization fails.
    """
    out = np.ones(len(A), dtype=bool)
    shift = threshold * np.eye(A.shape[1])
    for start in range(0, len(A), _CHECK_CHUNK):
        chunk = A[start : start + _CHECK_CHUNK]
        try:
            np.linalg.cholesky(chunk - shift)
        except np.linalg.LinAlgError:
            out[start : start + len(chunk)] = np.linalg.eigvalsh(chunk)[:, 0] > threshold
    return out


def _restricted(A: np.ndarray, active: np.ndarray, diagonal: float) -> np.ndarray:
    """Stacked matrices (m, r, r) with the inactive rows and columns replaced by
    ``diagonal`` on the diagonal and 0 elsewhere (a block that leaves the active
    block's eigenvalues and solutions unchanged)."""
    both = active[:, :, None] & active[:, None, :]
    out = np.where(both, A, 0.0)
    idx = np.arange(A.shape[1])
    out[:, idx, idx] = np.where(active, np.diagonal(A, axis1=1, axis2=2), diagonal)
    return out


def _identified_subset(
    S: np.ndarray, F: np.ndarray, min_strength: float, start: np.ndarray
) -> np.ndarray:
    """The regulators of one gene that the conditions identify (boolean mask).

    Greedy: while the smallest eigenvalue of the first-stage strength matrix
    ``F`` is below ``min_strength`` (or the scatter ``S`` is singular), drop the
    regulator that weighs most in that weakest direction (its eigenvector).
    A regulator whose condition means hardly move contributes a constant to
    the gene's condition means, which the intercept absorbs.
    """
    active = start.copy()
    while active.any():
        idx = np.flatnonzero(active)
        sub_s = S[np.ix_(idx, idx)]
        sd = np.sqrt(np.maximum(np.diag(sub_s), 0.0))
        if (sd > 0).all():
            corr_low = np.linalg.eigvalsh(sub_s / np.outer(sd, sd))[0]
            vals, vecs = np.linalg.eigh(F[np.ix_(idx, idx)])
            if corr_low > _RANK_TOLERANCE and vals[0] >= min_strength:
                return active
            active[idx[int(np.argmax(np.abs(vecs[:, 0])))]] = False
        else:
            active[idx[sd <= 0]] = False
    return active


def unidentified_message(unidentified: np.ndarray, names: Any = None) -> str:
    """A sentence naming the (regulator, target) edges :func:`fit_iv` did not identify."""
    def name(i: int) -> str:
        return str(names[i]) if names is not None else f"#{i}"

    shown = ", ".join(f"{name(int(r))} -> {name(int(g))}" for r, g in unidentified[:_SHOWN])
    n_genes = len(np.unique(unidentified[:, 1]))
    return (
        f"regressor='iv' cannot identify {len(unidentified)} edge(s) into {n_genes} gene(s) "
        f"({shown}{', ...' if len(unidentified) > _SHOWN else ''}): the perturbation "
        f"conditions that keep the target do not move these regulators independently of its "
        f"other regulators and clearly beyond sampling noise (first-stage F < "
        f"{MIN_FIRST_STAGE_F:g}: the regulator is never perturbed in such a condition, moves "
        f"only together with others, or there are too few conditions)"
    )
