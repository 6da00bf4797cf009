"""Structure learning: gene regulatory networks learned from perturbation data.

Two learners, both returning a weighted :class:`networkx.DiGraph` of gene
symbols (``regulator -> target``, float ``weight``) that every causalcell
model accepts as its network:

* :func:`learn_network`: sparse regression for thousands of genes. Each gene
  is regressed on its candidate regulators with the lasso, on the samples in
  which it is **not** targeted (a targeted gene's level is set by the tool,
  not by its regulators: Pearl's do-operator); optionally with stability
  selection (Meinshausen & Bühlmann 2010), and with edge orientation from
  the interventional samples.
* :func:`learn_pc`: pgmpy's PC algorithm for small variable sets (up to
  about a hundred), optionally restricted to a prior network through
  pgmpy's ``ExpertKnowledge``.

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
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell.data._design import Design
from causalcell.data._interventions import Interventions
from causalcell.data._moments import LeftOut, Moments, check_gather, moments
from causalcell.data._stats import (
    GroupMoments,
    bh_qvalues,
    group_moments,
    mean_and_variance,
    welch,
)
from causalcell.data._stats import significant as is_significant
from causalcell.data.contract import IS_CONTROL, checked_interventions
from causalcell.data.lazy import is_dask_array
from causalcell.errors import (
    CausalCellWarning,
    DataContractError,
    NetworkError,
    NetworkWarning,
    ParameterError,
)

__all__ = ["learn_network", "learn_pc"]

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
# Argument checks
# ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_real(value: object) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
        and math.isfinite(float(value))
    )


def _check_fraction(name: str, value: object, *, closed_right: bool = False) -> float:
    right = "]" if closed_right else ")"
    if not _is_real(value) or not (0 < float(value) < 1 or (closed_right and value == 1)):
        raise ParameterError(
            f"{name}={value!r} is invalid; {name} must be a number in (0, 1{right}."
        )
    return float(value)


def _check_n_jobs(n_jobs: object) -> int:
    if not _is_int(n_jobs) or n_jobs == 0:
        raise ParameterError(
            f"n_jobs={n_jobs!r} is invalid; use a positive number of processes, or -1 for all "
            f"cores."
        )
    return int(n_jobs)


def _expression(adata: AnnData, layer: str | None) -> Any:
    if layer is None:
        return adata.X
    return adata.layers[layer]


# ---------------------------------------------------------------------------
# The design matrix and its moments
# ---------------------------------------------------------------------------


def _design(adata: AnnData, layer: str | None) -> Design:
    """The data under intervention (targeted entries at T), validated and parsed once."""
    if not isinstance(adata, AnnData):
        raise DataContractError(
            f"Expected an AnnData object, got {type(adata).__name__}. Read files with "
            f"causalcell.data.read_h5ad(path)."
        )
    if layer is not None and layer not in adata.layers:
        raise DataContractError(
            f"Layer {layer!r} not found; available layers: {list(adata.layers.keys())}. "
            f"Pass layer=None to use X."
        )
    iv = checked_interventions(adata, layer=layer)
    X = _expression(adata, layer)
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
    targeted = np.flatnonzero(np.diff(design.mask.indptr))
    n, p = design.shape
    gather = sp.csr_array(
        (np.ones(len(targeted) * len(reg_idx), dtype=bool),
         (np.repeat(targeted, len(reg_idx)), np.tile(reg_idx, len(targeted)))),
        shape=(n, p),
    )
    check_gather(gather.nnz, "learn_network",
                 "Restrict the candidates (regulators=, e.g. the transcription factors), or "
                 "learn from pseudobulk profiles (causalcell.data.pseudobulk).")
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


@dataclass(frozen=True)
class _Task:
    """What to compute for each gene of a chunk."""

    mode: Literal["lasso", "select", "refit"]
    alpha: float = 0.0
    max_regulators: int | None = None
    # For "refit": regulator positions (into reg_idx) per gene.
    fixed: dict[int, np.ndarray] = field(default_factory=dict)


def _run_chunk(
    genes: Sequence[int],
    local_rows: Sequence[np.ndarray],
    block: np.ndarray,
    mom: Moments,
    reg_idx: np.ndarray,
    task: _Task,
) -> list[tuple[int, np.ndarray, np.ndarray]]:
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
) -> tuple[int, np.ndarray, np.ndarray]:
    """One gene of :func:`_run_chunk`."""
    prob = _GeneProblem(mom, excluded, gene, reg_idx)
    if not prob.ok:
        return gene, np.zeros(0, dtype=np.int64), np.zeros(0)
    if task.mode == "refit":
        wanted = task.fixed.get(gene, np.zeros(0, dtype=np.int64))
        idx = np.flatnonzero(np.isin(prob.cand, wanted))
        coef = prob.to_data_scale(idx, prob.refit(idx))
    else:
        idx, coef = prob.lasso(task.alpha, task.max_regulators)
        if task.mode == "lasso":
            coef = prob.to_data_scale(idx, coef)
    return gene, prob.cand[idx], coef


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
) -> list[tuple[int, np.ndarray, np.ndarray]]:
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
            sub_task = task
            if task.mode == "refit":
                sub_task = _Task(
                    mode="refit",
                    fixed={int(g): task.fixed.get(int(g)) for g in chunk if int(g) in task.fixed},
                )
            yield delayed(_run_chunk)([int(g) for g in chunk], local, block, mom, reg_idx, sub_task)

    results: list[tuple[int, np.ndarray, np.ndarray]] = []
    for part in runner(jobs()):
        results.extend(part)
        progress.update(len(part))
    return results


def _edges_from(
    results: list[tuple[int, np.ndarray, np.ndarray]], reg_idx: np.ndarray
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


def _orient(
    source: np.ndarray, target: np.ndarray, qvalue: np.ndarray, fdr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Orientation of pairs selected in both directions.

    For a pair a <-> b: if perturbing a significantly changes b (q < fdr) and
    perturbing b does not significantly change a (q >= fdr, or b was not
    perturbed alone), keep a -> b and drop b -> a. Otherwise keep both.

    Returns the boolean mask of edges kept and, for kept edges, ``oriented``:
    False where both directions of the pair are kept.
    """
    n_genes = int(max(source.max(initial=-1), target.max(initial=-1))) + 1
    key = source * n_genes + target
    reverse = target * n_genes + source
    order = np.argsort(key)
    pos = np.searchsorted(key[order], reverse)
    pos = np.minimum(pos, len(key) - 1)
    has_reverse = key[order][pos] == reverse if len(key) else np.zeros(0, bool)
    rev_index = order[pos]
    significant = is_significant(qvalue, fdr)
    rev_significant = np.where(has_reverse, significant[rev_index], False)
    drop = has_reverse & rev_significant & ~significant
    keep = ~drop
    oriented = ~(has_reverse & ~(significant ^ rev_significant))
    return keep, oriented


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
    orient_fdr: float = 0.05,
    n_jobs: int = 1,
    verbose: bool = True,
    seed: int | None = 0,
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
        Orient pairs of genes selected in both directions (a -> b and
        b -> a) from the interventional samples; see Notes. Targeted samples
        are excluded from each gene's own regression whatever this setting.
    orient_fdr : float, default 0.05
        False discovery rate (Benjamini-Hochberg, over the tested edges) of
        the interventional evidence used for orientation.
    n_jobs : int, default 1
        Processes for the per-gene fits (joblib; -1: all cores). Starting
        the processes takes a second or two, so this pays off only when the
        fits dominate (many candidate regulators, stability selection).
    verbose : bool, default True
        Show a tqdm progress bar over genes.
    seed : int or None, default 0
        Seed of the random halves of stability selection.

    Returns
    -------
    networkx.DiGraph
        Every gene of ``adata`` is a node; edges ``regulator -> target`` carry

        - ``weight``: the regression coefficient on the expression scale;
        - ``stability`` (stability selection only): selection frequency;
        - ``intervention_q``: BH q-value of "perturbing the regulator alone
          changes the target" (Welch test against the controls; NaN when the
          regulator has no single-gene perturbation, the data have no
          controls, or ``use_interventions=False``);
        - ``oriented``: False when both directions of the pair are kept (the
          direction is undetermined), True otherwise.

        ``G.graph`` records the method, its parameters, ``n_samples``,
        ``n_regulators``, ``n_oriented`` (pairs resolved by interventions)
        and, for stability selection with ``threshold > 0.5``,
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
    blanket: its regulators but also its targets, so a regulator a of b is
    often selected in both directions, a -> b and b -> a. Interventions break
    the symmetry: if perturbing a changes b, a is upstream of b. For every
    selected edge a -> b whose regulator a has single-gene perturbations, the
    mean of b in those samples is compared with the control samples by a
    Welch t-test (the smallest p-value over a's single-gene conditions,
    Bonferroni-corrected for their number; combinations are not used), and
    p-values are turned into BH q-values over all tested edges. For a pair
    selected in both directions, the edge a -> b is kept and b -> a dropped
    when q(a -> b) < ``orient_fdr`` and b -> a is not significant (or b was
    not perturbed); symmetrically; otherwise both are kept with
    ``oriented=False``. Edges selected in one direction only are never
    reversed. With pseudobulk input (one row per perturbation) there are no
    replicates to test, and nothing is oriented.

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

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, seed=0)
    >>> from causalcell.graph import learn_network
    >>> tfs = sim.adata.var_names[sim.adata.var["is_tf"]]
    >>> G = learn_network(sim.adata, regulators=tfs, verbose=False)
    >>> sorted(G.nodes) == sorted(sim.adata.var_names)
    True
    """
    from joblib import Parallel
    from tqdm.auto import tqdm

    if method not in ("lasso", "stability"):
        raise ParameterError(f"method={method!r} is invalid; use 'lasso' or 'stability'.")
    alpha = _check_fraction("alpha", alpha)
    orient_fdr = _check_fraction("orient_fdr", orient_fdr)
    threshold = _check_fraction("threshold", threshold, closed_right=True)
    if not _is_int(n_bootstrap) or n_bootstrap < 2 or n_bootstrap % 2:
        raise ParameterError(
            f"n_bootstrap={n_bootstrap!r} is invalid; use an even number >= 2 (the samples "
            f"are split into complementary halves n_bootstrap / 2 times)."
        )
    if max_regulators is not None and (not _is_int(max_regulators) or max_regulators < 1):
        raise ParameterError(
            f"max_regulators={max_regulators!r} is invalid; use a positive integer or None."
        )
    n_jobs = _check_n_jobs(n_jobs)
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ParameterError(f"seed={seed!r} is invalid; use a non-negative integer or None.")

    design = _design(adata, layer)
    iv = design.interventions
    genes = pd.Index(adata.var_names).astype(str)
    reg_idx = _regulator_index(regulators, genes)
    n_samples, n_genes = design.shape
    all_genes = np.arange(n_genes)

    groups, group_gene = _single_target_groups(iv)
    mom, reads = _first_pass(design, reg_idx, verbose)
    sums = group_moments(design.X, groups, len(group_gene), squares=True)

    params: dict[str, Any] = {
        "method": method,
        "alpha": alpha,
        "max_regulators": max_regulators,
        "n_samples": n_samples,
        "n_regulators": len(reg_idx),
        "use_interventions": bool(use_interventions),
        "orient_fdr": orient_fdr,
    }
    # One pool for every dispatch (stability selection dispatches 2 per split).
    with Parallel(n_jobs=n_jobs, return_as="generator_unordered") as runner:
        if method == "lasso":
            with tqdm(total=len(all_genes), desc="lasso", disable=not verbose, unit="gene") as bar:
                results = _solve_genes(
                    reads,
                    mom,
                    reg_idx,
                    all_genes,
                    _Task("lasso", alpha, max_regulators),
                    subsample=None,
                    runner=runner,
                    progress=bar,
                )
            source, target, weight = _edges_from(results, reg_idx)
            stability = None
        else:
            source, target, weight, stability, bound = _stability(
                design,
                reads,
                mom,
                reg_idx,
                all_genes,
                alpha=alpha,
                max_regulators=max_regulators,
                n_bootstrap=int(n_bootstrap),
                threshold=threshold,
                runner=runner,
                verbose=verbose,
                seed=seed,
            )
    if method == "stability":
        params.update(
            n_bootstrap=int(n_bootstrap),
            threshold=threshold,
            seed=seed,
            expected_false_edges_bound=bound,
        )

    # Interventional evidence and orientation.
    qvalue = np.full(len(source), np.nan)
    n_controls = int(sums.count[0])
    if use_interventions and n_controls >= 2:
        qvalue = bh_qvalues(_edge_evidence(source, target, sums, group_gene))
    elif use_interventions and len(source):
        warnings.warn(
            f"learn_network: {n_controls} control sample(s) (is_control); at least 2 are "
            f"needed to test the effects of perturbations (pseudobulk data has one row per "
            f"condition: pass the cells instead). Edges are not oriented by interventions.",
            CausalCellWarning,
            stacklevel=2,
        )
    keep, oriented = _orient(source, target, qvalue, orient_fdr)
    params["n_oriented"] = int((~keep).sum())

    G = nx.DiGraph(**params)
    G.add_nodes_from(genes.tolist())
    names = genes.to_numpy(dtype=object)
    kept = np.flatnonzero(keep)
    attrs: list[dict[str, Any]] = [
        {
            "weight": float(weight[i]),
            "intervention_q": float(qvalue[i]),
            "oriented": bool(oriented[i]),
        }
        for i in kept
    ]
    if stability is not None:
        for d, i in zip(attrs, kept, strict=True):
            d["stability"] = float(stability[i])
    G.add_edges_from(
        (names[s], names[t], d) for s, t, d in zip(source[kept], target[kept], attrs, strict=True)
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
    seed: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Complementary-pairs stability selection, then a least-squares refit.

    Each half's moments come from a pass over its samples (with the full
    pass's shift); the other half's are the full moments minus those. The
    excluded rows' values are read from ``reads``.

    Returns source, target, weight, selection frequency and the summed
    Meinshausen-Bühlmann error bound (NaN for ``threshold <= 0.5``).
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
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


# ---------------------------------------------------------------------------
# learn_pc
# ---------------------------------------------------------------------------


def _edge_pairs(
    edges: nx.DiGraph | Iterable[tuple[Hashable, Hashable]], name: str
) -> set[tuple[str, str]]:
    if isinstance(edges, nx.Graph):
        if not isinstance(edges, nx.DiGraph) or edges.is_multigraph():
            raise NetworkError(
                f"{name} must be a networkx.DiGraph (or a list of (regulator, target) pairs), "
                f"got {type(edges).__name__}; convert with networkx.DiGraph(G)."
            )
        return {(str(u), str(v)) for u, v in edges.edges() if u != v}
    try:
        pairs = {(str(u), str(v)) for u, v in edges}
    except (TypeError, ValueError):
        raise NetworkError(
            f"{name} must be a networkx.DiGraph or an iterable of (regulator, target) pairs."
        ) from None
    return {(u, v) for u, v in pairs if u != v}


def learn_pc(
    adata: AnnData,
    *,
    genes: Iterable[str] | None = None,
    prior: nx.DiGraph | Iterable[tuple[str, str]] | None = None,
    required: nx.DiGraph | Iterable[tuple[str, str]] | None = None,
    orient_by_prior: bool = True,
    alpha: float = 0.01,
    ci_test: str | Callable[..., Any] = "pearsonr",
    max_cond_vars: int = 5,
    max_vars: int = 100,
    samples: Literal["control", "all"] = "control",
    layer: str | None = None,
    n_jobs: int = 1,
    verbose: bool = True,
) -> nx.DiGraph:
    """Learn a network with pgmpy's PC algorithm (small variable sets).

    The PC algorithm (Spirtes, Glymour & Scheines) removes the edge between
    two variables when a conditional independence test accepts independence
    given some set of their neighbours, then orients v-structures and
    propagates orientations with Meek's rules. It returns a CPDAG: directed
    edges where the data determine the direction, undirected ones otherwise.
    This wraps :class:`pgmpy.causal_discovery.PC` (PC-stable).

    Parameters
    ----------
    adata : anndata.AnnData
        Samples following the data contract. Not modified.
    genes : iterable of str, optional
        Variables (a subset of ``var_names``). Default: every gene, or the
        genes that are nodes of ``prior`` when a prior is given.
    prior : networkx.DiGraph or iterable of (str, str), optional
        Prior network restricting the search: two genes can be adjacent only
        if the prior has an edge between them (either direction). Passed to
        pgmpy as the ``search_space`` of an ``ExpertKnowledge`` (both
        directions of every prior edge, because pgmpy removes skeleton
        adjacencies for forbidden edges in either direction) with
        ``enforce_expert_knowledge=True``. Pairs the prior makes non-adjacent
        are never tested, so they orient no v-structure (they get a separating
        set of all other variables; this also avoids pgmpy issue #2138).
    required : networkx.DiGraph or iterable of (str, str), optional
        Edges that must be adjacent in the result (they are never tested).
        With ``orient_by_prior`` their direction is imposed where the data
        leave it undetermined.
    orient_by_prior : bool, default True
        Orient undirected edges u - v of the learned CPDAG as u -> v when the
        prior (or ``required``) has u -> v but not v -> u, then apply Meek's
        rules again (pgmpy's ``ExpertKnowledge.apply_expert_knowledge``).
        Edges the data orient against the prior are kept as the data say;
        their number is in ``G.graph["n_prior_conflicts"]``.
    alpha : float, default 0.01
        Significance level of the conditional independence tests.
    ci_test : str or callable, default "pearsonr"
        A pgmpy CI test for continuous data (``"pearsonr"``, partial
        correlation t-test; ``"fisher_z"``; ...) or a callable with pgmpy's
        CI test signature.
    max_cond_vars : int, default 5
        Largest conditioning set size.
    max_vars : int, default 100
        Refuse more variables than this (PC's number of tests grows quickly
        with the number of variables; pgmpy runs them one by one).
    samples : {"control", "all"}, default "control"
        ``"control"``: observational samples only (``is_control``), where the
        joint distribution is the one PC assumes. ``"all"``: every sample,
        pooled (interventions then act like a mixture; more samples but a
        distribution no single DAG generates).
    layer : str, optional
        Layer holding the expression; ``None`` uses ``X``.
    n_jobs : int, default 1
        Threads for pgmpy's parallel PC-stable variant (same result).
    verbose : bool, default True
        Show pgmpy's progress bar.

    Returns
    -------
    networkx.DiGraph
        Nodes: the genes used. A directed edge of the CPDAG u -> v is returned
        as u -> v with ``oriented=True``; an undirected edge u - v as both
        u -> v and v -> u with ``oriented=False``. ``weight`` is the
        coefficient of u in the least-squares regression (with intercept) of
        v on all its parents in the returned graph, over the samples used
        (for undirected edges, the neighbours count as parents). ``G.graph``
        records the parameters, ``n_samples``, ``n_directed``,
        ``n_undirected`` and ``n_prior_conflicts``. Genes constant over the
        samples cannot be tested and are returned as isolated nodes (with a
        warning).

    Raises
    ------
    ParameterError
        More genes than ``max_vars``, genes absent from ``var_names``, an
        unknown ``ci_test`` or a parameter out of range.
    NetworkError
        ``prior`` (or ``required``) is neither a DiGraph nor an iterable of
        (regulator, target) pairs, or ``prior`` shares no gene with the data.
    DataContractError
        ``adata`` breaks the data contract, or has no control samples for
        ``samples="control"`` (fewer than 3 samples in all).

    Warns
    -----
    NetworkWarning
        If the prior has no edge among the genes (the result has no edges).

    References
    ----------
    .. [1] Spirtes P, Glymour C, Scheines R. Causation, Prediction, and
       Search, 2nd ed. MIT Press (2000).
    .. [2] Colombo D, Maathuis MH. Order-independent constraint-based causal
       structure learning. J Mach Learn Res 15, 3741-3782 (2014).

    Examples
    --------
    >>> import causalcell as cc
    >>> from causalcell.graph import learn_pc
    >>> adata = cc.datasets.load_sachs2005()
    >>> G = learn_pc(adata, alpha=0.01, verbose=False)  # the 853 cd3_cd28 cells
    >>> G.graph["n_samples"], G.has_edge("raf", "mek") or G.has_edge("mek", "raf")
    (853, True)
    """
    from pgmpy.ci_tests import get_ci_test

    alpha = _check_fraction("alpha", alpha)
    if not _is_int(max_cond_vars) or max_cond_vars < 0:
        raise ParameterError(
            f"max_cond_vars={max_cond_vars!r} is invalid; use a non-negative integer."
        )
    if not _is_int(max_vars) or max_vars < 2:
        raise ParameterError(f"max_vars={max_vars!r} is invalid; use an integer >= 2.")
    if samples not in ("control", "all"):
        raise ParameterError(f"samples={samples!r} is invalid; use 'control' or 'all'.")
    n_jobs = _check_n_jobs(n_jobs)
    if not (isinstance(ci_test, str) or callable(ci_test)):
        raise ParameterError(
            f"ci_test={ci_test!r} is invalid; use a pgmpy CI test name such as 'pearsonr' or "
            f"'fisher_z', or a callable."
        )
    if not isinstance(adata, AnnData):
        raise DataContractError(f"Expected an AnnData object, got {type(adata).__name__}.")
    if layer is not None and layer not in adata.layers:
        raise DataContractError(
            f"Layer {layer!r} not found; available layers: {list(adata.layers.keys())}. "
            f"Pass layer=None to use X."
        )
    iv = checked_interventions(adata, layer=layer)
    var_names = pd.Index(adata.var_names).astype(str)

    prior_pairs, prior_nodes = None, set()
    if prior is not None:
        prior_pairs = _edge_pairs(prior, "prior")
        prior_nodes = (
            {str(n) for n in prior.nodes}
            if isinstance(prior, nx.DiGraph)
            else {g for e in prior_pairs for g in e}
        )
        if not prior_nodes & set(var_names):
            raise NetworkError(
                f"The prior network shares no gene with the data ({len(prior_nodes)} genes, "
                f"e.g. {sorted(prior_nodes)[:3]}; var_names e.g. {var_names[:3].tolist()}). "
                f"Use the same gene symbols."
            )
    required_pairs = _edge_pairs(required, "required") if required is not None else set()
    if prior is not None:
        prior_nodes |= {g for e in required_pairs for g in e}
    used = _pc_genes(var_names, genes, prior_nodes if prior is not None else None, max_vars)
    bad_required = [e for e in required_pairs if e[0] not in used or e[1] not in used]
    if bad_required:
        raise ParameterError(
            f"required edges {sorted(bad_required)[:3]} name genes outside the variables "
            f"used; add them to genes= or drop these edges."
        )

    rows = np.flatnonzero(iv.is_control) if samples == "control" else np.arange(adata.n_obs)
    if samples == "control" and len(rows) < 3:
        raise DataContractError(
            f"learn_pc(samples='control') found {len(rows)} control samples (is_control); "
            f"it needs at least 3. Mark the observational samples with is_control=True, or "
            f"use samples='all' to pool every sample."
        )
    if len(rows) < 3:
        raise DataContractError(f"learn_pc needs at least 3 samples, got {len(rows)}.")
    cols = var_names.get_indexer(used)
    X = _expression(adata, layer)
    sub = X[rows][:, cols]
    values = sub.toarray() if sp.issparse(sub) else np.asarray(sub)
    values = np.asarray(values, dtype=np.float64)
    constant = values.std(axis=0) <= math.sqrt(_TINY_VARIANCE)
    if constant.any():
        warnings.warn(
            f"learn_pc: {int(constant.sum())} gene(s) are constant over the {len(rows)} "
            f"samples used and cannot be tested: {used[constant][:5].tolist()}; they are "
            f"returned without edges.",
            CausalCellWarning,
            stacklevel=2,
        )
    tested = used[~constant]
    data = pd.DataFrame(values[:, ~constant], columns=tested.tolist())
    if isinstance(ci_test, str):
        try:
            get_ci_test(test=ci_test, data=data)
        except ValueError as exc:
            raise ParameterError(
                f"ci_test={ci_test!r} is not a pgmpy CI test ({exc}); for continuous data use "
                f"'pearsonr' or 'fisher_z'."
            ) from None

    knowledge = _pc_knowledge(prior_pairs, required_pairs, set(tested))
    n_directed = n_undirected = n_conflicts = 0
    # A prior with no edge among the genes allows nothing (pgmpy reads an empty
    # search space as "no restriction").
    nothing_allowed = prior_pairs is not None and not knowledge.search_space
    if len(tested) >= 2 and not nothing_allowed:
        pc = _prior_pc_class()(
            variant="stable" if n_jobs == 1 else "parallel",
            ci_test=ci_test,
            return_type="pdag",
            significance_level=alpha,
            max_cond_vars=int(max_cond_vars),
            expert_knowledge=knowledge,
            enforce_expert_knowledge=knowledge is not None,
            n_jobs=n_jobs,
            show_progress=verbose,
        )
        pc.fit(data)
        pdag = pc.causal_graph_
        if orient_by_prior and (prior_pairs or required_pairs):
            pdag, n_conflicts = _orient_pdag(
                pdag, (prior_pairs or set()) | required_pairs, required_pairs
            )
        directed = {(str(u), str(v)) for u, v in pdag.directed_edges}
        undirected = {(str(u), str(v)) for u, v in pdag.undirected_edges}
    else:
        directed, undirected = set(), set()
    n_directed, n_undirected = len(directed), len(undirected)

    G = nx.DiGraph(
        method="pc",
        alpha=alpha,
        ci_test=ci_test if isinstance(ci_test, str) else repr(ci_test),
        max_cond_vars=int(max_cond_vars),
        samples=samples,
        n_samples=len(rows),
        n_directed=n_directed,
        n_undirected=n_undirected,
        n_prior_conflicts=n_conflicts,
    )
    G.add_nodes_from(used.tolist())
    G.add_edges_from(directed, oriented=True)
    G.add_edges_from(undirected, oriented=False)
    G.add_edges_from(((v, u) for u, v in undirected), oriented=False)
    _regression_weights(G, data)
    return G


def _pc_genes(
    var_names: pd.Index,
    genes: Iterable[str] | None,
    prior_nodes: set[str] | None,
    max_vars: int,
) -> pd.Index:
    """The variables of :func:`learn_pc`, checked against ``var_names`` and ``max_vars``."""
    if genes is None:
        used = var_names if prior_nodes is None else var_names[var_names.isin(prior_nodes)]
    else:
        if isinstance(genes, str | bytes):
            raise ParameterError(
                f"genes must be a collection of gene symbols, got the single string {genes!r}."
            )
        used = pd.Index([str(g) for g in genes]).unique()
        missing = used[~used.isin(var_names)]
        if len(missing):
            raise ParameterError(
                f"{len(missing)} of the genes are not in var_names: {missing[:5].tolist()}. "
                f"Choose genes among adata.var_names."
            )
    if len(used) > max_vars:
        raise ParameterError(
            f"learn_pc got {len(used)} variables, more than max_vars={max_vars}: the PC "
            f"algorithm's number of independence tests grows quickly with the number of "
            f"variables. Select at most {max_vars} genes (genes=...), restrict them with a "
            f"prior network, use causalcell.graph.learn_network (sparse regression, "
            f"scales to thousands of genes), or raise max_vars if you can wait."
        )
    if len(used) < 2:
        raise ParameterError(
            f"learn_pc needs at least 2 variables, got {len(used)} ({used.tolist()})."
        )
    return used


def _pc_knowledge(
    prior_pairs: set[tuple[str, str]] | None,
    required_pairs: set[tuple[str, str]],
    tested: set[str],
) -> Any:
    """pgmpy ExpertKnowledge restricting the skeleton to the prior (or None)."""
    from pgmpy.causal_discovery import ExpertKnowledge

    if prior_pairs is None and not required_pairs:
        return None
    kwargs: dict[str, Any] = {}
    if prior_pairs is not None:
        allowed = {e for e in prior_pairs | required_pairs if e[0] in tested and e[1] in tested}
        if not allowed:
            warnings.warn(
                f"learn_pc: the prior has no edge among the {len(tested)} genes used; the "
                f"result has no edges.",
                NetworkWarning,
                stacklevel=3,
            )
        # Both directions: pgmpy removes an undirected skeleton adjacency for a
        # forbidden edge in either direction (and forbids what is outside the
        # search space).
        kwargs["search_space"] = allowed | {(v, u) for u, v in allowed}
    if required_pairs:
        req = {e for e in required_pairs if e[0] in tested and e[1] in tested}
        # Both directions: the skeleton phase looks (u, v) up in the order the
        # undirected graph yields the pair.
        kwargs["required_edges"] = req | {(v, u) for u, v in req}
    return ExpertKnowledge(**kwargs)


def _prior_pc_class() -> type:
    """pgmpy's PC with separating sets for the pairs the prior makes non-adjacent.

    With ``enforce_expert_knowledge=True`` pgmpy removes forbidden adjacencies
    before any test, so those pairs have no separating set and the collider
    step fails with a KeyError (pgmpy issue #2138, open in pgmpy 1.1.2).
    Whether such a pair is independent given their common neighbour is
    unknown, so it must not create a v-structure: it gets a separating set of
    every other variable, which orients no collider.
    """
    from pgmpy.causal_discovery import PC

    class _PriorPC(PC):
        def _build_skeleton(self, *args: Any, **kwargs: Any) -> Any:
            skeleton, sepsets = super()._build_skeleton(*args, **kwargs)
            nodes = list(skeleton.nodes())
            for u, v in combinations(nodes, 2):
                key = frozenset((u, v))
                if key not in sepsets and not skeleton.has_edge(u, v):
                    sepsets[key] = tuple(n for n in nodes if n != u and n != v)
            return skeleton, sepsets

    return _PriorPC


def _orient_pdag(
    pdag: Any, prior_pairs: set[tuple[str, str]], required_pairs: set[tuple[str, str]]
) -> tuple[Any, int]:
    """Orient undirected CPDAG edges by one-directional prior edges, then Meek's rules.

    Returns the new PDAG and the number of directed edges that contradict a
    one-directional prior edge.
    """
    from pgmpy.causal_discovery import ExpertKnowledge

    one_way = {(u, v) for u, v in prior_pairs if (v, u) not in prior_pairs}
    one_way |= required_pairs
    conflicts = sum(
        1 for u, v in pdag.directed_edges if (v, u) in one_way and (u, v) not in one_way
    )
    undirected = {frozenset(e) for e in pdag.undirected_edges}
    # Forbidding v -> u orients an undirected u - v as u -> v in pgmpy; only
    # undirected edges are passed, so pgmpy logs no conflict.
    forbid = {
        (v, u) for u, v in one_way if frozenset((u, v)) in undirected and (v, u) not in one_way
    }
    if not forbid:
        return pdag, conflicts
    knowledge = ExpertKnowledge(forbidden_edges=forbid)
    pdag = knowledge.apply_expert_knowledge(pdag.copy())
    return pdag.apply_meeks_rules(apply_r4=True), conflicts


def _regression_weights(G: nx.DiGraph, data: pd.DataFrame) -> None:
    """Set ``weight`` on every edge: least-squares coefficient of the source in
    the regression of the target on all its parents (with intercept)."""
    if G.number_of_edges() == 0:
        return
    cov = np.cov(data.to_numpy(), rowvar=False)
    pos = {g: i for i, g in enumerate(data.columns)}
    # One small solve per node with parents: parent sets differ per node.
    for v in G.nodes:
        parents = list(G.predecessors(v))
        if not parents:
            continue
        p_idx = [pos[u] for u in parents]
        coef, *_ = np.linalg.lstsq(cov[np.ix_(p_idx, p_idx)], cov[p_idx, pos[v]], rcond=None)
        for u, c in zip(parents, coef, strict=True):
            G.edges[u, v]["weight"] = float(c)
