"""Tests of structure learning: sparse-regression networks (learn_network) and pgmpy's PC."""

from __future__ import annotations

import warnings

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from sklearn.linear_model import Lasso, lars_path

import causalcell.graph._lasso as learn_module
from causalcell.data import Interventions
from causalcell.datasets import load_sachs2005, load_sachs2005_network, simulate
from causalcell.errors import (
    CausalCellWarning,
    DataContractError,
    NetworkError,
    NetworkWarning,
    ParameterError,
    UnmeasuredTargetWarning,
)
from causalcell.graph import learn_network, learn_pc, network_to_frame

# Sachs et al. label a co-stimulation (ICAM2) that is not a measured protein.
pytestmark = pytest.mark.filterwarnings("ignore::causalcell.errors.UnmeasuredTargetWarning")

# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def sim200():
    """The default simulated screen: 200 genes, 20 TFs, knockdowns (linear)."""
    return simulate(n_genes=200, n_tfs=20, random_state=0)


@pytest.fixture(scope="module")
def sachs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)
        return load_sachs2005()


def _tfs(sim) -> list[str]:
    return sim.adata.var_names[sim.adata.var["is_tf"]].tolist()


def _precision_recall(G: nx.DiGraph, truth: set) -> tuple[float, float]:
    edges = set(G.edges())
    hits = len(edges & truth)
    return hits / max(len(edges), 1), hits / len(truth)


def _design_matrix(adata: AnnData) -> tuple[np.ndarray, Interventions]:
    """X with every targeted entry at its known level T (the learner's convention)."""
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    X = np.asarray(adata.X, dtype=np.float64).copy()
    levels = iv.level_matrix().tocoo()
    known = np.isfinite(levels.data)
    X[levels.row[known], levels.col[known]] = levels.data[known]
    return X, iv


def _naive_standardized(X, iv, genes, g):
    """Standardized target and candidates of gene g on the samples not targeting it."""
    j = genes.index(g)
    rows = ~iv.targeted(g)
    y = X[rows, j]
    R = np.delete(X[rows], j, axis=1)
    keep = R.std(axis=0) > 1e-6
    R = R[:, keep]
    names = [r for r, k in zip([r for r in genes if r != g], keep, strict=True) if k]
    ys = (y - y.mean()) / y.std()
    Rs = (R - R.mean(axis=0)) / R.std(axis=0)
    return ys, Rs, names, y.std(), R.std(axis=0)


def _in_weights(G: nx.DiGraph, g: str) -> dict[str, float]:
    return {u: d["weight"] for u, _, d in G.in_edges(g, data=True)}


def _sem_adata(seed: int = 0) -> AnnData:
    """Linear Gaussian SEM A -> B -> C, A -> D with knockdowns of A and of B.

    Knocked-down genes are set from outside (do-operator), at a low level with
    a little spread; their levels are not recorded (measured values are used).
    """
    rng = np.random.default_rng(seed)
    groups = [("control", 2000), ("A", 600), ("B", 600)]
    rows = []
    for label, n in groups:
        e = rng.normal(size=(n, 4))
        a = -3 + 0.3 * e[:, 0] if label == "A" else e[:, 0]
        b = -3 + 0.3 * e[:, 1] if label == "B" else 0.9 * a + e[:, 1]
        c = 0.9 * b + e[:, 2]
        d = -0.8 * a + e[:, 3]
        rows.append((label, np.column_stack([a, b, c, d])))
    X = np.vstack([r[1] for r in rows]) + 5.0
    labels = np.concatenate([[lab] * len(r) for lab, r in rows])
    is_control = labels == "control"
    obs = pd.DataFrame(
        {
            "perturbation": labels,
            "is_control": is_control,
            "perturbation_type": np.where(is_control, "control", "knockdown"),
        },
        index=[f"s{i}" for i in range(len(labels))],
    )
    return AnnData(X=X, obs=obs, var=pd.DataFrame(index=["A", "B", "C", "D"]))


# ------------------------------------------------------------ learn_network: exactness


