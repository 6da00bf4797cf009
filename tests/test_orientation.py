"""Learned networks you can trust: orientation by interventions, and predictions from a
learned network against the exact interventional means of a linear model."""

from __future__ import annotations

import warnings

import networkx as nx
import numpy as np
import pytest
from _linear_scm import exact_mean, exact_sd, random_dag, request, sample

from causalcell.errors import CausalCellWarning, ParameterError, UnorientedEdgesWarning
from causalcell.graph import learn_network
from causalcell.models import ConditionalGRNRegressor


def _collider(n: int = 3000, seed: int = 0):
    """A -> C <- B (A, B independent), C -> D; A, B and C knocked out."""
    rng = np.random.default_rng(seed)
    W = np.zeros((4, 4))
    W[0, 2], W[1, 2], W[2, 3] = 0.8, -0.7, 0.6
    return sample(W, np.full(4, 5.0), [(), (0,), (1,), (2,)], n, rng), W


def test_spouses_are_dropped_and_edges_oriented():
    """The lasso of A on every gene selects B (explaining away through C); both
    are perturbed and neither moves the other, and the regression weight's
    predicted effect is absent: the pair is dropped and reported. The true
    edges are oriented, D -> C is never kept."""
    adata, _ = _collider()
    adata.var_names = ["A", "B", "C", "D"]
    adata.obs["perturbation"] = adata.obs["perturbation"].map(
        {"control": "control", "G0": "A", "G1": "B", "G2": "C"})
    skeleton = learn_network(adata, alpha=0.05, orient="skeleton", verbose=False)
    assert skeleton.has_edge("B", "A")  # a spouse, selected by the lasso
    G = learn_network(adata, alpha=0.05, verbose=False)
    assert set(G.edges()) == {("A", "C"), ("B", "C"), ("C", "D")}
    assert all(nx.get_edge_attributes(G, "oriented").values())
    table = G.graph["unoriented"]
    row = table[(table["gene_a"] == "A") & (table["gene_b"] == "B")]
    assert row["kept"].tolist() == ["none"]
    assert row["reason"].tolist() == ["neither moves the other"]
    # Weights are least squares on the oriented parents: close to the truth.
    assert G.edges["A", "C"]["weight"] == pytest.approx(0.8, abs=0.05)
    assert G.edges["C", "D"]["weight"] == pytest.approx(0.6, abs=0.05)


def test_unperturbed_pairs_are_reported_not_silently_doubled():
    """With only control cells there is no interventional evidence: every pair is
    kept as the lasso selected it (here both directions), oriented=False, listed
    in G.graph['unoriented'], and a warning says how many."""
    adata, _ = _collider()
    controls = adata[adata.obs["is_control"].to_numpy()].copy()
    with pytest.warns(UnorientedEdgesWarning, match=r"(\d+) of (\d+) selected gene pairs were not "
                                               r"oriented"):
        G = learn_network(controls, alpha=0.05, verbose=False)
    table = G.graph["unoriented"]
    assert len(table) == G.graph["n_unoriented"] > 0
    assert set(table["reason"]) == {"undetermined"}
    for a, b in table[["gene_a", "gene_b"]].itertuples(index=False):
        for u, v in ((a, b), (b, a)):
            if G.has_edge(u, v):
                assert not G.edges[u, v]["oriented"]


def test_orient_is_checked():
    adata, _ = _collider(n=50)
    with pytest.raises(ParameterError, match="orient='both' is invalid"):
        learn_network(adata, orient="both")


