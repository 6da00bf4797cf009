"""Structure learning with pgmpy's PC algorithm: :func:`learn_pc`.

For small variable sets (up to about a hundred genes), optionally restricted
to a prior network through pgmpy's ``ExpertKnowledge``. pgmpy is imported
inside the functions that use it, so importing causalcell does not load it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Iterable
from itertools import combinations
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
    is_int,
    renamed,
)
from causalcell.data._schema import gene_name_problem
from causalcell.data.contract import checked_interventions, expression_matrix
from causalcell.data.lazy import compute_if_small
from causalcell.errors import (
    CausalCellWarning,
    DataContractError,
    NetworkError,
    NetworkWarning,
    ParameterError,
)

__all__ = ["learn_pc"]

# Variance (log-expression scale) below which a gene counts as constant.
_TINY_VARIANCE = 1e-12


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
        _check_names(list(edges.nodes), name)
        return {(str(u), str(v)) for u, v in edges.edges() if u != v}
    try:
        raw = [(u, v) for u, v in edges]
    except (TypeError, ValueError):
        raise NetworkError(
            f"{name} must be a networkx.DiGraph or an iterable of (regulator, target) pairs."
        ) from None
    _check_names([g for pair in raw for g in pair], name)
    return {(str(u), str(v)) for u, v in raw if u != v}


def _check_names(genes: list[Hashable], name: str) -> None:
    """Gene names of a prior / required network that can match var_names (see
    :func:`causalcell.data._schema.gene_name_problem`)."""
    problem = gene_name_problem(pd.Index(genes, dtype=object))
    if problem is not None:
        raise NetworkError(
            f"The genes of {name} {problem}. Use the symbols of var_names, e.g. "
            f"networkx.relabel_nodes(G, lambda node: str(node).strip())."
        )


def learn_pc(
    adata: AnnData,
    *,
    genes: Iterable[str] | None = None,
    prior: nx.DiGraph | Iterable[tuple[str, str]] | None = None,
    required: nx.DiGraph | Iterable[tuple[str, str]] | None = None,
    orient_by_prior: bool = True,
    significance_level: float = 0.01,
    ci_test: str | Callable[..., Any] = "pearsonr",
    max_cond_vars: int = 5,
    max_vars: int = 100,
    samples: Literal["control", "all"] = "control",
    layer: str | None = None,
    n_jobs: int = 1,
    verbose: bool = False,
    alpha: Any = DEPRECATED,
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
    significance_level : float, default 0.01
        Significance level of the conditional independence tests (pgmpy's
        ``significance_level``).
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
    verbose : bool, default False
        Show pgmpy's progress bar.
    alpha
        Deprecated name of ``significance_level`` (a ``FutureWarning``;
        removed in the next release): ``alpha`` is a penalty everywhere else
        in causalcell.

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
    >>> G = learn_pc(adata, significance_level=0.01)  # the 853 cd3_cd28 cells
    >>> G.graph["n_samples"], G.has_edge("raf", "mek") or G.has_edge("mek", "raf")
    (853, True)
    """
    significance_level = renamed("learn_pc", "alpha", alpha, "significance_level",
                                 significance_level, 0.01)
    significance_level = check_fraction("significance_level", significance_level)
    _check_pc_options(max_cond_vars, max_vars, samples, ci_test)
    n_jobs = check_n_jobs(n_jobs)
    check_anndata(adata)
    iv = checked_interventions(adata, layer=layer)
    var_names = pd.Index(adata.var_names).astype(str)
    prior_pairs, prior_nodes = _prior(prior, var_names)
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
    rows = _pc_samples(iv.is_control, samples)
    data, tested = _pc_data(expression_matrix(adata, layer), rows, var_names, used, ci_test)
    knowledge = _pc_knowledge(prior_pairs, required_pairs, set(tested))
    n_conflicts = 0
    # A prior with no edge among the genes allows nothing (pgmpy reads an empty
    # search space as "no restriction").
    nothing_allowed = prior_pairs is not None and not knowledge.search_space
    if len(tested) >= 2 and not nothing_allowed:
        pc = _prior_pc_class(restricted=prior_pairs is not None)(
            variant="stable" if n_jobs == 1 else "parallel",
            ci_test=ci_test,
            return_type="pdag",
            significance_level=significance_level,
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

    G = nx.DiGraph(
        method="pc",
        significance_level=significance_level,
        ci_test=ci_test if isinstance(ci_test, str) else repr(ci_test),
        max_cond_vars=int(max_cond_vars),
        samples=samples,
        n_samples=len(rows),
        n_directed=len(directed),
        n_undirected=len(undirected),
        n_prior_conflicts=n_conflicts,
    )
    G.add_nodes_from(used.tolist())
    G.add_edges_from(directed, oriented=True)
    G.add_edges_from(undirected, oriented=False)
    G.add_edges_from(((v, u) for u, v in undirected), oriented=False)
    _regression_weights(G, data)
    return G


def _check_pc_options(max_cond_vars: object, max_vars: object, samples: object,
                      ci_test: object) -> None:
    if not is_int(max_cond_vars) or max_cond_vars < 0:
        raise ParameterError(
            f"max_cond_vars={max_cond_vars!r} is invalid; use a non-negative integer."
        )
    if not is_int(max_vars) or max_vars < 2:
        raise ParameterError(f"max_vars={max_vars!r} is invalid; use an integer >= 2.")
    if samples not in ("control", "all"):
        raise ParameterError(f"samples={samples!r} is invalid; use 'control' or 'all'.")
    if not (isinstance(ci_test, str) or callable(ci_test)):
        raise ParameterError(
            f"ci_test={ci_test!r} is invalid; use a pgmpy CI test name such as 'pearsonr' or "
            f"'fisher_z', or a callable."
        )


def _prior(
    prior: nx.DiGraph | Iterable[tuple[str, str]] | None, var_names: pd.Index
) -> tuple[set[tuple[str, str]] | None, set[str]]:
    """The prior's edges and genes (None, empty without a prior); it must share a gene."""
    if prior is None:
        return None, set()
    pairs = _edge_pairs(prior, "prior")
    nodes = (
        {str(n) for n in prior.nodes}
        if isinstance(prior, nx.DiGraph)
        else {g for e in pairs for g in e}
    )
    if not nodes & set(var_names):
        raise NetworkError(
            f"The prior network shares no gene with the data ({len(nodes)} genes, "
            f"e.g. {sorted(nodes)[:3]}; var_names e.g. {var_names[:3].tolist()}). "
            f"Use the same gene symbols."
        )
    return pairs, nodes


def _pc_samples(is_control: np.ndarray, samples: str) -> np.ndarray:
    """The samples PC learns from: the controls (observational), or all."""
    rows = np.flatnonzero(is_control) if samples == "control" else np.arange(len(is_control))
    if samples == "control" and len(rows) < 3:
        raise DataContractError(
            f"learn_pc(samples='control') found {len(rows)} control samples (is_control); "
            f"it needs at least 3. Mark the observational samples with is_control=True, or "
            f"use samples='all' to pool every sample."
        )
    if len(rows) < 3:
        raise DataContractError(f"learn_pc needs at least 3 samples, got {len(rows)}.")
    return rows


def _pc_data(
    X: Any, rows: np.ndarray, var_names: pd.Index, used: pd.Index, ci_test: Any
) -> tuple[pd.DataFrame, pd.Index]:
    """The values PC tests (constant genes left out, with a warning) and the tested genes."""
    from pgmpy.ci_tests import get_ci_test

    sub = compute_if_small(X[rows][:, var_names.get_indexer(used)], "learn_pc")
    values = sub.toarray() if sp.issparse(sub) else np.asarray(sub)
    values = np.asarray(values, dtype=np.float64)
    constant = values.std(axis=0) <= math.sqrt(_TINY_VARIANCE)
    if constant.any():
        warnings.warn(
            f"learn_pc: {int(constant.sum())} gene(s) are constant over the {len(rows)} "
            f"samples used and cannot be tested: {used[constant][:5].tolist()}; they are "
            f"returned without edges.",
            CausalCellWarning,
            stacklevel=3,
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
    return data, tested


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


def _prior_pc_class(restricted: bool = True) -> type:
    """pgmpy's PC with separating sets for the pairs the prior makes non-adjacent.

    With ``enforce_expert_knowledge=True`` pgmpy removes forbidden adjacencies
    before any test, so those pairs have no separating set and the collider
    step fails with a KeyError (pgmpy issue #2138, open in pgmpy 1.1.2).
    Whether such a pair is independent given their common neighbour is
    unknown, so it must not create a v-structure: it gets a separating set of
    every other variable, which orients no collider.

    The completion overrides a private step of pgmpy's PC (``_build_skeleton``).
    Should a pgmpy release rename it, the override would silently not run:
    then a prior (``restricted``) is refused with a ParameterError naming the
    fix, and a search without one uses pgmpy's PC unchanged.
    """
    from pgmpy.causal_discovery import PC

    if not callable(getattr(PC, "_build_skeleton", None)):
        if not restricted:
            return PC
        import pgmpy

        raise ParameterError(
            f"learn_pc(prior=...): the installed pgmpy {pgmpy.__version__} no longer has "
            f"the PC step causalcell completes for a prior (PC._build_skeleton; pgmpy issue "
            f"#2138). Install pgmpy 1.x (pip install 'pgmpy>=1.0,<2'), or call learn_pc "
            f"without prior=."
        )

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