def test_lasso_equals_naive_sklearn_lasso_per_gene():
    """Each gene's edges are scikit-learn's Lasso on its non-targeted samples,
    standardized, with knocked-out regulators at T = 0 (exact to rounding)."""
    sim = simulate(n_genes=40, n_tfs=8, kind="knockout", random_state=3)
    alpha = 0.03
    G = learn_network(
        sim.adata, alpha=alpha, max_regulators=None, use_interventions=False, verbose=False
    )
    X, iv = _design_matrix(sim.adata)
    genes = sim.adata.var_names.tolist()
    n_compared = 0
    for g in genes:
        ys, Rs, names, sd_y, sd_r = _naive_standardized(X, iv, genes, g)
        ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=100_000).fit(Rs, ys)
        coef = ref.coef_ * sd_y / sd_r
        expected = {r: c for r, c in zip(names, coef, strict=True) if c != 0}
        got = _in_weights(G, g)
        assert set(got) == set(expected), g
        for r, c in expected.items():
            assert got[r] == pytest.approx(c, rel=1e-8, abs=1e-10)
        n_compared += len(expected)
    assert n_compared > 100  # the comparison covered many edges


def test_working_set_and_kkt_check_give_the_exact_lasso(monkeypatch):
    """With a working set far smaller than the candidates, violators of the
    lasso optimality conditions are added until the solution is exact."""
    sim = simulate(n_genes=60, n_tfs=10, random_state=4)
    kwargs = dict(alpha=0.02, max_regulators=None, use_interventions=False, verbose=False)
    full = learn_network(sim.adata, **kwargs)
    monkeypatch.setattr(learn_module, "_MIN_WORKING_SET", 2)
    small = learn_network(sim.adata, **kwargs)
    assert set(small.edges()) == set(full.edges())
    assert full.number_of_edges() > 5 * 60  # more edges than any working set held
    for u, v, w in full.edges(data="weight"):
        assert small.edges[u, v]["weight"] == pytest.approx(w, rel=1e-7, abs=1e-10)


def test_max_regulators_takes_the_lasso_path_point_with_that_many_regulators():
    sim = simulate(n_genes=40, n_tfs=8, random_state=5)
    cap = 3
    G = learn_network(
        sim.adata, alpha=0.01, max_regulators=cap, use_interventions=False, verbose=False
    )
    X, iv = _design_matrix(sim.adata)
    genes = sim.adata.var_names.tolist()
    capped = 0
    for g in genes:
        ys, Rs, names, sd_y, sd_r = _naive_standardized(X, iv, genes, g)
        _, _, coefs = lars_path(Rs, ys, method="lasso", alpha_min=0.01)
        n_active = np.count_nonzero(coefs, axis=0)
        col = np.flatnonzero(n_active <= cap)[-1]
        capped += n_active[-1] > cap
        coef = coefs[:, col] * sd_y / sd_r
        expected = {r: c for r, c in zip(names, coef, strict=True) if c != 0}
        got = _in_weights(G, g)
        assert len(got) <= cap
        assert set(got) == set(expected), g
        for r, c in expected.items():
            assert got[r] == pytest.approx(c, rel=1e-6, abs=1e-9)
    assert capped > 5  # the cap was binding for several genes