def _learned_network_errors(seed: int, n_cells: int, regressor: str):
    """Median Pearson r (changes of the non-targeted genes) and worst absolute error
    (in control sd) of predictions from a network learned on a random acyclic
    model, 12 of 15 genes knocked out, against the exact means."""
    p = 15
    rng = np.random.default_rng(seed)
    W = random_dag(p, rng)
    mu = np.full(p, 5.0)
    perturbed = sorted(rng.choice(p, 12, replace=False).tolist())
    adata = sample(W, mu, [()] + [(j,) for j in perturbed], n_cells, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalCellWarning)  # unoriented / unidentified: reported
        G = learn_network(adata, alpha=0.05, max_regulators=None, verbose=False)
        model = ConditionalGRNRegressor(regressor).fit(adata, G)
    asked = [(j,) for j in perturbed] + [
        (perturbed[i], perturbed[j]) for i, j in [(0, 5), (2, 7), (3, 9), (1, 11)]]
    truth = np.array([exact_mean(W, mu, c) for c in asked])
    pred = model.predict(request(asked, p)).X  # no steady-state failure: this must not raise
    base, sd = exact_mean(W, mu, []), exact_sd(W, 1.0)
    rs, worst = [], 0.0
    for i, c in enumerate(asked):
        keep = np.setdiff1d(np.arange(p), c)
        change = truth[i, keep] - base[keep]
        if np.ptp(change) > 1e-9:
            rs.append(np.corrcoef(change, pred[i, keep] - base[keep])[0, 1])
        worst = max(worst, float(np.max(np.abs(pred[i, keep] - truth[i, keep]) / sd[keep])))
    return float(np.median(rs)), worst


_MISSED_EDGES = {14: "G3 -> G12 and G8 -> G12", 17: "G3 -> G13", 18: "G5 -> G9"}


@pytest.mark.parametrize("seed", [0, 1, 2] + [
    pytest.param(seed, marks=pytest.mark.xfail(
        strict=True, reason=f"learn_network misses the true edge(s) {edges}"))
    for seed, edges in _MISSED_EDGES.items()])
def test_predictions_from_a_learned_network_converge_to_the_exact_answer(seed):
    """Measured with seeds 0-19 (this setting, regressor='iv', default
    iv_fallback='ridge'): median r >= 0.989 at 2,000 cells in all; the worst
    error at 2,000 cells per perturbation is <= 0.15 sd in 17 of 20 models and
    shrinks from 100 cells in those. In 3 it is 0.77-1.9 sd: seeds 14 (0.96
    sd), 17 (0.77) and 18 (1.90), where learn_network misses true edges from
    perturbed regulators (:data:`_MISSED_EDGES`); with those edges added to
    the learned network the worst error is 0.06-0.08 sd. The unidentified
    edges (never-perturbed roots) are not the cause: with iv_fallback='drop'
    the figures at 2,000 cells are the same. The tests run the first three
    seeds, and the three failing ones as strict xfails (they pass once
    learn_network finds those edges)."""
    _r_small, worst_small = _learned_network_errors(seed, 100, "iv")
    r_large, worst_large = _learned_network_errors(seed, 2000, "iv")
    assert r_large >= 0.99
    assert worst_large <= 0.3
    assert worst_large < 0.5 * worst_small


def test_refutation_pvalues_equal_a_naive_z_test():
    """p-value that perturbing s moves t by w x (s's own change): in s's single-gene
    condition, ((mean_t - control_t) - w (mean_s - control_s)) / Welch standard error
    of t's change, two-sided normal; computed here cell by cell."""
    from scipy.stats import norm

    from causalcell.graph._lasso import _design, _refutation_pvalues, _single_gene_sums

    adata, _ = _collider(n=400, seed=3)
    sums, group_gene = _single_gene_sums(_design(adata, None))
    source, target = np.array([0, 1, 2, 0]), np.array([2, 2, 3, 1])
    weight = np.array([0.8, 0.0, 0.3, -0.5])
    got = _refutation_pvalues(source, target, weight, sums, group_gene)
    X = np.asarray(adata.X)
    labels = adata.obs["perturbation"].to_numpy()
    control = X[labels == "control"]
    for s, t, w, p in zip(source, target, weight, got, strict=True):
        cells = X[labels == f"G{s}"]
        change_t = cells[:, t].mean() - control[:, t].mean()
        change_s = cells[:, s].mean() - control[:, s].mean()
        se = np.sqrt(cells[:, t].var(ddof=1) / len(cells)
                     + control[:, t].var(ddof=1) / len(control))
        assert p == pytest.approx(2 * norm.sf(abs((change_t - w * change_s) / se)), rel=1e-9)
    # The true edge with its true weight is not refuted; a wrong weight is.
    assert got[0] > 0.01
    assert got[1] < 1e-10
