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


# Seeds where the lasso alone misses true edges from perturbed regulators (a child of
# the target stands in for them, or two paths from the regulator cancel); the
# invariance check of learn_network adds them.
_MISSED_BY_THE_LASSO = {14: [("G3", "G12"), ("G8", "G12")], 17: [("G3", "G13")],
                        18: [("G5", "G9")]}


@pytest.mark.parametrize("seed", [0, 1, 2, 14, 17, 18])
def test_predictions_from_a_learned_network_converge_to_the_exact_answer(seed):
    """Measured with seeds 0-19 (this setting, regressor='iv', default
    iv_fallback='ridge'): median r >= 0.998 at 2,000 cells in all; the worst
    error at 2,000 cells per perturbation is 0.04-0.15 sd (<= 0.10 in 19 of 20)
    and less than half the error at 100 cells in every seed. Before the invariance
    check, seeds 14, 17 and 18 had 0.77-1.9 sd (true edges missed, see
    :data:`_MISSED_BY_THE_LASSO`). The tests run seeds 0-2 and those three."""
    _r_small, worst_small = _learned_network_errors(seed, 100, "iv")
    r_large, worst_large = _learned_network_errors(seed, 2000, "iv")
    assert r_large >= 0.99
    assert worst_large <= 0.3
    assert worst_large < 0.5 * worst_small


@pytest.mark.parametrize("seed", sorted(_MISSED_BY_THE_LASSO))
def test_the_invariance_check_adds_the_regulators_the_lasso_misses(seed):
    """Each missed edge points into a perturbed gene whose residual, given the
    regulators kept by the lasso and the orientation, shifts under the
    perturbation of the missing regulator: the check adds it (listed in
    G.graph['added']), and its least-squares weight is close to the truth."""
    p = 15
    rng = np.random.default_rng(seed)
    W = random_dag(p, rng)
    perturbed = sorted(rng.choice(p, 12, replace=False).tolist())
    adata = sample(W, np.full(p, 5.0), [()] + [(j,) for j in perturbed], 2000, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalCellWarning)
        skeleton = learn_network(adata, alpha=0.05, max_regulators=None, orient="skeleton",
                                 verbose=False)
        G = learn_network(adata, alpha=0.05, max_regulators=None, verbose=False)
    added = set(zip(G.graph["added"]["regulator"], G.graph["added"]["target"], strict=True))
    assert G.graph["n_added"] == len(G.graph["added"])
    for u, v in _MISSED_BY_THE_LASSO[seed]:
        assert not skeleton.has_edge(u, v) or seed == 17  # 17: selected, then refuted
        assert (u, v) in added
        assert G.edges[u, v]["oriented"]
        assert G.edges[u, v]["weight"] == pytest.approx(W[int(u[1:]), int(v[1:])], abs=0.1)
    # Only perturbed genes are checked: every added edge points into one.
    assert set(G.graph["added"]["target"]) <= {f"G{j}" for j in perturbed}


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


def test_residual_shifts_equal_a_naive_cell_by_cell_computation():
    """The invariance statistic of gene g in condition k: mean over k's cells of
    g's residual x_g - sum_r w_rg z_r (z: the design, knockouts at T = 0 even where
    the measured value is not 0) minus its mean over the controls, over
    sqrt(sigma_g^2 (1/n_k + 1/n_0)); computed here cell by cell."""
    import scipy.sparse as sp

    from causalcell.graph._lasso import (
        _design,
        _shift_z,
        _single_gene_contrasts,
        _single_gene_sums,
    )

    adata, _ = _collider(n=300, seed=4)
    labels = adata.obs["perturbation"].to_numpy()
    X = np.asarray(adata.X).copy()
    X[labels == "G0", 0] = 0.4  # a residual transcript: the knockout still enters at T = 0
    adata.X = X
    design = _design(adata, None)
    sums, group_gene = _single_gene_sums(design)
    change, inverse_counts = _single_gene_contrasts(design, np.arange(4), sums, group_gene)
    W = np.zeros((4, 4))
    W[0, 2], W[1, 2], W[2, 3], W[0, 3] = 0.7, -0.5, 0.6, 0.2
    residual_var = np.array([1.0, 2.0, 0.5, 1.5])
    groups = np.flatnonzero(group_gene >= 0)
    z = _shift_z(change, inverse_counts, group_gene[groups], sp.csr_array(W), residual_var)
    Z = X.copy()
    for t in range(3):
        Z[labels == f"G{t}", t] = 0.0
    residual = Z - Z @ W
    control = labels == "control"
    for row, k in enumerate(groups):
        cells = labels == f"G{group_gene[k]}"
        se = np.sqrt(residual_var * (1 / cells.sum() + 1 / control.sum()))
        naive = (residual[cells].mean(0) - residual[control].mean(0)) / se
        naive[group_gene[k]] = np.nan
        np.testing.assert_allclose(z[row], naive, rtol=1e-10, atol=1e-12)


def test_an_edge_the_invariance_check_adds_has_no_selection_frequency():
    """Seed 17: the lasso selected G3 -> G13 in every half-sample fit, the orientation
    refuted it, and the invariance check added it back. Its ``stability`` is NaN
    (as documented): the edge is kept by the check, not by its selection frequency."""
    p = 15
    rng = np.random.default_rng(17)
    W = random_dag(p, rng)
    perturbed = sorted(rng.choice(p, 12, replace=False).tolist())
    adata = sample(W, np.full(p, 5.0), [()] + [(j,) for j in perturbed], 2000, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalCellWarning)
        G = learn_network(adata, method="stability", n_bootstrap=10, alpha=0.05,
                          max_regulators=None, verbose=False)
    added = set(zip(G.graph["added"]["regulator"], G.graph["added"]["target"], strict=True))
    assert ("G3", "G13") in added
    for u, v, stability in G.edges(data="stability"):
        assert np.isnan(stability) == ((u, v) in added), (u, v, stability)