def test_sparse_input_and_float32_give_the_same_network(sim200):
    dense = learn_network(sim200.adata, regulators=_tfs(sim200), verbose=False)
    sparse = sim200.adata.copy()
    sparse.X = sp.csc_matrix(sparse.X)  # CSC is converted to CSR internally
    G = learn_network(sparse, regulators=_tfs(sim200), verbose=False)
    assert set(G.edges()) == set(dense.edges())
    for u, v, w in dense.edges(data="weight"):
        assert G.edges[u, v]["weight"] == pytest.approx(w, rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- recovery


def test_lasso_recovers_the_simulated_network(sim200):
    """Measured on seed 0: precision 0.575, recall 0.589 (409 edges, 399 true);
    seeds 0-4 give precision 0.46-0.60, recall 0.58-0.66. A random graph with
    as many TF -> gene edges has precision ~0.10."""
    truth = set(sim200.network.edges())
    G = learn_network(sim200.adata, regulators=_tfs(sim200), alpha=0.05, verbose=False)
    precision, recall = _precision_recall(G, truth)
    n_possible = 20 * (200 - 1)
    random_precision = len(truth) / n_possible
    assert precision >= 0.5
    assert recall >= 0.5
    assert precision >= 4 * random_precision
    # Every gene is a node; edges carry the documented attributes.
    assert set(G.nodes) == set(sim200.adata.var_names)
    _u, _v, d = next(iter(G.edges(data=True)))
    assert {"weight", "intervention_q", "oriented"} <= set(d)
    # Signs of the coefficients of true edges mostly agree with the truth.
    true_w = nx.get_edge_attributes(sim200.network, "weight")
    hits = [(w, true_w[e]) for e, w in nx.get_edge_attributes(G, "weight").items() if e in true_w]
    agree = np.mean([np.sign(a) == np.sign(b) for a, b in hits])
    assert agree >= 0.95


def test_stability_selection_is_more_precise(sim200):
    """Measured (n_bootstrap=20, split seeds 0-2): precision 0.646-0.652,
    recall 0.521-0.529, against the lasso's 0.575 / 0.589."""
    truth = set(sim200.network.edges())
    tfs = _tfs(sim200)
    lasso = learn_network(sim200.adata, regulators=tfs, verbose=False)
    G = learn_network(
        sim200.adata,
        regulators=tfs,
        method="stability",
        n_bootstrap=20,
        threshold=0.6,
        verbose=False,
        random_state=1,
    )
    precision, recall = _precision_recall(G, truth)
    assert precision >= 0.58
    assert recall >= 0.45
    assert precision > _precision_recall(lasso, truth)[0]
    stability = np.array(list(nx.get_edge_attributes(G, "stability").values()))
    assert stability.min() >= 0.6
    assert stability.max() <= 1.0
    assert G.graph["method"] == "stability"
    assert G.graph["n_bootstrap"] == 20
    assert np.isfinite(G.graph["expected_false_edges_bound"])


def test_stability_matches_naive_half_sample_lassos_and_least_squares_refit():
    """Frequencies equal a naive recount over the complementary halves, and
    weights are least squares of each gene on its stable regulators."""
    sim = simulate(n_genes=15, n_tfs=4, n_cells_per_perturbation=40, random_state=6)
    adata = sim.adata
    alpha, n_boot, seed = 0.05, 4, 11
    G = learn_network(
        adata,
        method="stability",
        alpha=alpha,
        n_bootstrap=n_boot,
        threshold=0.5,
        max_regulators=None,
        use_interventions=False,
        verbose=False,
        random_state=seed,
    )
    X, iv = _design_matrix(adata)
    genes = adata.var_names.tolist()
    n = adata.n_obs
    rng = np.random.default_rng(seed)  # the documented split procedure
    counts: dict[tuple[str, str], int] = {}
    for _ in range(n_boot // 2):
        half = np.zeros(n, dtype=bool)
        half[rng.permutation(n)[: n // 2]] = True
        for members in (half, ~half):
            for j, g in enumerate(genes):
                rows = members & ~iv.targeted(g)
                y = X[rows, j]
                R = np.delete(X[rows], j, axis=1)
                others = [r for r in genes if r != g]
                ys = (y - y.mean()) / y.std()
                Rs = (R - R.mean(axis=0)) / R.std(axis=0)
                fit = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=100_000)
                for r, c in zip(others, fit.fit(Rs, ys).coef_, strict=True):
                    if c != 0:
                        counts[(r, g)] = counts.get((r, g), 0) + 1
    expected = {e: c / n_boot for e, c in counts.items() if c / n_boot >= 0.5}
    got = nx.get_edge_attributes(G, "stability")
    assert got == pytest.approx(expected)
    for g in genes:
        parents = sorted(u for u, _ in G.in_edges(g))
        if not parents:
            continue
        rows = ~iv.targeted(g)
        design = np.column_stack(
            [np.ones(rows.sum()), X[np.ix_(rows, [genes.index(p) for p in parents])]]
        )
        beta = np.linalg.lstsq(design, X[rows, genes.index(g)], rcond=None)[0][1:]
        for p, b in zip(parents, beta, strict=True):
            assert G.edges[p, g]["weight"] == pytest.approx(b, rel=1e-8, abs=1e-10)


def test_stability_is_reproducible_with_a_random_state():
    sim = simulate(n_genes=30, n_tfs=5, random_state=2)
    kwargs = dict(method="stability", n_bootstrap=6, verbose=False)
    a = learn_network(sim.adata, random_state=3, **kwargs)
    b = learn_network(sim.adata, random_state=np.random.default_rng(3), **kwargs)
    pd.testing.assert_frame_equal(network_to_frame(a), network_to_frame(b))
    # The old name works for one release, with a FutureWarning naming the new one.
    with pytest.warns(FutureWarning, match="seed= is renamed random_state="):
        c = learn_network(sim.adata, seed=3, **kwargs)
    pd.testing.assert_frame_equal(network_to_frame(a), network_to_frame(c))
    with pytest.raises(ParameterError, match="give only random_state="):
        learn_network(sim.adata, seed=3, random_state=4, **kwargs)


# --------------------------------------------------------------------------- exclusion


def test_corrupting_a_gene_where_it_is_targeted_leaves_its_parents_unchanged():
    """Exclusion is real: g's expression in the samples that target g (alone
    or in a combination) never enters g's regression. The same corruption on
    as many non-targeted samples does change g's parents (the test can fail)."""
    sim = simulate(n_genes=60, n_tfs=8, n_combinations=8, record_levels=False, random_state=7)
    adata = sim.adata
    iv = Interventions.from_adata(adata)
    combos = iv.conditions[iv.conditions["n_targets"] > 1]
    g = combos["targets"].iloc[0][0]  # a TF targeted alone and in a combination
    targeted = iv.targeted(g)
    assert (targeted & (iv.mask.sum(axis=1) > 1)).any()
    kwargs = dict(regulators=_tfs(sim), use_interventions=False, verbose=False)
    base = learn_network(adata, **kwargs)
    assert base.in_degree(g) > 0

    rng = np.random.default_rng(0)
    j = adata.var_names.get_loc(g)

    def corrupted(rows: np.ndarray) -> AnnData:
        out = adata.copy()
        out.X[rows, j] = rng.uniform(0, 20, size=rows.sum()).astype(out.X.dtype)
        return out

    G = learn_network(corrupted(targeted), **kwargs)
    assert _in_weights(G, g).keys() == _in_weights(base, g).keys()
    for u, w in _in_weights(base, g).items():
        assert G.edges[u, g]["weight"] == pytest.approx(w, rel=1e-7, abs=1e-10)

    elsewhere = np.zeros(adata.n_obs, dtype=bool)
    elsewhere[rng.choice(np.flatnonzero(~targeted), size=targeted.sum(), replace=False)] = True
    H = learn_network(corrupted(elsewhere), **kwargs)
    assert _in_weights(H, g) != pytest.approx(_in_weights(base, g))


def test_learn_network_does_not_modify_its_input(sim200):
    adata = sim200.adata
    X_before = adata.X.copy()
    obs_before = adata.obs.copy()
    learn_network(adata, regulators=_tfs(sim200), verbose=False)
    np.testing.assert_array_equal(adata.X, X_before)
    pd.testing.assert_frame_equal(adata.obs, obs_before)


# --------------------------------------------------------------------------- orientation


def test_interventions_orient_a_chain_and_a_fork():
    """A -> B -> C and A -> D, knockdowns of A and B: the lasso on all genes
    selects each pair in both directions (Markov blankets); the knockdowns
    keep exactly the true directions."""
    adata = _sem_adata()
    G = learn_network(adata, alpha=0.05, verbose=False)
    assert set(G.edges()) == {("A", "B"), ("B", "C"), ("A", "D")}
    assert all(nx.get_edge_attributes(G, "oriented").values())
    assert G.graph["n_oriented"] == 3
    assert G.edges["A", "B"]["intervention_q"] < 1e-10
    assert np.isfinite(G.edges["B", "C"]["intervention_q"])
    assert G.edges["A", "B"]["weight"] > 0
    assert G.edges["A", "D"]["weight"] < 0

    unoriented = learn_network(adata, alpha=0.05, use_interventions=False, verbose=False)
    expected = {("A", "B"), ("B", "C"), ("A", "D")}
    assert set(unoriented.edges()) == expected | {(v, u) for u, v in expected}
    assert not any(nx.get_edge_attributes(unoriented, "oriented").values())
    assert all(np.isnan(q) for q in nx.get_edge_attributes(unoriented, "intervention_q").values())


def test_orientation_on_the_simulated_screen_never_reverses_a_true_edge(sim200):
    """All genes as candidates: of the 220 true TF -> gene pairs in the lasso's
    skeleton (seed 0), the knockdowns orient 215 correctly, none reversed, 5
    stay undetermined (kept in both directions, reported), none dropped
    (re-measured with the invariance check, which adds no edge here: only the
    20 TFs are perturbed, and their equations are invariant)."""
    with pytest.warns(CausalCellWarning, match=r"not oriented by the interventions"):
        oriented = learn_network(sim200.adata, verbose=False)
    plain = learn_network(sim200.adata, orient="skeleton", verbose=False)
    edges, plain_edges = set(oriented.edges()), set(plain.edges())
    truth = set(sim200.network.edges())
    skeleton = {frozenset(e) for e in plain_edges}
    pairs = [(u, v) for u, v in truth if frozenset((u, v)) in skeleton]
    assert len(pairs) >= 100
    right = sum((u, v) in edges and (v, u) not in edges for u, v in pairs)
    wrong = sum((v, u) in edges and (u, v) not in edges for u, v in pairs)
    assert wrong == 0
    assert right >= 0.95 * len(pairs)
    # Orientation chooses directions within the skeleton; the invariance check
    # adds nothing on this screen.
    assert {frozenset(e) for e in edges} <= skeleton
    assert oriented.graph["n_added"] == 0
    # Every pair it did not orient is reported, with the reason.
    table = oriented.graph["unoriented"]
    assert len(table) == oriented.graph["n_unoriented"] > 0
    assert set(table["reason"]) <= {"undetermined", "neither moves the other",
                                    "only direction not a candidate"}
    for a, b, kept in table[["gene_a", "gene_b", "kept"]].itertuples(index=False):
        assert oriented.has_edge(a, b) == (kept in ("a->b", "both"))
        assert oriented.has_edge(b, a) == (kept in ("b->a", "both"))
        for u, v in ((a, b), (b, a)):
            if oriented.has_edge(u, v):
                assert not oriented.edges[u, v]["oriented"]


def test_intervention_q_is_the_bh_correction_of_naive_welch_tests(sim200):
    """intervention_q of every edge equals a naive reference: per single-gene
    condition of the regulator, scipy's Welch test of the target against the
    controls; the smallest p times the number of conditions; Benjamini-Hochberg
    (statsmodels) over both directions of every selected pair, before orientation
    chooses one."""
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    adata = sim200.adata
    oriented = learn_network(adata, verbose=False)
    skeleton = learn_network(adata, use_interventions=False, verbose=False)  # same selection
    # Both directions of every selected pair are tested.
    tested = nx.DiGraph(list(skeleton.edges()) + [(v, u) for u, v in skeleton.edges()])
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    X = np.asarray(adata.X, dtype=np.float64)
    genes = adata.var_names.tolist()
    control = iv.is_control
    single = iv.conditions[(iv.conditions["n_targets"] == 1) & ~iv.conditions["is_control"]]
    groups_of = {}
    for code, targets in zip(single.index, single["targets"], strict=True):
        groups_of.setdefault(targets[0], []).append(iv.condition_of() == code)
    edges = list(tested.edges())
    pvalues = np.full(len(edges), np.nan)
    for e, (u, v) in enumerate(edges):
        if u not in groups_of:
            continue
        j = genes.index(v)
        ps = [stats.ttest_ind(X[rows, j], X[control, j], equal_var=False).pvalue
              for rows in groups_of[u]]
        pvalues[e] = min(1.0, min(ps) * len(ps))
    finite = np.isfinite(pvalues)
    assert finite.sum() > 20
    qvalues = np.full(len(edges), np.nan)
    qvalues[finite] = multipletests(pvalues[finite], method="fdr_bh")[1]
    assert (qvalues[finite] > pvalues[finite]).any()  # the correction matters here
    checked = 0
    for (u, v), q in zip(edges, qvalues, strict=True):
        if oriented.has_edge(u, v):
            got = oriented.edges[u, v]["intervention_q"]
            if np.isnan(q):
                assert np.isnan(got)
            else:
                assert got == pytest.approx(q, rel=1e-6)
                checked += 1
    assert checked > 20


def test_pseudobulk_input_has_no_replicates_to_orient_with(sim200):
    from causalcell.data import pseudobulk

    pb = pseudobulk(sim200.adata)
    with pytest.warns(CausalCellWarning, match="1 control sample"):
        G = learn_network(pb, regulators=_tfs(sim200), alpha=0.3, verbose=False)
    assert G.number_of_edges() > 0
    assert all(np.isnan(q) for q in nx.get_edge_attributes(G, "intervention_q").values())


def test_no_controls_warns_that_nothing_is_oriented():
    adata = _sem_adata()
    adata = adata[~adata.obs["is_control"].to_numpy()].copy()
    with pytest.warns(CausalCellWarning, match="0 control sample"):
        learn_network(adata, alpha=0.05, verbose=False)


# --------------------------------------------------------------------------- runtime options


def test_verbose_false_is_silent_and_true_shows_progress(capsys):
    sim = simulate(n_genes=20, n_tfs=4, random_state=1)
    learn_network(sim.adata, verbose=False)
    assert capsys.readouterr().err == ""
    learn_network(sim.adata)  # quiet by default
    assert capsys.readouterr().err == ""
    learn_network(sim.adata, verbose=True)
    assert "gene" in capsys.readouterr().err


def test_parallel_equals_sequential():
    sim = simulate(n_genes=40, n_tfs=6, random_state=8)
    a = learn_network(sim.adata, verbose=False, n_jobs=1)
    b = learn_network(sim.adata, verbose=False, n_jobs=2)
    assert set(a.edges()) == set(b.edges())
    for u, v, w in a.edges(data="weight"):
        assert b.edges[u, v]["weight"] == pytest.approx(w, rel=1e-12)


# --------------------------------------------------------------------------- learn_pc


def _skeleton(G: nx.DiGraph) -> set[frozenset]:
    return {frozenset(e) for e in G.edges()}


def test_pc_on_sachs_observational_cells(sachs):
    """Skeleton of PC (alpha 0.01, 853 cd3_cd28 cells) against the 20-edge
    consensus: measured precision 7/7 = 1.0, recall 7/20 = 0.35. Asserted:
    a sanity floor only."""
    truth = _skeleton(load_sachs2005_network())
    G = learn_pc(sachs, significance_level=0.01, verbose=False)
    found = _skeleton(G)
    precision = len(found & truth) / len(found)
    recall = len(found & truth) / len(truth)
    assert precision >= 0.6
    assert recall >= 0.2
    assert G.graph["n_samples"] == 853
    assert set(G.nodes) == set(sachs.var_names)
    # CPDAG convention: undirected edges in both directions, oriented=False.
    for u, v, d in G.edges(data=True):
        assert np.isfinite(d["weight"])
        if not d["oriented"]:
            assert G.has_edge(v, u)
            assert not G.edges[v, u]["oriented"]
        else:
            assert not G.has_edge(v, u)
    assert G.graph["n_directed"] + 2 * G.graph["n_undirected"] == G.number_of_edges()


def test_pc_weights_are_least_squares_on_the_parents(sachs):
    G = learn_pc(sachs, significance_level=0.01, verbose=False)
    rows = sachs.obs["is_control"].to_numpy()
    data = pd.DataFrame(np.asarray(sachs.X[rows], dtype=float), columns=sachs.var_names)
    for v in G.nodes:
        parents = list(G.predecessors(v))
        if not parents:
            continue
        design = np.column_stack([np.ones(len(data)), data[parents].to_numpy()])
        beta = np.linalg.lstsq(design, data[v].to_numpy(), rcond=None)[0][1:]
        for p, b in zip(parents, beta, strict=True):
            assert G.edges[p, v]["weight"] == pytest.approx(b, rel=1e-8)


def test_pc_recovers_a_linear_gaussian_dag():
    """A -> C <- B, C -> D: PC finds the skeleton and orients everything (a
    v-structure at C, then Meek's rule 1 for C -> D)."""
    rng = np.random.default_rng(0)
    n = 3000
    a, b = rng.normal(size=n), rng.normal(size=n)
    c = 0.8 * a - 0.7 * b + rng.normal(size=n)
    d = 0.9 * c + rng.normal(size=n)
    adata = AnnData(
        X=np.column_stack([a, b, c, d]),
        obs=pd.DataFrame(
            {"perturbation": "control", "is_control": True, "perturbation_type": "control"},
            index=[f"s{i}" for i in range(n)],
        ),
        var=pd.DataFrame(index=["A", "B", "C", "D"]),
    )
    G = learn_pc(adata, verbose=False)
    assert set(G.edges()) == {("A", "C"), ("B", "C"), ("C", "D")}
    assert all(nx.get_edge_attributes(G, "oriented").values())
    assert G.edges["A", "C"]["weight"] == pytest.approx(0.8, abs=0.05)
    assert G.edges["B", "C"]["weight"] == pytest.approx(-0.7, abs=0.05)


def test_pc_prior_forbids_edges_outside_the_prior(sachs):
    prior = load_sachs2005_network()
    before = nx.to_dict_of_dicts(prior)
    free = learn_pc(sachs, significance_level=0.05, samples="all", verbose=False)
    G = learn_pc(sachs, prior=prior, significance_level=0.05, samples="all", verbose=False)
    assert nx.to_dict_of_dicts(prior) == before  # the prior is not modified
    allowed = _skeleton(prior)
    assert _skeleton(G) <= allowed
    as_pairs = learn_pc(sachs, prior=list(prior.edges()), significance_level=0.05, samples="all")
    assert set(as_pairs.edges()) == set(G.edges())
    assert not _skeleton(free) <= allowed  # without the prior, PC finds other edges
    # Undirected edges left are those the prior does not orient one way.
    one_way = {(u, v) for u, v in prior.edges() if not prior.has_edge(v, u)}
    for u, v, d in G.edges(data=True):
        if not d["oriented"]:
            assert (u, v) not in one_way
            assert (v, u) not in one_way
    # A one-edge prior allows at most that adjacency.
    tiny = nx.DiGraph([("raf", "mek")])
    H = learn_pc(sachs, prior=tiny, verbose=False)
    assert set(H.nodes) == {"raf", "mek"}
    assert set(H.edges()) == {("raf", "mek")}  # oriented by the prior
    assert H.edges["raf", "mek"]["oriented"]


def test_pc_prior_is_refused_when_pgmpy_lacks_the_step_it_completes(sachs, monkeypatch):
    """The prior's completion overrides a private pgmpy step: if a pgmpy release
    renames it, a prior is refused with the fix instead of silently running
    without the completion (pgmpy issue #2138); a search without prior uses
    pgmpy's PC unchanged."""
    from pgmpy.causal_discovery import PC

    from causalcell.graph._pc import _prior_pc_class

    monkeypatch.setattr(PC, "_build_skeleton", None, raising=False)  # as if renamed
    with pytest.raises(ParameterError, match=r"pgmpy .*PC._build_skeleton.*without prior="):
        learn_pc(sachs, prior=load_sachs2005_network(), verbose=False)
    assert _prior_pc_class(restricted=False) is PC


def test_pc_required_edge_is_kept(sachs):
    free = learn_pc(sachs, significance_level=0.01, verbose=False)
    assert not free.has_edge("raf", "jnk")
    assert not free.has_edge("jnk", "raf")
    G = learn_pc(sachs, significance_level=0.01, required=[("raf", "jnk")], verbose=False)
    # Adjacent; the data may orient it against the request (here a collider
    # jnk -> raf <- mek), which is counted as a conflict.
    assert G.has_edge("raf", "jnk") or G.has_edge("jnk", "raf")
    if not G.has_edge("raf", "jnk"):
        assert G.graph["n_prior_conflicts"] >= 1


def test_pc_genes_subset_and_constant_gene_warning(sachs):
    G = learn_pc(sachs, genes=["raf", "mek", "erk"], verbose=False)
    assert set(G.nodes) == {"raf", "mek", "erk"}
    adata = sachs[:, ["raf", "mek", "erk"]].copy()
    adata.X[:, 2] = 1.0
    with pytest.warns(UserWarning, match="constant"):
        H = learn_pc(adata, verbose=False)
    assert H.degree("erk") == 0


def test_pc_all_samples(sachs):
    G = learn_pc(sachs, samples="all", verbose=False)
    assert G.graph["n_samples"] == sachs.n_obs


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(method="ridge"), "method"),
        (dict(alpha=0), "alpha"),
        (dict(alpha=1.5), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(n_bootstrap=3), "n_bootstrap"),
        (dict(n_bootstrap=0), "n_bootstrap"),
        (dict(threshold=0), "threshold"),
        (dict(max_regulators=0), "max_regulators"),
        (dict(n_jobs=0), "n_jobs"),
        (dict(orient_fdr=1), "orient_fdr"),
        (dict(random_state=-1), "random_state"),
        (dict(regulators="TF01"), "single string"),
        (dict(regulators=["STAT1", "IRF1"]), "None of the 2 regulators"),
    ],
)
def test_learn_network_parameter_errors(kwargs, match):
    sim = simulate(n_genes=10, n_tfs=2, random_state=0, n_combinations=0)
    with pytest.raises(ParameterError, match=match):
        learn_network(sim.adata, verbose=False, **kwargs)


