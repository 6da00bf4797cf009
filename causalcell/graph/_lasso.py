"""Structure learning by sparse regression: :func:`learn_network`.

It returns a weighted :class:`networkx.DiGraph` of gene symbols
(``regulator -> target``, float ``weight``) that every causalcell model
accepts as its network. Each gene is regressed on its candidate regulators
with the lasso, on the samples in which it is **not** targeted (a targeted
gene's level is set by the tool, not by its regulators: Pearl's
do-operator); optionally with stability selection (Meinshausen & Bühlmann
2010), with edge orientation from the interventional samples, and with an
invariance check that adds regulators the lasso missed (Peters, Bühlmann &
Meinshausen 2016: a perturbed gene's residual given its true regulators does
not shift under the perturbations of other genes). For small
variable sets, see :func:`causalcell.graph.learn_pc` (``_pc.py``).

How :func:`learn_network` computes
----------------------------------
The expression matrix is read once, in row blocks (in memory, or a Dask
array's blocks wherever Dask computes), to form the sufficient statistics
shared by all genes: the cross-products of every gene with every candidate
regulator, column sums and sums of squares. Targeted regulators enter at
their level T where it is known (knockouts: 0), the convention of the
causalcell models. A gene's own statistics are these totals without the few
samples that target it (an exact leave-out), centred and scaled to
correlations. The pass and the leave-out are the engine the conditional
model's solver runs on too (:mod:`causalcell.data._moments`), so the two
cannot disagree about which samples a gene is fitted on. The lasso on
standardized variables,

    minimize_w  1/(2 n_g) ||y - X w||^2 + alpha ||w||_1,

is then solved from those statistics alone by scikit-learn's LARS
(:func:`sklearn.linear_model.lars_path_gram`), so ``alpha`` is on the
correlation scale: a regulator enters only where its partial correlation with
the target exceeds ``alpha``. To keep each solve small when there are many
candidates, it is solved on a working set (the candidates most correlated with
the target) and the lasso optimality conditions (KKT) are checked on all other
candidates; violators join the working set and the solve is repeated, so the
result is the exact lasso on all candidates.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell._validation import (
    DEPRECATED,
    check_anndata,
    check_fraction,
    check_n_jobs,
    check_random_state,
    is_int,
    renamed,
)
from causalcell.data._design import Design
from causalcell.data._interventions import Interventions
from causalcell.data._moments import LeftOut, Moments, leave_out_gather, moments
from causalcell.data._stats import (
    GroupMoments,
    bh_qvalues,
    group_moments,
    mean_and_variance,
    welch,
)
from causalcell.data._stats import significant as is_significant
from causalcell.data.contract import IS_CONTROL, checked_interventions, expression_matrix
from causalcell.data.lazy import is_dask_array
from causalcell.errors import CausalCellWarning, ParameterError, UnorientedEdgesWarning

__all__ = ["learn_network"]

# Variance (log-expression scale) below which a gene counts as constant.
_TINY_VARIANCE = 1e-12
# Lasso KKT check: violations below this (correlation scale) are rounding.
_KKT_TOLERANCE = 1e-6
# Smallest working set of the lasso solve; the default cap sizes it otherwise.
_MIN_WORKING_SET = 64
_LARS_MAX_ITER = 500
# Genes per parallel task, at most (smaller chunks when there are few genes).
_MAX_CHUNK = 64


# ---------------------------------------------------------------------------
# The design matrix and its moments
# ---------------------------------------------------------------------------


def _design(adata: AnnData, layer: str | None) -> Design:
    """The data under intervention (targeted entries at T), validated and parsed once."""
    check_anndata(adata)
    X = expression_matrix(adata, layer)
    iv = checked_interventions(adata, layer=layer)
    if sp.issparse(X):
        # Row blocks are read many times: CSR makes that cheap (a CSC matrix is
        # converted once).
        X = sp.csr_array(X)
    return Design(X, iv)


def _first_pass(design: Design, reg_idx: np.ndarray, verbose: bool) -> tuple[Moments, Design]:
    """The moments of all samples, and the design the per-gene leave-outs read from.

    In memory that is the design itself. Out of core (a Dask X) single rows
    cannot be read cheaply later, so the pass also collects the regulator
    values of every targeted sample (the only rows a leave-out reads).
    """
    if not is_dask_array(design.X):
        return moments(design, reg_idx, verbose=verbose), design
    gather = leave_out_gather(
        design, None, reg_idx, "learn_network",
        "Restrict the candidates (regulators=, e.g. the transcription factors), or learn "
        "from pseudobulk profiles (causalcell.data.pseudobulk).")
    mom = moments(design, reg_idx, gather=gather, verbose=verbose)
    return mom, design.with_values(mom.gathered)


# ---------------------------------------------------------------------------
# One gene's regression from the moments
# ---------------------------------------------------------------------------


class _GeneProblem:
    """The standardized regression of one gene on its candidate regulators.

    Built from the shared moments minus the samples that target the gene
    (:class:`~causalcell.data._moments.LeftOut`, given their regulator values
    ``excluded``): exact, without touching the other samples again.

    Attributes
    ----------
    cand : numpy.ndarray
        Candidate regulator positions (into ``reg_idx``): every regulator but
        the gene itself with non-zero variance on the included samples.
    rho : numpy.ndarray
        Correlation of the gene with each candidate on the included samples.
    """

    def __init__(self, mom: Moments, excluded: np.ndarray, gene: int, reg_idx: np.ndarray) -> None:
        shifted = (excluded - mom.shift[reg_idx])[None] if len(excluded) else None
        self.left_out = LeftOut(mom, np.array([gene]), reg_idx[None, :], shifted)
        n = float(self.left_out.n[0])
        self.n = n
        self.ok = n >= 3
        if not self.ok:
            return
        var = self.left_out.regulator_sum_of_squares()[0] / n
        var_gene = float(self.left_out.target_sum_of_squares()[0]) / n
        self.sd = np.sqrt(np.maximum(var, 0.0))
        self.sd_gene = math.sqrt(max(var_gene, 0.0))
        if var_gene <= _TINY_VARIANCE:
            self.ok = False
            return
        cand = np.flatnonzero((reg_idx != gene) & (var > _TINY_VARIANCE))
        self.cand = cand
        centred = self.left_out.target_scatter()[0, cand]
        self.rho = centred / (n * self.sd_gene * self.sd[cand])

    def gram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Correlations between candidates ``a`` and ``b`` (indices into ``cand``)."""
        ra, rb = self.cand[a], self.cand[b]
        centred = self.left_out.scatter(ra, rb)[0]
        return centred / (self.n * np.outer(self.sd[ra], self.sd[rb]))

    def to_data_scale(self, idx: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """Standardized coefficients of candidates ``idx`` to the expression scale."""
        return coef * self.sd_gene / self.sd[self.cand[idx]]

    def lasso(self, alpha: float, max_regulators: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact lasso at ``alpha`` (or at the largest penalty where at most
        ``max_regulators`` regulators are active), working set + KKT check.

        Returns candidate indices (into ``cand``) and standardized coefficients.
        """
        from sklearn.linear_model import lars_path_gram

        rho = self.rho
        p = len(rho)
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0))
        if p == 0 or np.max(np.abs(rho)) <= alpha:
            return empty
        size = max(_MIN_WORKING_SET, 4 * (max_regulators or _MIN_WORKING_SET // 4))
        order = np.argsort(-np.abs(rho), kind="stable")
        work = np.sort(order[: min(p, size)])
        for _ in range(p + 1):  # each round adds a candidate: at most p rounds
            with warnings.catch_warnings():
                # Collinear candidates (e.g. two genes with the same profile)
                # make LARS warn and drop one of them, which is what we want.
                warnings.simplefilter("ignore")
                alphas, _, coefs = lars_path_gram(
                    Xy=rho[work].copy(),
                    Gram=self.gram(work, work),
                    n_samples=1,  # rho and the Gram are already divided by n
                    alpha_min=alpha,
                    method="lasso",
                    max_iter=_LARS_MAX_ITER,
                    return_path=True,
                )
            col = coefs.shape[1] - 1
            if max_regulators is not None:
                n_active = np.count_nonzero(coefs, axis=0)
                col = int(np.flatnonzero(n_active <= max_regulators)[-1])
            level = max(float(alphas[col]), alpha)
            w = coefs[:, col]
            active = np.flatnonzero(w)
            rest = np.setdiff1d(np.arange(p), work, assume_unique=True)
            if len(rest) == 0:
                break
            grad = rho[rest]
            if len(active):
                grad = grad - self.gram(rest, work[active]) @ w[active]
            violators = rest[np.abs(grad) > level + _KKT_TOLERANCE]
            if len(violators) == 0:
                break
            work = np.union1d(work, violators)
        return work[active], w[active]

    def refit(self, idx: np.ndarray) -> np.ndarray:
        """Least-squares standardized coefficients on candidates ``idx``."""
        if len(idx) == 0:
            return np.zeros(0)
        sol, *_ = np.linalg.lstsq(self.gram(idx, idx), self.rho[idx], rcond=None)
        return sol

    def residual_variance(self, idx: np.ndarray, sol: np.ndarray) -> float:
        """Unbiased residual variance (expression scale) of the least squares on
        ``idx`` with standardized coefficients ``sol``: (1 - R^2) x the gene's sum
        of squares / (n - |idx| - 1); NaN without a degree of freedom."""
        dof = self.n - len(idx) - 1
        if dof <= 0:
            return float("nan")
        unexplained = max(1.0 - float(self.rho[idx] @ sol), 0.0) if len(idx) else 1.0
        return unexplained * self.sd_gene**2 * self.n / dof

    def best_addition(self, idx: np.ndarray, allowed: np.ndarray) -> tuple[int, float]:
        """The candidate among ``allowed`` (indices into ``cand``, none in ``idx``)
        with the largest partial correlation with the gene given ``idx``, and the
        two-sided p-value of that partial correlation (t test, Bonferroni over
        ``allowed``). ``(-1, 1.0)`` when there is no candidate."""
        from scipy.stats import t as student

        if len(allowed) == 0:
            return -1, 1.0
        if len(idx):
            cross = self.gram(allowed, idx)
            # One factorization for the gene's refit and every candidate's coupling.
            both, *_ = np.linalg.lstsq(self.gram(idx, idx),
                                       np.column_stack([self.rho[idx], cross.T]), rcond=None)
            sol, coupling = both[:, 0], both[:, 1:]
            covariance = self.rho[allowed] - cross @ sol
            var_candidate = 1.0 - np.einsum("ij,ji->i", cross, coupling)
            var_gene = 1.0 - float(self.rho[idx] @ sol)
        else:
            covariance, var_candidate, var_gene = self.rho[allowed], np.ones(len(allowed)), 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            partial = covariance / np.sqrt(var_candidate * var_gene)
        partial = np.where(var_candidate > _TINY_VARIANCE, partial, 0.0)
        best = int(np.argmax(np.abs(partial)))
        r = float(np.clip(partial[best], -1.0, 1.0))
        dof = self.n - len(idx) - 2
        if dof <= 0 or not np.isfinite(r):
            return -1, 1.0
        stat = r * math.sqrt(dof / max(1.0 - r * r, 1e-300))
        return int(allowed[best]), min(1.0, 2.0 * float(student.sf(abs(stat), dof)) * len(allowed))


# Per gene: (gene, regulator positions into reg_idx, coefficients, residual variance of
# the least-squares refit: NaN for the lasso modes).
_GeneResult = tuple[int, np.ndarray, np.ndarray, float]


@dataclass(frozen=True)
class _Task:
    """What to compute for each gene of a chunk."""

    mode: Literal["lasso", "select", "refit", "grow"]
    alpha: float = 0.0
    max_regulators: int | None = None
    # For "refit" and "grow": regulator positions (into reg_idx) per gene.
    fixed: dict[int, np.ndarray] = field(default_factory=dict)
    # For "grow": the regulator positions one of which may join each gene's
    # regulators (the one most partially correlated with the gene, when its
    # Bonferroni p-value is below ``alpha``).
    allowed: dict[int, np.ndarray] = field(default_factory=dict)

    def restricted(self, genes: Iterable[int]) -> _Task:
        """The task for ``genes`` only (what a parallel worker needs)."""
        if self.mode not in ("refit", "grow"):
            return self
        genes = [int(g) for g in genes]
        return _Task(self.mode, self.alpha, self.max_regulators,
                     fixed={g: self.fixed[g] for g in genes if g in self.fixed},
                     allowed={g: self.allowed[g] for g in genes if g in self.allowed})


def _run_chunk(
    genes: Sequence[int],
    local_rows: Sequence[np.ndarray],
    block: np.ndarray,
    mom: Moments,
    reg_idx: np.ndarray,
    task: _Task,
) -> list[_GeneResult]:
    """Solve the genes of one chunk.

    Returns per gene ``(gene, regulator positions into reg_idx, coefficients
    on the expression scale)``; for ``mode="select"`` the coefficients are the
    standardized ones (only the selection is used).
    """
    from sklearn import config_context

    out = []
    # scikit-learn's argument validation costs about as much as a small LARS
    # solve; the arguments are built here and known to be valid.
    with config_context(skip_parameter_validation=True):
        for gene, loc in zip(genes, local_rows, strict=True):
            out.append(_solve_one(gene, block[loc], mom, reg_idx, task))
    return out


def _solve_one(
    gene: int, excluded: np.ndarray, mom: Moments, reg_idx: np.ndarray, task: _Task
) -> _GeneResult:
    """One gene of :func:`_run_chunk`."""
    prob = _GeneProblem(mom, excluded, gene, reg_idx)
    if not prob.ok:
        return gene, np.zeros(0, dtype=np.int64), np.zeros(0), float("nan")
    if task.mode in ("refit", "grow"):
        wanted = task.fixed.get(gene, np.zeros(0, dtype=np.int64))
        idx = np.flatnonzero(np.isin(prob.cand, wanted))
        if task.mode == "grow":
            allowed = np.flatnonzero(np.isin(prob.cand, task.allowed.get(gene, wanted[:0])))
            best, pvalue = prob.best_addition(idx, np.setdiff1d(allowed, idx))
            if best >= 0 and pvalue < task.alpha:
                idx = np.sort(np.r_[idx, best])
        sol = prob.refit(idx)
        return gene, prob.cand[idx], prob.to_data_scale(idx, sol), prob.residual_variance(idx, sol)
    idx, coef = prob.lasso(task.alpha, task.max_regulators)
    if task.mode == "lasso":
        coef = prob.to_data_scale(idx, coef)
    return gene, prob.cand[idx], coef, float("nan")


def _chunks(genes: np.ndarray, n_jobs: int) -> list[np.ndarray]:
    workers = n_jobs if n_jobs > 0 else 8
    size = int(np.clip(math.ceil(len(genes) / (4 * workers)), 1, _MAX_CHUNK))
    return [genes[i : i + size] for i in range(0, len(genes), size)]


def _solve_genes(
    design: Design,
    mom: Moments,
    reg_idx: np.ndarray,
    genes: np.ndarray,
    task: _Task,
    *,
    subsample: np.ndarray | None,
    runner: Any,
    progress: Any,
) -> list[_GeneResult]:
    """Run ``task`` for every gene, in chunks dispatched by ``runner`` (a
    :class:`joblib.Parallel` returning an unordered generator).

    ``subsample`` (boolean over samples) restricts each gene's excluded
    samples to those in the subsample (the moments must be of that subsample).
    """
    from joblib import delayed

    def jobs() -> Iterator[Any]:
        for chunk in _chunks(genes, runner.n_jobs):
            per_gene = [design.excluded_rows(int(g)) for g in chunk]
            if subsample is not None:
                per_gene = [r[subsample[r]] for r in per_gene]
            union = np.unique(np.concatenate(per_gene)) if per_gene else np.zeros(0, np.int64)
            # The regulator values of the rows the chunk's genes leave out, read once.
            block = design.block(union, reg_idx) if len(union) else np.zeros((0, len(reg_idx)))
            local = [np.searchsorted(union, r) for r in per_gene]
            sub_task = task.restricted(chunk)
            yield delayed(_run_chunk)([int(g) for g in chunk], local, block, mom, reg_idx, sub_task)

    results: list[_GeneResult] = []
    for part in runner(jobs()):
        results.extend(part)
        progress.update(len(part))
    return results


def _edges_from(
    results: list[_GeneResult], reg_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate per-gene results into (source gene, target gene, value) arrays."""
    if not results:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    counts = np.array([len(r[1]) for r in results], dtype=np.int64)
    target = np.repeat(np.array([r[0] for r in results], dtype=np.int64), counts)
    source = reg_idx[np.concatenate([r[1] for r in results]).astype(np.int64)]
    value = np.concatenate([r[2] for r in results]).astype(np.float64)
    order = np.lexsort((source, target))
    return source[order], target[order], value[order]


# ---------------------------------------------------------------------------
# Orientation from interventions
# ---------------------------------------------------------------------------


def _single_target_groups(iv: Interventions) -> tuple[np.ndarray, np.ndarray]:
    """Group of each sample for the Welch tests: 0 for controls, 1 + k for the
    k-th single-gene condition (one measured target, no other), -1 otherwise.

    Returns the per-sample groups and the target gene of each group (-1 for
    the control group).
    """
    cond = iv.conditions
    single = (
        (~cond[IS_CONTROL].to_numpy(dtype=bool))
        & (cond["n_targets"].to_numpy() == 1)
        & (cond["n_measured"].to_numpy() == 1)
    )
    cond_group = np.full(len(cond), -1, dtype=np.int64)
    cond_group[single] = 1 + np.arange(int(single.sum()))
    groups = cond_group[iv.codes]
    groups[iv.is_control] = 0
    # Target gene of each single-gene condition, from the one mask entry of its samples.
    indptr = iv.mask.indptr
    one = np.diff(indptr) == 1
    sample_gene = np.full(len(groups), -1, dtype=np.int64)
    sample_gene[one] = iv.mask.indices[indptr[:-1][one]]
    group_gene = np.full(1 + int(single.sum()), -1, dtype=np.int64)
    has = groups > 0
    group_gene[groups[has]] = sample_gene[has]
    return groups, group_gene


def _welch_pvalues(sums: GroupMoments, group: np.ndarray, gene: np.ndarray) -> np.ndarray:
    """Two-sided Welch t-test p-values: gene ``gene[i]`` in group ``group[i]``
    versus the control group 0 (the shared rule of :func:`welch`: NaN where a
    side has fewer than 2 samples or both are constant and equal)."""
    n1, n0 = sums.count[group], sums.count[0]
    m1, v1 = mean_and_variance(n1, sums.sums[group, gene], sums.squares[group, gene])
    m0, v0 = mean_and_variance(n0, sums.sums[0, gene], sums.squares[0, gene])
    return welch(m1 - m0, v1, n1, v0, n0)[1]


def _edge_evidence(
    source: np.ndarray, target: np.ndarray, sums: GroupMoments, group_gene: np.ndarray
) -> np.ndarray:
    """p-value that perturbing ``source[e]`` alone changes ``target[e]``.

    Over the single-gene conditions of the source (a gene may be knocked down
    and overexpressed), the smallest Welch p-value, Bonferroni-corrected for
    the number of conditions. NaN where the source has no such condition.
    """
    n_edges = len(source)
    out = np.full(n_edges, np.nan)
    groups = np.flatnonzero(group_gene >= 0)
    if n_edges == 0 or len(groups) == 0:
        return out
    order = groups[np.argsort(group_gene[groups], kind="stable")]
    genes_sorted = group_gene[order]
    start = np.searchsorted(genes_sorted, source, side="left")
    count = np.searchsorted(genes_sorted, source, side="right") - start
    edge = np.repeat(np.arange(n_edges), count)
    if len(edge) == 0:
        return out
    offset = np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count)
    group = order[np.repeat(start, count) + offset]
    p = _welch_pvalues(sums, group, target[edge])
    np.fmin.at(out, edge, p)
    return np.minimum(out * np.maximum(count, 1), 1.0)


def _skeleton_orientation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``oriented`` of the skeleton: False where the pair is selected in both directions."""
    n_genes = int(max(source.max(initial=-1), target.max(initial=-1))) + 1
    key = source * n_genes + target
    return ~np.isin(target * n_genes + source, key)


# Decisions of _orient_pairs, one per skeleton pair (the ``decision`` column).
_FORWARD = "a->b"  # perturbing a moves b, perturbing b does not move a (or b untested)
_BACKWARD = "b->a"
_BOTH = "both"  # each moves the other: a feedback loop through a and b
_NEITHER = "neither moves the other"  # both perturbed, no effect: unrefuted directions kept
_UNTESTED = "undetermined"  # no decisive test: the lasso's selection is kept
_NOT_A_REGULATOR = "only direction not a candidate"  # the evidence points to a non-regulator
_REFUTED_AB = "a->b refuted"  # a's perturbation lacks the effect a -> b predicts: b -> a
_REFUTED_BA = "b->a refuted"
_PRIOR = "regulators="  # one gene is not a candidate regulator: one direction possible


@dataclass(frozen=True)
class _Orientation:
    """The oriented edges (gene indices), their q-values and flags, and the report."""

    source: np.ndarray
    target: np.ndarray
    qvalue: np.ndarray
    oriented: np.ndarray
    table: pd.DataFrame
    counts: dict[str, int]


def _orient_pairs(
    design: Design, edges: _Edges, reg_idx: np.ndarray, fdr: float, genes: pd.Index,
    sums: tuple[GroupMoments, np.ndarray] | None = None,
) -> _Orientation:
    """Orient every pair of the skeleton from the interventional evidence.

    For each unordered pair {a, b} selected in either direction, both
    directions are tested ("perturbing a alone moves b", Welch against the
    controls, BH over every tested direction of every pair; see
    :func:`_edge_evidence`). Then, with "moves" meaning q < ``fdr``:

    - a moves b and b does not move a (or b is never perturbed): a -> b;
    - each moves the other: both directions (a feedback loop);
    - both are perturbed and neither moves the other: no decisive test; the
      selected directions that no refutation test contradicts are kept, with
      ``oriented=False`` (co-regulators of a common target are dropped by the
      refutation test);
    - only one direction starts at a candidate regulator (``regulators=``)
      and no test contradicts it: that direction;
    - otherwise (no decisive test): the lasso's selection is kept, with
      ``oriented=False``.

    A direction whose regulator is not a candidate cannot be kept. Pairs not
    oriented by a test are listed in the returned table.
    """
    p = len(genes)
    a = np.minimum(edges.source, edges.target)
    b = np.maximum(edges.source, edges.target)
    selected = set((edges.source * p + edges.target).tolist())
    pairs = np.unique(a * p + b)
    pa, pb = np.divmod(pairs, p)
    n_pairs = len(pairs)
    if sums is None:
        sums = _single_gene_sums(design)
    q = _intervention_qvalues(design, np.r_[pa, pb], np.r_[pb, pa], sums)
    q_ab, q_ba = q[:n_pairs], q[n_pairs:]
    moves_ab, moves_ba = is_significant(q_ab, fdr), is_significant(q_ba, fdr)
    tested_both = np.isfinite(q_ab) & np.isfinite(q_ba)
    decision = np.full(n_pairs, _UNTESTED, dtype=object)
    decision[moves_ab & ~moves_ba] = _FORWARD
    decision[moves_ba & ~moves_ab] = _BACKWARD
    decision[moves_ab & moves_ba] = _BOTH
    decision[~moves_ab & ~moves_ba & tested_both] = _NEITHER
    sel_ab = np.isin(pa * p + pb, list(selected))
    sel_ba = np.isin(pb * p + pa, list(selected))
    # A selected direction whose regression weight predicts an effect of the
    # perturbation that is absent is refuted (BH over the tested directions).
    weight_of = pd.Series(edges.weight, index=edges.source * p + edges.target)
    w_ab = weight_of.reindex(pa * p + pb).to_numpy(dtype=float)
    w_ba = weight_of.reindex(pb * p + pa).to_numpy(dtype=float)
    refute_p = _refutation_pvalues(np.r_[pa, pb], np.r_[pb, pa], np.r_[w_ab, w_ba], *sums)
    refute_p[~np.r_[sel_ab, sel_ba]] = np.nan
    refuted = is_significant(bh_qvalues(refute_p), fdr)
    refuted_ab, refuted_ba = refuted[:n_pairs], refuted[n_pairs:]
    # Not decided by the direct tests: a refuted direction leaves the other one.
    undecided = decision == _UNTESTED
    decision[undecided & refuted_ba & ~refuted_ab] = _REFUTED_BA
    decision[undecided & refuted_ab & ~refuted_ba] = _REFUTED_AB
    keep_ab = np.isin(decision, [_FORWARD, _BOTH, _REFUTED_BA]) | (
        np.isin(decision, [_UNTESTED, _NEITHER]) & sel_ab & ~refuted_ab)
    keep_ba = np.isin(decision, [_BACKWARD, _BOTH, _REFUTED_AB]) | (
        np.isin(decision, [_UNTESTED, _NEITHER]) & sel_ba & ~refuted_ba)
    is_reg = np.zeros(p, dtype=bool)
    is_reg[reg_idx] = True
    # Only one direction is a candidate (regulators=): the prior orients the pair
    # unless a test contradicts it.
    prior_ab = is_reg[pa] & ~is_reg[pb]
    prior_ba = is_reg[pb] & ~is_reg[pa]
    decision[(prior_ab & sel_ab | prior_ba & sel_ba) & (decision == _UNTESTED)] = _PRIOR
    keep_ab |= prior_ab & (decision == _PRIOR)
    keep_ba |= prior_ba & (decision == _PRIOR)
    lost = (keep_ab & ~is_reg[pa] & ~(keep_ba & is_reg[pb])) | (
        keep_ba & ~is_reg[pb] & ~(keep_ab & is_reg[pa]))
    keep_ab &= is_reg[pa]
    keep_ba &= is_reg[pb]
    decision[lost & ~keep_ab & ~keep_ba] = _NOT_A_REGULATOR
    oriented_pair = np.isin(decision, [_FORWARD, _BACKWARD, _BOTH, _PRIOR, _REFUTED_AB,
                                       _REFUTED_BA])
    source = np.r_[pa[keep_ab], pb[keep_ba]]
    target = np.r_[pb[keep_ab], pa[keep_ba]]
    qvalue = np.r_[q_ab[keep_ab], q_ba[keep_ba]]
    oriented = np.r_[oriented_pair[keep_ab], oriented_pair[keep_ba]]
    order = np.lexsort((source, target))
    report = ~oriented_pair
    names = genes.to_numpy(dtype=object)
    kept = np.where(keep_ab & keep_ba, "both", np.where(keep_ab, "a->b",
                                                        np.where(keep_ba, "b->a", "none")))
    table = pd.DataFrame({
        "gene_a": names[pa[report]],
        "gene_b": names[pb[report]],
        "q_a_to_b": q_ab[report],
        "q_b_to_a": q_ba[report],
        "reason": decision[report].astype(str),
        "kept": kept[report],
    })
    counts = {
        "n_pairs": int(n_pairs),
        "n_oriented": int(np.isin(decision, [_FORWARD, _BACKWARD, _REFUTED_AB,
                                             _REFUTED_BA]).sum()),
        "n_oriented_by_regulators": int((decision == _PRIOR).sum()),
        "n_feedback_pairs": int((decision == _BOTH).sum()),
        "n_unoriented": int(report.sum()),
    }
    return _Orientation(source[order], target[order], qvalue[order], oriented[order], table,
                        counts)


# ---------------------------------------------------------------------------
# Missing regulators: invariance of each gene's equation under the perturbations
# ---------------------------------------------------------------------------

# At most this many regulators are added to one gene by the invariance check
# (one per round); each round refits only the genes that changed.
_MAX_INVARIANCE_ROUNDS = 10


@dataclass(frozen=True)
class _Invariance:
    """The network after the invariance check: edges, least-squares weights, and
    the table of added edges."""

    source: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    added: pd.DataFrame
    # intervention_q of the added edges (rows of ``added``).
    added_q: np.ndarray


def _single_gene_contrasts(
    reads: Design, reg_idx: np.ndarray, sums: GroupMoments, group_gene: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per single-gene condition k (groups 1..K), the change of every gene's mean
    against the controls, with the targeted regulator at its level T where T is
    known (the value the regressions read), and ``1/n_k + 1/n_0``.

    Returns ``(change (K, p), inverse_counts (K,))``.
    """
    means = sums.mean()
    groups = np.flatnonzero(group_gene >= 0)
    change = means[groups] - means[0]
    genes_of = group_gene[groups]
    # The targeted entry of each group's samples: its mean over the samples, with T
    # substituted (only regulator columns are read by an equation).
    iv = reads.interventions
    sample_group, _ = _single_target_groups(iv)
    entry_group = sample_group[iv.entry_rows]
    is_reg = np.zeros(reads.shape[1], dtype=bool)
    is_reg[reg_idx] = True
    own = (entry_group > 0) & is_reg[reads.mask.indices] & ~np.isnan(reads.levels)
    rows, cols = iv.entry_rows[own], reads.mask.indices[own]
    if len(rows):
        correction = reads.levels[own] - reads.measured(rows, cols)
        shift = np.bincount(entry_group[own] - 1, weights=correction, minlength=len(groups))
        change[np.arange(len(groups)), genes_of] += shift / sums.count[groups]
    inverse_counts = 1.0 / sums.count[groups] + 1.0 / sums.count[0]
    return change, inverse_counts


def _moved_by(
    sums: GroupMoments, group_gene: np.ndarray, fdr: float
) -> tuple[sp.csr_array, np.ndarray]:
    """Gene x gene: True where a single-gene perturbation of the row gene moves the
    column gene (Welch against the controls, BH over every condition and gene at
    ``fdr``; a gene's own column is left out), and the q-values (conditions x
    genes)."""
    groups = np.flatnonzero(group_gene >= 0)
    p = sums.sums.shape[1]
    pvalue = _welch_pvalues(sums, groups[:, None], np.arange(p)[None, :])
    pvalue[np.arange(len(groups)), group_gene[groups]] = np.nan
    qvalue = bh_qvalues(pvalue.ravel()).reshape(pvalue.shape)
    moved = is_significant(qvalue, fdr)
    indicator = sp.csr_array(
        (np.ones(len(groups)), (group_gene[groups], np.arange(len(groups)))),
        shape=(p, len(groups)),
    )
    return sp.csr_array((indicator @ sp.csr_array(moved.astype(np.float64))) > 0), qvalue


def _shift_z(change: np.ndarray, inverse_counts: np.ndarray, genes_of: np.ndarray,
             W: sp.csr_array, residual_var: np.ndarray) -> np.ndarray:
    """(K, p) z statistics of the residual mean shifts: condition k's change of
    x_g - sum_r W[r, g] x_r against the controls, over sqrt(residual variance x
    (1/n_k + 1/n_0)); NaN in each condition's own target (and unchecked genes)."""
    shift = change - np.asarray(W.T @ change.T).T  # d - d W: one sparse product
    with np.errstate(divide="ignore", invalid="ignore"):
        z = shift / np.sqrt(residual_var[None, :] * inverse_counts[:, None])
    z[np.arange(len(genes_of)), genes_of] = np.nan
    return z


def _weights_matrix(results: dict[int, _GeneResult], reg_idx: np.ndarray, p: int) -> sp.csr_array:
    """Regulator x gene coefficients of the per-gene results."""
    src, tgt, w = _edges_from(list(results.values()), reg_idx)
    return sp.csr_array((w, (src, tgt)), shape=(p, p))


def _restore_invariance(
    reads: Design, mom: Moments, reg_idx: np.ndarray, source: np.ndarray, target: np.ndarray,
    sums: tuple[GroupMoments, np.ndarray], fdr: float, n_jobs: int, genes: pd.Index,
) -> _Invariance:
    """Add the regulators that the perturbations show to be missing, and refit.

    Each gene's equation ``x_g = sum_r w_rg x_r + c_g + e_g`` holds, with the same
    weights, in every condition that does not target g (invariance: Peters,
    Bühlmann & Meinshausen 2016). With least-squares weights on the kept
    regulators, the change of g's residual mean in a single-gene condition k
    against the controls,

        s_kg = d_kg - sum_r w_rg d_kr     (d: condition mean minus control mean),

    is then 0 up to noise, with variance at most sigma_g^2 (1/n_k + 1/n_0)
    (sigma_g^2: g's residual variance; the fitted weights only reduce it). A
    significant shift (z test, BH over every condition and checked gene at ``fdr``)
    means a regulator of g is missing among the perturbed gene a and the genes
    a's perturbation moves (which the lasso can miss when a descendant of g
    stands in for it, or when two paths from a to g cancel). Of those
    candidates, except g's own descendants (moved by perturbing g, not moving
    g) and non-candidates (``regulators=``), the one with the largest partial
    correlation with g given its regulators joins them if that correlation is
    significant (t test, Bonferroni over the candidates, at ``fdr``); g is
    refitted and the check repeats, at most :data:`_MAX_INVARIANCE_ROUNDS`
    times. Of the sets along this forward path (the first included), g keeps
    the one whose residual shifts in the fewest conditions (at the first
    round's BH cutoff; the smallest set on ties): a regulator that restores
    invariance nowhere is undone, while two missing regulators that each
    alone do not (both moved by one perturbation) are both kept. Only genes
    with a single-gene perturbation of their own are checked: their
    descendants are moved by it, so the orientation keeps them out of the
    gene's regulators and the check excludes them as candidates.
    An unperturbed gene's regulators may include descendants that no test can
    reveal; their shifts would be mistaken for missing regulators (measured on
    random acyclic models: most additions to unperturbed genes were false).
    Under feedback, least squares is biased and residuals can shift even with
    the right regulators; an addition then needs its partial correlation to
    be significant, and the IV fit gives a loop's coefficients.

    All shifts are one sparse product of the condition means with the weight
    matrix; only the genes flagged are refitted.
    """
    from joblib import Parallel
    from scipy.stats import norm

    from causalcell._progress import tqdm

    p = len(genes)
    group_moments_, group_gene = sums
    reg_position = np.full(p, -1, dtype=np.int64)
    reg_position[reg_idx] = np.arange(len(reg_idx))
    all_genes = np.arange(p)
    fixed = {int(g): np.zeros(0, dtype=np.int64) for g in all_genes}
    order = np.argsort(target, kind="stable")
    bounds = np.flatnonzero(np.diff(target[order])) + 1
    if len(order):
        for g, src in zip(target[order][np.r_[0, bounds]], np.split(source[order], bounds),
                          strict=True):
            fixed[int(g)] = reg_position[src]
    empty = pd.DataFrame({"regulator": pd.Series(dtype=object), "target": pd.Series(dtype=object),
                          "perturbed": pd.Series(dtype=object), "shift_q": pd.Series(dtype=float)})
    groups = np.flatnonzero(group_gene >= 0)
    can_test = len(groups) > 0 and group_moments_.count[0] >= 2
    # Refitted: the genes with regulators (their weights) and the perturbed genes
    # (checked; a residual variance each).
    checked = np.unique(group_gene[group_gene >= 0])
    refitted = np.union1d(np.unique(target), checked)
    with Parallel(n_jobs=n_jobs, return_as="generator_unordered") as runner:
        solved = _solve_genes(reads, mom, reg_idx, refitted, _Task("refit", fixed=fixed),
                              subsample=None, runner=runner, progress=tqdm(disable=True))
        results = {r[0]: r for r in solved}
        if not can_test:
            src, tgt, w = _edges_from(list(results.values()), reg_idx)
            return _Invariance(src, tgt, w, empty, np.zeros(0))
        change, inverse_counts = _single_gene_contrasts(reads, reg_idx, group_moments_, group_gene)
        moved, moved_q = _moved_by(group_moments_, group_gene, fdr)
        genes_of = group_gene[groups]
        is_reg = np.zeros(p, dtype=bool)
        is_reg[reg_idx] = True
        # Genes that may still gain a regulator: the perturbed ones (see above).
        active = np.zeros(p, dtype=bool)
        active[genes_of] = True
        cutoff = -1.0  # the first round's BH cutoff: one yardstick for every set of a gene
        # Per gene, the sets along its forward path: (conditions shifted, result).
        best: dict[int, tuple[int, _GeneResult]] = {}
        why: dict[tuple[int, int], tuple[int, float]] = {}  # (gene, reg): (perturbed, q)
        for _ in range(_MAX_INVARIANCE_ROUNDS):
            residual_var = np.full(p, np.nan)  # NaN: not checked
            residual_var[checked] = [results[int(g)][3] for g in checked]
            z = _shift_z(change, inverse_counts, genes_of, _weights_matrix(results, reg_idx, p),
                         residual_var)
            pvalue = np.where(np.isfinite(z), 2.0 * norm.sf(np.abs(z)), np.nan)
            q = bh_qvalues(pvalue.ravel()).reshape(pvalue.shape)
            shifted = is_significant(q, fdr)
            if cutoff < 0:
                if not shifted.any():
                    break
                cutoff = float(np.max(pvalue[shifted]))  # the largest p-value called significant
                counts = np.sum(np.nan_to_num(pvalue, nan=1.0) <= cutoff, axis=0)
                best = {int(g): (int(counts[g]), results[int(g)]) for g in genes_of}
            flagged = np.flatnonzero(shifted.any(axis=0) & active)
            if len(flagged) == 0:
                break
            worst = np.argmax(np.where(shifted[:, flagged], np.abs(z[:, flagged]), -1.0), axis=0)
            perturbed = genes_of[worst]
            # Candidates: the perturbed gene and what its perturbation moves, minus
            # the flagged gene's descendants, itself and its regulators.
            candidate = sp.csr_array(moved[perturbed]).toarray()
            candidate[np.arange(len(flagged)), perturbed] = True
            downstream = moved[flagged].toarray() & ~moved[:, flagged].T.toarray()
            candidate &= ~downstream & is_reg[None, :]
            candidate[np.arange(len(flagged)), flagged] = False
            allowed = {int(g): reg_position[np.flatnonzero(row)]
                       for g, row in zip(flagged, candidate, strict=True)}
            task = _Task("grow", alpha=fdr, fixed={int(g): fixed[int(g)] for g in flagged},
                         allowed=allowed)
            grown = _solve_genes(reads, mom, reg_idx, flagged, task, subsample=None,
                                 runner=runner, progress=tqdm(disable=True))
            q_of = dict(zip(flagged.tolist(), q[worst, flagged].tolist(), strict=True))
            by_gene = dict(zip(flagged.tolist(), perturbed.tolist(), strict=True))
            for g, positions, coef, var in grown:
                new = np.setdiff1d(positions, fixed[g])
                if len(new) == 0:
                    active[g] = False  # no candidate explains the shift
                    continue
                why[g, int(reg_idx[new[0]])] = (by_gene[g], q_of[g])
                fixed[g] = positions
                results[g] = (g, positions, coef, var)
                own = genes_of != g
                with np.errstate(divide="ignore", invalid="ignore"):
                    # Only the gene's regulator columns: no copy of all of ``change``.
                    regulator_change = change[np.ix_(own, reg_idx[positions])]
                    new_z = (change[own, g] - regulator_change @ coef) / np.sqrt(
                        var * inverse_counts[own])
                n_shifted = int(np.sum(np.nan_to_num(2.0 * norm.sf(np.abs(new_z)), nan=1.0)
                                       <= cutoff))
                if n_shifted < best[g][0]:
                    best[g] = (n_shifted, results[g])
        # Each gene keeps the set of its path whose residual shifts in the fewest
        # conditions (the first, i.e. smallest, on ties): an addition that
        # restores invariance nowhere is undone.
        added: list[tuple[int, int, int, float]] = []
        for g, (_, result) in best.items():
            results[g] = result
            for position in result[1]:
                if (g, int(reg_idx[position])) in why:
                    added.append((int(reg_idx[position]), g, *why[g, int(reg_idx[position])]))
    src, tgt, w = _edges_from(list(results.values()), reg_idx)
    names = genes.to_numpy(dtype=object)
    if not added:
        return _Invariance(src, tgt, w, empty, np.zeros(0))
    a = np.array([row[:3] for row in added], dtype=np.int64)
    table = pd.DataFrame({"regulator": names[a[:, 0]], "target": names[a[:, 1]],
                          "perturbed": names[a[:, 2]],
                          "shift_q": np.array([row[3] for row in added])})
    # "Perturbing the regulator alone moves the target", as for the other edges: the
    # smallest q over the regulator's single-gene conditions (NaN if never perturbed).
    hit = genes_of[:, None] == a[None, :, 0]
    q_added = np.where(hit, moved_q[:, a[:, 1]], np.inf).min(axis=0, initial=np.inf)
    return _Invariance(src, tgt, w, table, np.where(np.isfinite(q_added), q_added, np.nan))


def _warn_unoriented(orientation: _Orientation) -> None:
    """One warning stating how many pairs the interventions did not orient, and why."""
    table = orientation.table
    if table.empty:
        return
    parts = []
    for reason, what in ((_UNTESTED, "no decisive test (neither perturbed, or a perturbation "
                                     "without effect on an unperturbed partner)"),
                         (_NEITHER, "both perturbed, neither moves the other"),
                         (_NOT_A_REGULATOR, "the direction the evidence allows starts at a gene "
                                            "outside regulators=")):
        rows = table["reason"] == reason
        if rows.any():
            dropped = int((table.loc[rows, "kept"] == "none").sum())
            parts.append(f"{int(rows.sum())} with {what}, {dropped} of them dropped")
    doubled = int((table["kept"] == "both").sum())
    warnings.warn(
        f"learn_network: {len(table)} of {orientation.counts['n_pairs']} selected gene pairs "
        f"were not oriented by the interventions: {'; '.join(parts)}; {doubled} kept in both "
        f"directions (oriented=False). They are listed in G.graph['unoriented']; perturbing "
        f"one gene of a pair orients it. A pair kept in both directions is a loop for a model "
        f"fitted on this network: ConditionalGRNRegressor(regressor='iv') fits it "
        f"consistently, the per-gene fit does not. orient='skeleton' keeps every selected "
        f"edge unoriented.",
        UnorientedEdgesWarning,
        stacklevel=3,
    )


# ---------------------------------------------------------------------------
# learn_network
# ---------------------------------------------------------------------------


def _regulator_index(regulators: Iterable[str] | None, genes: pd.Index) -> np.ndarray:
    if regulators is None:
        return np.arange(len(genes))
    if isinstance(regulators, str | bytes):
        raise ParameterError(
            f"regulators must be a collection of gene symbols, got the single string "
            f"{regulators!r}; wrap it in a list: regulators=[{regulators!r}]."
        )
    try:
        names = pd.Index([str(r) for r in regulators])
    except TypeError:
        raise ParameterError(
            f"regulators must be an iterable of gene symbols (list, set, pandas.Index), got "
            f"{type(regulators).__name__}."
        ) from None
    idx = genes.get_indexer(names.unique())
    idx = np.unique(idx[idx >= 0])
    if len(idx) == 0:
        example = names[:3].tolist()
        raise ParameterError(
            f"None of the {len(names)} regulators (e.g. {example}) is among the "
            f"{len(genes)} genes of the data (var_names, e.g. {genes[:3].tolist()}). Use the "
            f"same gene symbols, or regulators=None for all genes."
        )
    return idx


def learn_network(
    adata: AnnData,
    *,
    regulators: Iterable[str] | None = None,
    method: Literal["lasso", "stability"] = "lasso",
    alpha: float = 0.05,
    n_bootstrap: int = 50,
    threshold: float = 0.6,
    max_regulators: int | None = 20,
    layer: str | None = None,
    use_interventions: bool = True,
    orient: Literal["interventions", "skeleton"] = "interventions",
    orient_fdr: float = 0.05,
    n_jobs: int = 1,
    verbose: bool = False,
    random_state: int | np.random.Generator | None = 0,
    seed: Any = DEPRECATED,
) -> nx.DiGraph:
    """Learn a gene regulatory network by sparse regression (lasso).

    For each gene g, x_g is regressed on the candidate regulators on the
    samples in which g is **not** targeted (alone or in a combination): a
    targeted gene's level is set by the tool, so those samples carry no
    information about its regulators. Targeted regulators enter at their level
    T where it is known (knockouts: 0). The lasso (``method="lasso"``) or
    stability selection (``method="stability"``) chooses the edges, and
    interventional samples orient pairs selected in both directions
    (``use_interventions``). See the module docstring for the computation:
    one pass over the data, then an exact lasso per gene from shared
    sufficient statistics.

    Parameters
    ----------
    adata : anndata.AnnData
        Cells or pseudobulk rows following the data contract
        (:mod:`causalcell.data.contract`). Not modified. ``X`` (or the layer)
        may be a Dask array chunked along cells (e.g. from
        :func:`causalcell.data.read_lazy`): it is read in row blocks on the
        active Dask client (else the threaded scheduler), once for the lasso
        and once per split for stability selection; the pass also collects
        the candidates' values in the targeted cells, which must fit in memory.
    regulators : iterable of str, optional
        Candidate regulators, e.g. ``causalcell.datasets.load_tf_names()``;
        names absent from ``var_names`` are ignored. Default: every gene.
        A gene is never its own regulator.
    method : {"lasso", "stability"}, default "lasso"
        ``"lasso"``: one lasso fit per gene on all its samples; ``weight`` is
        the lasso coefficient (shrunk towards 0). ``"stability"``: stability
        selection (Meinshausen & Bühlmann 2010) with complementary pairs
        (Shah & Samworth 2013): the samples are split at random into two
        halves ``n_bootstrap / 2`` times, the lasso is fitted on every half,
        and an edge is kept if it is selected in at least ``threshold`` of
        the ``n_bootstrap`` fits; ``weight`` is then the least-squares
        coefficient of the gene on its kept regulators over all its samples.
    alpha : float, default 0.05
        Lasso penalty on the standardized scale, in (0, 1): a regulator can
        enter only where its (partial) correlation with the gene exceeds
        ``alpha``. With ~1e4 cells, correlations from noise are ~0.01.
    n_bootstrap : int, default 50
        Number of half-sample fits for stability selection (even, >= 2).
    threshold : float, default 0.6
        Stability selection: smallest selection frequency of a kept edge, in
        (0, 1]. Meinshausen & Bühlmann recommend 0.6 to 0.9.
    max_regulators : int or None, default 20
        At most this many regulators per gene (per fit): when the lasso at
        ``alpha`` selects more, the solution at the larger penalty where
        ``max_regulators`` are active is used (the regulators entering the
        lasso path first). ``None``: no cap.
    layer : str, optional
        Layer holding log-normalized expression; ``None`` uses ``X``.
    use_interventions : bool, default True
        Test the effects of the perturbations (``intervention_q``) and use
        them to orient; ``False`` implies ``orient="skeleton"`` without
        q-values. Targeted samples are excluded from each gene's own
        regression whatever this setting.
    orient : {"interventions", "skeleton"}, default "interventions"
        ``"interventions"``: every selected pair of genes gets its direction
        from the interventional evidence (see Notes); pairs the evidence
        cannot orient are reported in ``G.graph["unoriented"]`` and with a
        warning, and their edges carry ``oriented=False``; regulators of a
        perturbed gene that the lasso missed are added by an invariance check
        (see Notes); ``weight`` is the least-squares coefficient of each gene
        on its kept regulators.
        ``"skeleton"``: the lasso's selection as it is (the Markov blanket of
        each gene: a regulator is often selected in both directions, then
        both edges carry ``oriented=False``), with the lasso weights.
    orient_fdr : float, default 0.05
        False discovery rate (Benjamini-Hochberg) of the interventional tests
        used for orientation: over both directions of every selected pair,
        and separately over the refutation tests (see Notes).
    n_jobs : int, default 1
        Processes for the per-gene fits (joblib; -1: all cores). Starting
        the processes takes a second or two, so this pays off only when the
        fits dominate (many candidate regulators, stability selection).
    verbose : bool, default False
        Show a tqdm progress bar over genes.
    random_state : int, numpy.random.Generator or None, default 0
        Seed of the random halves of stability selection.
    seed
        Deprecated name of ``random_state`` (a ``FutureWarning``; removed in
        the next release).

    Returns
    -------
    networkx.DiGraph
        Every gene of ``adata`` is a node; edges ``regulator -> target`` carry

        - ``weight``: the regression coefficient on the expression scale
          (least squares on the kept regulators with ``orient="interventions"``,
          the lasso coefficient with ``orient="skeleton"`` and
          ``method="lasso"``);
        - ``stability`` (stability selection only): selection frequency of
          the edge (of its reverse when only that was selected; NaN for an
          edge the invariance check added);
        - ``intervention_q``: BH q-value of "perturbing the regulator alone
          changes the target" (Welch test against the controls; NaN when the
          regulator has no single-gene perturbation, the data have no
          controls, or ``use_interventions=False``);
        - ``oriented``: True when the direction was decided (by the
          interventions, or by ``regulators=`` when only one gene of the pair
          is a candidate), False when the evidence left it open.

        ``G.graph`` records the method, its parameters, ``n_samples``,
        ``n_regulators``; ``n_pairs`` (selected pairs), ``n_oriented`` (pairs
        oriented by the interventions), ``n_oriented_by_regulators``,
        ``n_feedback_pairs`` (each gene's perturbation moves the other: both
        directions kept), ``n_unoriented`` and ``unoriented``: a DataFrame
        with one row per pair not oriented (``gene_a``, ``gene_b``,
        ``q_a_to_b``, ``q_b_to_a``, ``reason``, ``kept``: ``"a->b"``,
        ``"b->a"``, ``"both"`` or ``"none"``); ``n_added`` and ``added``: the
        edges the invariance check added (``regulator``, ``target``,
        ``perturbed``: the gene whose perturbation shifted the target's
        residual, ``shift_q``: the BH q-value of that shift; an added edge's
        ``intervention_q`` is the smallest Welch q-value, BH over every
        single-gene condition and gene, of its regulator's conditions); and,
        for stability selection
        with ``threshold > 0.5``,
        ``expected_false_edges_bound``: the sum over genes of the
        Meinshausen-Bühlmann bound q^2 / ((2 threshold - 1) p) on the
        expected number of falsely selected regulators (q: mean number of
        regulators selected per fit, p: number of candidates), valid under
        their exchangeability assumption.

    Raises
    ------
    DataContractError
        ``adata`` breaks the data contract, or ``layer`` is missing.
    ParameterError
        An argument outside its range, or ``regulators`` sharing no gene with
        ``var_names``.

    Notes
    -----
    **Orientation.** The lasso of g on all other genes selects g's Markov
    blanket: its regulators but also its targets and its targets' other
    regulators, so a regulator a of b is often selected in both directions
    and co-regulators of a gene are selected together. Interventions break
    the symmetry: if perturbing a changes b, a is upstream of b. For every
    selected pair {a, b}, both directions are tested: the mean of b in a's
    single-gene conditions against the controls by a Welch t-test (the
    smallest p-value over a's single-gene conditions, Bonferroni-corrected
    for their number; combinations are not used), and BH q-values are taken
    over every tested direction of every pair, so the expected share of
    false "a moves b" calls is at most ``orient_fdr``. "Moves" means
    q < ``orient_fdr``. Then:

    - a moves b, and b does not move a or was never perturbed: a -> b;
    - each moves the other: both directions (a feedback loop);
    - a selected direction a -> b whose weight w predicts that perturbing a
      changes b by w times a's own change, while the observed change of b
      differs from that prediction (a Welch z test, BH over these tests at
      ``orient_fdr``), is refuted: when the direct tests did not decide the
      pair, the other direction is kept;
    - both perturbed, neither moves the other: the unrefuted selected
      directions are kept (none, for co-regulators of a common target);
    - only one gene of the pair is a candidate regulator: that direction,
      unless refuted;
    - otherwise the evidence is silent (neither gene perturbed, or a
      perturbation without an effect on an unperturbed partner): the lasso's
      selection is kept, ``oriented=False``.

    **Missing regulators (invariance).** The lasso can miss a regulator a of
    g: when a child of g, moved by a through g, explains g better than a
    does, or when two paths from a to g cancel. Each gene's equation holds
    with the same weights in every condition that does not target the gene
    (invariant causal prediction, Peters, Bühlmann & Meinshausen 2016 [4]_),
    so with least-squares weights the change of g's residual mean in a's
    condition against the controls is 0 up to noise. For every gene with a
    single-gene perturbation of its own, these changes are z-tested in every
    other single-gene condition (standard error from g's residual variance;
    BH over all conditions and checked genes at ``orient_fdr``). Where one is
    significant, the regulator is sought among the perturbed gene and the
    genes its perturbation moves (Welch, BH at ``orient_fdr``), except g's
    descendants (moved by g's perturbation and not moving g): the candidate
    with the largest partial correlation with g given its regulators is added
    if that correlation is significant (t test, Bonferroni over the
    candidates, at ``orient_fdr``), g is refitted, and the check repeats (at
    most 10 regulators added per gene); g keeps the set along this path
    whose residual shifts in the fewest conditions. Added edges are listed in
    ``G.graph["added"]``. Genes never perturbed are not checked (their
    selected regulators may include descendants no test reveals).

    Pairs not oriented are listed in ``G.graph["unoriented"]`` with an
    :class:`~causalcell.errors.UnorientedEdgesWarning` stating how many. A
    pair kept in both directions is a loop for a model fitted on the network:
    ``ConditionalGRNRegressor(regressor="iv")`` fits such loops consistently
    (a wrong direction gets a coefficient near 0), the per-gene fit does not.
    With pseudobulk input (one row per perturbation) there are no replicates
    to test, and nothing is oriented. A perturbation that moves nothing
    (power, or effects that cancel along two paths) leaves its pairs
    unoriented or, if refuted, dropped.

    **Cost.** One pass over the data costs O(n p r) for n samples, p genes
    and r candidate regulators, and the moments take O(p r) memory (restrict
    ``regulators`` to transcription factors for tens of thousands of genes).
    Each gene's fit then costs O(k r) for its k targeted samples plus a LARS
    solve on a working set of about ``4 * max_regulators`` candidates.
    Stability selection repeats the pass and the fits ``n_bootstrap`` times
    (the second half of each split is the total minus the first).

    References
    ----------
    .. [1] Meinshausen N, Bühlmann P. Stability selection. J R Stat Soc B 72,
       417-473 (2010).
    .. [2] Shah RD, Samworth RJ. Variable selection with error control:
       another look at stability selection. J R Stat Soc B 75, 55-80 (2013).
    .. [3] Efron B, Hastie T, Johnstone I, Tibshirani R. Least angle
       regression. Ann Stat 32, 407-499 (2004).
    .. [4] Peters J, Bühlmann P, Meinshausen N. Causal inference by using
       invariant prediction: identification and confidence intervals. J R
       Stat Soc B 78, 947-1012 (2016).

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> from causalcell.graph import learn_network
    >>> tfs = sim.adata.var_names[sim.adata.var["is_tf"]]
    >>> G = learn_network(sim.adata, regulators=tfs, verbose=False)
    >>> sorted(G.nodes) == sorted(sim.adata.var_names)
    True
    """
    random_state = renamed("learn_network", "seed", seed, "random_state", random_state, 0)
    options = _Options.checked(method, alpha, n_bootstrap, threshold, max_regulators,
                               orient_fdr, n_jobs, random_state, orient)
    design = _design(adata, layer)
    genes = pd.Index(adata.var_names).astype(str)
    reg_idx = _regulator_index(regulators, genes)
    mom, reads = _first_pass(design, reg_idx, verbose)
    edges = _select_edges(design, reads, mom, reg_idx, options, verbose)
    params: dict[str, Any] = {
        "method": method,
        "alpha": options.alpha,
        "max_regulators": max_regulators,
        "n_samples": design.shape[0],
        "n_regulators": len(reg_idx),
        "use_interventions": bool(use_interventions),
        "orient": options.orient,
        "orient_fdr": options.orient_fdr,
    }
    if method == "stability":
        params.update(
            n_bootstrap=int(n_bootstrap),
            threshold=options.threshold,
            random_state=random_state if not isinstance(random_state, np.random.Generator)
            else repr(random_state),
            expected_false_edges_bound=edges.bound,
        )
    if options.orient == "interventions" and use_interventions:
        sums = _single_gene_sums(design)
        orientation = _orient_pairs(design, edges, reg_idx, options.orient_fdr, genes, sums)
        orientation, weight, added = _with_missing_regulators(
            reads, mom, reg_idx, orientation, sums, options, genes)
        stability = None
        if edges.stability is not None:
            # Selection frequency of the kept direction, or of the reverse one when
            # only that was selected (the orientation turned it around).
            p = len(genes)
            freq = pd.Series(edges.stability, index=edges.target * p + edges.source)
            src, tgt = orientation.source, orientation.target
            stability = freq.reindex(tgt * p + src).to_numpy()
            reverse = freq.reindex(src * p + tgt).to_numpy()
            stability = np.where(np.isnan(stability), reverse, stability)
            # An added edge is kept by the invariance check, not by its frequency.
            added_codes = (genes.get_indexer(added["target"]) * p
                           + genes.get_indexer(added["regulator"]))
            stability[np.isin(tgt * p + src, added_codes)] = np.nan
        final = _Edges(orientation.source, orientation.target, weight, stability, edges.bound)
        qvalue, oriented = orientation.qvalue, orientation.oriented
        params.update(orientation.counts)
        params["unoriented"] = orientation.table
        params["n_added"] = len(added)
        params["added"] = added
        _warn_unoriented(orientation)
    else:
        final = edges
        qvalue = np.full(len(edges.source), np.nan)
        if use_interventions:
            qvalue = _intervention_qvalues(design, edges.source, edges.target)
        oriented = _skeleton_orientation(edges.source, edges.target)
        doubled = ~oriented & (edges.source < edges.target)
        names = genes.to_numpy(dtype=object)
        params.update(n_oriented=0, n_unoriented=int(doubled.sum()))
        params["unoriented"] = pd.DataFrame({
            "gene_a": names[edges.source[doubled]],
            "gene_b": names[edges.target[doubled]],
            "reason": "orient='skeleton'" if use_interventions else "use_interventions=False",
            "kept": "both",
        })
    return _network(genes, final, qvalue, oriented, params)


def _with_missing_regulators(
    reads: Design, mom: Moments, reg_idx: np.ndarray, orientation: _Orientation,
    sums: tuple[GroupMoments, np.ndarray], options: _Options, genes: pd.Index,
) -> tuple[_Orientation, np.ndarray, pd.DataFrame]:
    """The oriented edges plus the regulators the invariance check adds
    (:func:`_restore_invariance`), with least-squares weights: each target on its
    kept regulators, over the samples that do not target it (the shared moments,
    exact leave-out). Added edges are oriented (by the perturbation that showed
    them missing)."""
    p = len(genes)
    fit = _restore_invariance(reads, mom, reg_idx, orientation.source, orientation.target,
                              sums, options.orient_fdr, options.n_jobs, genes)
    position = pd.Index(genes)
    add_src = position.get_indexer(fit.added["regulator"]).astype(np.int64)
    add_tgt = position.get_indexer(fit.added["target"]).astype(np.int64)
    source = np.r_[orientation.source, add_src]
    target = np.r_[orientation.target, add_tgt]
    qvalue = np.r_[orientation.qvalue, fit.added_q]
    oriented = np.r_[orientation.oriented, np.ones(len(add_src), dtype=bool)]
    order = np.lexsort((source, target))
    source, target, qvalue, oriented = source[order], target[order], qvalue[order], oriented[order]
    weight_of = pd.Series(fit.weight, index=fit.target * p + fit.source)
    # A regulator that is constant where its target is fitted has no coefficient: 0.
    weight = np.nan_to_num(weight_of.reindex(target * p + source).to_numpy(dtype=float), nan=0.0)
    counts = dict(orientation.counts)
    out = _Orientation(source, target, qvalue, oriented, orientation.table, counts)
    return out, weight, fit.added


@dataclass(frozen=True)
class _Options:
    """The checked options of :func:`learn_network`."""

    method: str
    alpha: float
    n_bootstrap: int
    threshold: float
    max_regulators: int | None
    orient_fdr: float
    n_jobs: int
    random_state: Any
    orient: str = "interventions"

    @classmethod
    def checked(
        cls, method: object, alpha: object, n_bootstrap: object, threshold: object,
        max_regulators: object, orient_fdr: object, n_jobs: object, random_state: object,
        orient: object = "interventions",
    ) -> _Options:
        if method not in ("lasso", "stability"):
            raise ParameterError(f"method={method!r} is invalid; use 'lasso' or 'stability'.")
        if orient not in ("interventions", "skeleton"):
            raise ParameterError(
                f"orient={orient!r} is invalid; use 'interventions' (orient every selected pair "
                f"from the perturbations) or 'skeleton' (keep the lasso's selection unoriented)."
            )
        alpha = check_fraction("alpha", alpha)
        orient_fdr = check_fraction("orient_fdr", orient_fdr)
        threshold = check_fraction("threshold", threshold, closed_right=True)
        if not is_int(n_bootstrap) or n_bootstrap < 2 or n_bootstrap % 2:
            raise ParameterError(
                f"n_bootstrap={n_bootstrap!r} is invalid; use an even number >= 2 (the samples "
                f"are split into complementary halves n_bootstrap / 2 times)."
            )
        if max_regulators is not None and (not is_int(max_regulators) or max_regulators < 1):
            raise ParameterError(
                f"max_regulators={max_regulators!r} is invalid; use a positive integer or None."
            )
        return cls(
            method=str(method),
            alpha=alpha,
            n_bootstrap=int(n_bootstrap),
            threshold=threshold,
            max_regulators=None if max_regulators is None else int(max_regulators),
            orient_fdr=orient_fdr,
            n_jobs=check_n_jobs(n_jobs),
            random_state=check_random_state(random_state),
            orient=str(orient),
        )


@dataclass(frozen=True)
class _Edges:
    """Selected edges (gene indices) with their weights, and stability selection's extras."""

    source: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    stability: np.ndarray | None = None
    bound: float = float("nan")


def _select_edges(
    design: Design, reads: Design, mom: Moments, reg_idx: np.ndarray, options: _Options,
    verbose: bool,
) -> _Edges:
    """The lasso (or stability selection) of every gene on its candidate regulators."""
    from joblib import Parallel

    from causalcell._progress import tqdm

    all_genes = np.arange(design.shape[1])
    # One pool for every dispatch (stability selection dispatches 2 per split).
    with Parallel(n_jobs=options.n_jobs, return_as="generator_unordered") as runner:
        if options.method == "stability":
            return _Edges(*_stability(
                design, reads, mom, reg_idx, all_genes,
                alpha=options.alpha,
                max_regulators=options.max_regulators,
                n_bootstrap=options.n_bootstrap,
                threshold=options.threshold,
                runner=runner,
                verbose=verbose,
                random_state=options.random_state,
            ))
        with tqdm(total=len(all_genes), desc="lasso", disable=not verbose, unit="gene") as bar:
            results = _solve_genes(
                reads, mom, reg_idx, all_genes, _Task("lasso", options.alpha,
                                                      options.max_regulators),
                subsample=None, runner=runner, progress=bar,
            )
    return _Edges(*_edges_from(results, reg_idx))


def _single_gene_sums(design: Design) -> tuple[GroupMoments, np.ndarray]:
    """Moments of the control group (0) and of every single-gene condition, and the
    target gene of each group (one pass over the data)."""
    groups, group_gene = _single_target_groups(design.interventions)
    return group_moments(design.X, groups, len(group_gene), squares=True), group_gene


def _intervention_qvalues(
    design: Design, source: np.ndarray, target: np.ndarray,
    sums: tuple[GroupMoments, np.ndarray] | None = None,
) -> np.ndarray:
    """BH q-value of "perturbing ``source[i]`` alone changes ``target[i]``", per pair
    (NaN for all, with a warning, when there are fewer than 2 controls)."""
    moments_, group_gene = _single_gene_sums(design) if sums is None else sums
    n_controls = int(moments_.count[0])
    if n_controls >= 2:
        return bh_qvalues(_edge_evidence(source, target, moments_, group_gene))
    if len(source):
        warnings.warn(
            f"learn_network: {n_controls} control sample(s) (is_control); at least 2 are "
            f"needed to test the effects of perturbations (pseudobulk data has one row per "
            f"condition: pass the cells instead). Edges are not oriented by interventions.",
            CausalCellWarning,
            stacklevel=4,
        )
    return np.full(len(source), np.nan)


def _refutation_pvalues(
    source: np.ndarray, target: np.ndarray, weight: np.ndarray, sums: GroupMoments,
    group_gene: np.ndarray,
) -> np.ndarray:
    """p-value that perturbing ``source`` moves ``target`` by ``weight`` x the source's
    own change (the direct effect an edge source -> target of that weight predicts).

    In the source's single-gene condition that changes it most, the observed
    change of the target (against the controls) is compared with ``weight``
    times the observed change of the source: a Welch z statistic on the
    target's change. A small p-value refutes the edge with that weight (the
    predicted effect is absent). NaN where the source has no such condition
    or fewer than 2 controls.
    """
    out = np.full(len(source), np.nan)
    groups = np.flatnonzero(group_gene >= 0)
    if len(source) == 0 or len(groups) == 0 or sums.count[0] < 2:
        return out
    genes_of = group_gene[groups]
    n0 = sums.count[0]
    m_self, _ = mean_and_variance(sums.count[groups], sums.sums[groups, genes_of],
                                  sums.squares[groups, genes_of])
    m0_self, _ = mean_and_variance(n0, sums.sums[0, genes_of], sums.squares[0, genes_of])
    change = np.abs(m_self - m0_self)
    # The condition that moves each perturbed gene most.
    order = np.lexsort((change, genes_of))
    last = np.r_[np.flatnonzero(np.diff(genes_of[order])), len(order) - 1]
    best = np.full(int(max(source.max(), target.max(), genes_of.max())) + 1, -1, np.int64)
    best[genes_of[order][last]] = groups[order][last]
    g = best[source]
    ok = g > 0
    if not ok.any():
        return out
    g, s_, t_ = g[ok], source[ok], target[ok]
    n1 = sums.count[g]
    m1s, _ = mean_and_variance(n1, sums.sums[g, s_], sums.squares[g, s_])
    m0s, _ = mean_and_variance(n0, sums.sums[0, s_], sums.squares[0, s_])
    m1t, v1t = mean_and_variance(n1, sums.sums[g, t_], sums.squares[g, t_])
    m0t, v0t = mean_and_variance(n0, sums.sums[0, t_], sums.squares[0, t_])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = ((m1t - m0t) - weight[ok] * (m1s - m0s)) / np.sqrt(v1t / n1 + v0t / n0)
    from scipy.stats import norm

    out[ok] = np.where(np.isfinite(z), 2.0 * norm.sf(np.abs(z)), np.nan)
    return out


def _network(
    genes: pd.Index, edges: _Edges, qvalue: np.ndarray, oriented: np.ndarray,
    params: dict[str, Any],
) -> nx.DiGraph:
    """The edges as a DiGraph over every gene, with their attributes."""
    G = nx.DiGraph(**params)
    G.add_nodes_from(genes.tolist())
    names = genes.to_numpy(dtype=object)
    attrs: list[dict[str, Any]] = [
        {
            "weight": float(edges.weight[i]),
            "intervention_q": float(qvalue[i]),
            "oriented": bool(oriented[i]),
        }
        for i in range(len(edges.source))
    ]
    if edges.stability is not None:
        for d, i in zip(attrs, range(len(edges.source)), strict=True):
            d["stability"] = float(edges.stability[i])
    G.add_edges_from(
        (names[s], names[t], d) for s, t, d in zip(edges.source, edges.target, attrs, strict=True)
    )
    return G


def _stability(
    design: Design,
    reads: Design,
    full: Moments,
    reg_idx: np.ndarray,
    genes: np.ndarray,
    *,
    alpha: float,
    max_regulators: int | None,
    n_bootstrap: int,
    threshold: float,
    runner: Any,
    verbose: bool,
    random_state: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Complementary-pairs stability selection, then a least-squares refit.

    Each half's moments come from a pass over its samples (with the full
    pass's shift); the other half's are the full moments minus those. The
    excluded rows' values are read from ``reads``.

    Returns source, target, weight, selection frequency and the summed
    Meinshausen-Bühlmann error bound (NaN for ``threshold <= 0.5``).
    """
    from causalcell._progress import tqdm

    rng = np.random.default_rng(random_state)
    n, p_genes = design.shape
    task = _Task("select", alpha, max_regulators)
    selected: list[np.ndarray] = []  # flattened (target * p + source) keys per fit
    n_selected = np.zeros(p_genes)
    with tqdm(
        total=len(genes) * n_bootstrap,
        desc="stability selection",
        disable=not verbose,
        unit="fit",
    ) as bar:
        for _ in range(n_bootstrap // 2):
            in_half = np.zeros(n, dtype=bool)
            in_half[rng.permutation(n)[: n // 2]] = True
            half = moments(design, reg_idx, rows=np.flatnonzero(in_half), shift=full.shift)
            for part, members in ((half, in_half), (full.without(half), ~in_half)):
                results = _solve_genes(
                    reads,
                    part,
                    reg_idx,
                    genes,
                    task,
                    subsample=members,
                    runner=runner,
                    progress=bar,
                )
                src, tgt, _ = _edges_from(results, reg_idx)
                selected.append(tgt * p_genes + src)
                n_selected += np.bincount(tgt, minlength=p_genes)
    keys, counts = np.unique(np.concatenate(selected), return_counts=True)
    frequency = counts / n_bootstrap
    stable = frequency >= threshold - 1e-12
    keys, frequency = keys[stable], frequency[stable]
    target, source = np.divmod(keys, p_genes)

    # Refit each gene on its stable regulators over all its samples.
    reg_position = np.full(p_genes, -1, dtype=np.int64)
    reg_position[reg_idx] = np.arange(len(reg_idx))
    fixed: dict[int, np.ndarray] = {}
    if len(target):
        bounds = np.flatnonzero(np.diff(target)) + 1
        for tg, src in zip(target[np.r_[0, bounds]], np.split(source, bounds), strict=True):
            fixed[int(tg)] = reg_position[src]
    refit_genes = np.array(sorted(fixed), dtype=np.int64)
    results = _solve_genes(
        reads,
        full,
        reg_idx,
        refit_genes,
        _Task("refit", fixed=fixed),
        subsample=None,
        runner=runner,
        progress=tqdm(disable=True),
    )
    r_src, r_tgt, r_weight = _edges_from(results, reg_idx)
    # Align the refit coefficients with the stable edges (same sort order).
    weight_of = pd.Series(r_weight, index=r_tgt * p_genes + r_src)
    weight = weight_of.reindex(target * p_genes + source).to_numpy(dtype=float)
    keep = np.isfinite(weight)  # a regulator that became constant cannot be refitted
    source, target, weight, frequency = source[keep], target[keep], weight[keep], frequency[keep]

    bound = float("nan")
    if threshold > 0.5:
        # Candidates per gene: all regulators but itself (before variance checks).
        is_reg = np.zeros(p_genes, dtype=bool)
        is_reg[reg_idx] = True
        n_candidates = len(reg_idx) - is_reg.astype(float)
        q = n_selected / n_bootstrap
        with np.errstate(divide="ignore", invalid="ignore"):
            per_gene = np.where(n_candidates > 0, q**2 / ((2 * threshold - 1) * n_candidates), 0)
        bound = float(per_gene.sum())
    order = np.lexsort((source, target))
    return source[order], target[order], weight[order], frequency[order], bound