def test_learn_network_data_errors():
    with pytest.raises(DataContractError, match="AnnData"):
        learn_network(np.zeros((3, 3)))
    sim = simulate(n_genes=10, n_tfs=2, random_state=0, n_combinations=0)
    with pytest.raises(DataContractError, match="Layer 'nope'"):
        learn_network(sim.adata, layer="nope", verbose=False)
    bad = sim.adata.copy()
    del bad.obs["is_control"]
    with pytest.raises(DataContractError, match="is_control"):
        learn_network(bad, verbose=False)


def test_learn_pc_alpha_is_the_old_name_of_significance_level(sachs):
    genes = ["raf", "mek", "erk", "plc", "pip2"]
    G = learn_pc(sachs, genes=genes, significance_level=0.05)
    with pytest.warns(FutureWarning, match="alpha= is renamed significance_level="):
        H = learn_pc(sachs, genes=genes, alpha=0.05)
    assert set(G.edges) == set(H.edges)
    assert H.graph["significance_level"] == 0.05


def test_learn_pc_errors(sachs):
    with pytest.raises(ParameterError, match="max_vars"):
        learn_pc(sachs, max_vars=5, verbose=False)
    with pytest.raises(ParameterError, match="not in var_names"):
        learn_pc(sachs, genes=["raf", "STAT1"], verbose=False)
    with pytest.raises(ParameterError, match="ci_test"):
        learn_pc(sachs, ci_test="no_such_test", verbose=False)
    with pytest.raises(ParameterError, match="samples"):
        learn_pc(sachs, samples="observational", verbose=False)
    with pytest.raises(NetworkError, match="shares no gene"):
        learn_pc(sachs, prior=nx.DiGraph([("STAT1", "IRF1")]), verbose=False)
    with pytest.raises(NetworkError, match="DiGraph"):
        learn_pc(sachs, prior=nx.Graph([("raf", "mek")]), verbose=False)
    with pytest.warns(NetworkWarning, match="no edge among"):
        G = learn_pc(sachs, prior=nx.DiGraph([("raf", "STAT1"), ("mek", "IRF1")]), verbose=False)
    assert G.number_of_edges() == 0
    no_controls = sachs[~sachs.obs["is_control"].to_numpy()].copy()
    with pytest.raises(DataContractError, match="samples='all'"):
        learn_pc(no_controls, verbose=False)
    with pytest.raises(ParameterError, match="required"):
        learn_pc(sachs, genes=["raf", "mek"], required=[("raf", "erk")], verbose=False)
