"""E-distance: pertpy's and scPerturb's definitions, exact pair exclusion, retrieval."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

import causalcell as cc
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate import CellGroups, group_edistances, pairwise_edistances

EXCLUSIONS = ("targeted", "query", "none", "all")


def naive_edistance(X: np.ndarray, Y: np.ndarray, cell_distance: str) -> float:
    """The definitions, pair of cells by pair of cells (scipy's cdist, no Gram trick).

    euclidean: pertpy's Edistance (mean over all N^2 pairs within a group, self-pairs
    included); sqeuclidean: scPerturb's edist (mean over the N (N - 1) distinct pairs).
    """
    if cell_distance == "euclidean":
        return 2 * cdist(X, Y).mean() - cdist(X, X).mean() - cdist(Y, Y).mean()

    def within(Z):
        n = len(Z)
        return cdist(Z, Z, "sqeuclidean").sum() / (n * (n - 1)) if n > 1 else 0.0

    return 2 * cdist(X, Y, "sqeuclidean").mean() - within(X) - within(Y)


def _groups(values, codes, n, sparse=False):
    return CellGroups.from_codes(sp.csr_array(values) if sparse else values, codes, n)


# ------------------------------------------------------------------ reference values
def test_equals_pertpy():
    """Values of pertpy 1.0.3 ``pt.tl.Distance(metric="edistance", layer_key="X")`` on this
    seeded data (``d(X, Y)`` and ``d.pairwise(adata, groupby="g")``), computed once with
    pertpy installed (it is not a dependency: its stack is large)."""
    rng = np.random.default_rng(20260101)
    X = rng.normal(size=(7, 6)) + 0.5
    Y = rng.normal(size=(9, 6)) * 1.3
    ours = group_edistances(_groups(X, np.zeros(7, int), 1), _groups(Y, np.zeros(9, int), 1))
    assert ours[0] == pytest.approx(1.1028503183731009, rel=1e-12)
    sizes = [4, 5, 6]
    codes = np.repeat([0, 1, 2], sizes)
    Z = rng.normal(size=(15, 6)) + codes[:, None] * 0.4
    pertpy_pairwise = np.array([[0.0, 1.9144604469718516, 2.288472055912912],
                                [1.9144604469718516, 0.0, 0.7301579859378435],
                                [2.288472055912912, 0.7301579859378435, 0.0]])
    groups = _groups(Z, codes, 3)
    for i in range(3):
        for j in range(3):
            one = _groups(Z[codes == i], np.zeros(sizes[i], int), 1)
            other = _groups(Z[codes == j], np.zeros(sizes[j], int), 1)
            assert group_edistances(one, other)[0] == pytest.approx(
                pertpy_pairwise[i, j], rel=1e-12, abs=1e-12)
    # pairwise_edistances without exclusion gives the same matrix in one call.
    candidate, true, _ = pairwise_edistances(groups, groups, exclude="none")
    np.testing.assert_allclose(candidate, pertpy_pairwise, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.diag(true), 0.0, atol=1e-12)


def test_sqeuclidean_is_the_mean_difference_minus_noise():
    """Known answer of scPerturb's flavour: 2 |mean X - mean Y|^2 - 2 tr S_X / N -
    2 tr S_Y / M (S unbiased covariances)."""
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(30, 8)), rng.normal(size=(20, 8)) + 0.7
    expected = (2 * np.sum((X.mean(0) - Y.mean(0)) ** 2)
                - 2 * X.var(0, ddof=1).sum() / 30 - 2 * Y.var(0, ddof=1).sum() / 20)
    ours = group_edistances(_groups(X, np.zeros(30, int), 1), _groups(Y, np.zeros(20, int), 1),
                            cell_distance="sqeuclidean")
    assert ours[0] == pytest.approx(expected, rel=1e-12)
    assert ours[0] == pytest.approx(naive_edistance(X, Y, "sqeuclidean"), rel=1e-12)


# ------------------------------------------------------------ pair exclusion, exact
@st.composite
def grouped_cells(draw):
    n = draw(st.integers(2, 5))
    g = draw(st.integers(3, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    sizes_q = rng.integers(1, 5, n)
    sizes_c = rng.integers(1, 5, n)
    q_codes = rng.permutation(np.repeat(np.arange(n), sizes_q))  # cells in any order
    c_codes = np.repeat(np.arange(n), sizes_c)
    shift = rng.normal(size=(n, g))
    X = rng.normal(size=(len(q_codes), g)) + shift[q_codes]
    Y = rng.normal(size=(len(c_codes), g)) + shift[c_codes]
    targets = np.zeros((n, g), dtype=bool)
    for i in range(n):  # 0-2 targets, overlaps allowed
        targets[i, rng.choice(g, size=rng.integers(0, 3), replace=False)] = True
    return X, q_codes, Y, c_codes, targets


@settings(max_examples=25, deadline=None)
@given(data=grouped_cells(), cell_distance=st.sampled_from(["euclidean", "sqeuclidean"]),
       sparse=st.booleans())
def test_pair_exclusion_equals_naive_double_loop(data, cell_distance, sparse):
    """Every comparison (i, j), with every exclusion rule, against the definition
    computed on the comparison's own genes."""
    X, q_codes, Y, c_codes, targets = data
    n, g = targets.shape
    Q, C = _groups(X, q_codes, n, sparse), _groups(Y, c_codes, n, sparse)
    for exclusion in EXCLUSIONS:
        candidate, true, _ = pairwise_edistances(Q, C, sp.csr_array(targets), exclusion,
                                                 cell_distance=cell_distance)
        for i in range(n):
            for j in range(n):
                dropped = {"targeted": targets[i] | targets[j], "query": targets[i],
                           "none": np.zeros(g, bool), "all": targets.any(axis=0)}[exclusion]
                keep = ~dropped
                expected_c = naive_edistance(X[q_codes == i][:, keep], Y[c_codes == j][:, keep],
                                             cell_distance)
                expected_t = naive_edistance(X[q_codes == i][:, keep], Y[c_codes == i][:, keep],
                                             cell_distance)
                assert candidate[i, j] == pytest.approx(expected_c, rel=1e-9, abs=1e-9)
                assert true[i, j] == pytest.approx(expected_t, rel=1e-9, abs=1e-9)
    matched = group_edistances(Q, C, sp.csr_array(targets), cell_distance=cell_distance)
    for i in range(n):
        keep = ~targets[i]
        assert matched[i] == pytest.approx(
            naive_edistance(X[q_codes == i][:, keep], Y[c_codes == i][:, keep], cell_distance),
            rel=1e-9, abs=1e-9)


def test_duplicated_cells_are_exact():
    """Cells that equal other cells except on excluded genes (a prediction copying the
    observed cells, a resampled control): their distance is 0, not the 1e-8 left by a
    Gram matrix, so the E-distances still equal the definition."""
    rng = np.random.default_rng(3)
    n, g = 4, 10
    codes = np.repeat(np.arange(n), 3)
    Y = rng.normal(size=(12, g)) * 2 + 5  # an offset shared by all cells
    targets = np.zeros((n, g), dtype=bool)
    targets[np.arange(n), np.arange(n)] = True
    X = Y.copy()
    X[np.arange(12), codes] += 4.0  # wrong on the targeted gene only
    X[1] = X[0]  # two identical predicted cells
    Q, C = _groups(X, codes, n), _groups(Y, codes, n)
    for exclusion in EXCLUSIONS:
        candidate, true, _ = pairwise_edistances(Q, C, sp.csr_array(targets), exclusion)
        for i in range(n):
            for j in range(n):
                dropped = {"targeted": targets[i] | targets[j], "query": targets[i],
                           "none": np.zeros(g, bool), "all": targets.any(axis=0)}[exclusion]
                keep = ~dropped
                expected_c = naive_edistance(X[codes == i][:, keep], Y[codes == j][:, keep],
                                             "euclidean")
                expected_t = naive_edistance(X[codes == i][:, keep], Y[codes == i][:, keep],
                                             "euclidean")
                assert candidate[i, j] == pytest.approx(expected_c, rel=1e-9, abs=1e-12)
                assert true[i, j] == pytest.approx(expected_t, rel=1e-9, abs=1e-12)
    same = group_edistances(_groups(Y, codes, n), _groups(Y, codes, n))
    np.testing.assert_allclose(same, 0.0, atol=1e-12)


# ------------------------------------------------------------------ AnnData level
@pytest.fixture(scope="module")
def simulated():
    sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    truth = sim.truth[~sim.truth.obs["is_control"].to_numpy()]
    return sim, truth


def test_edistance_table_excludes_the_targeted_genes(simulated):
    """Observed cells as their own prediction, except on the targeted gene: the
    E-distance is 0 once the targeted gene is excluded, and positive with it."""
    sim, _ = simulated
    observed = sim.adata
    predicted = observed[~observed.obs["is_control"].to_numpy()].copy()
    iv = cc.Interventions.from_adata(predicted)
    X = np.asarray(predicted.X, dtype=np.float64).copy()
    rows, cols = iv.mask.nonzero()
    X[rows, cols] += 3.0  # wrong on the targeted gene only
    predicted.X = X
    table = cc.evaluate.edistance(predicted, observed)
    assert set(table["exclude"]) == {"targeted", "none"}
    excluded = table[table["exclude"] == "targeted"]
    np.testing.assert_allclose(excluded["edistance"], 0.0, atol=1e-9)
    assert (table[table["exclude"] == "none"]["edistance"] > 1).all()
    n_targets = excluded["perturbation"].astype(str).str.count(",") + 1
    assert (excluded["n_genes_scored"] == observed.n_vars - n_targets).all()
    assert (excluded["n_cells_predicted"] == excluded["n_cells_observed"]).all()


def test_edistance_of_sampled_cells_and_subsampling(simulated):
    sim, truth = simulated
    cells = cc.data.sample_cells(truth, sim.adata, random_state=0)
    table = cc.evaluate.edistance(cells, sim.adata, exclude="targeted", max_cells=20,
                                  random_state=1)
    assert (table["edistance"] >= -1e-12).all()  # an energy distance is never negative
    assert (table["n_cells_predicted"] == 20).all()
    assert (table["n_cells_observed"] == 20).all()
    again = cc.evaluate.edistance(cells, sim.adata, exclude="targeted", max_cells=20,
                                  random_state=1)
    pd.testing.assert_frame_equal(table, again)
    sq = cc.evaluate.edistance(cells, sim.adata, exclude="none", cell_distance="sqeuclidean")
    assert (sq["cell_distance"] == "sqeuclidean").all()


def test_retrieval_on_edistance(simulated):
    """A predictor that knows nothing (the same cells for every perturbation) is at
    chance, exactly, under the fair pair rule, and looks far better under the query
    rule, as with profile distances."""
    sim, truth = simulated
    rng = np.random.default_rng(0)
    same = rng.normal(size=(6, sim.adata.n_vars)) + np.asarray(sim.adata.X).mean(axis=0)
    obs = pd.concat([truth.obs[["perturbation", "is_control", "perturbation_type"]]] * 6)
    obs = obs.iloc[np.argsort(np.tile(np.arange(truth.n_obs), 6), kind="stable")]
    obs.index = [f"c{k}" for k in range(len(obs))]
    nothing = ad.AnnData(np.tile(same, (truth.n_obs, 1)), obs=obs,
                         var=pd.DataFrame(index=sim.adata.var_names))
    table = cc.evaluate.retrieval(nothing, sim.adata, distance="edistance",
                                  exclude=["targeted", "query"], aggregate_predicted=True)
    means = table.groupby("exclude")["rank"].mean()
    assert means["targeted"] == pytest.approx(0.5, abs=1e-12)
    assert means["query"] < 0.45  # 0.35 on this simulation: it looks better than chance
    good = cc.data.sample_cells(truth, sim.adata, random_state=0)
    ranks = cc.evaluate.retrieval(good, sim.adata, distance=["edistance",
                                                           "edistance_sqeuclidean"],
                                  orientation=["prediction", "observed"],
                                  aggregate_predicted=True)
    assert ranks.groupby(["distance", "orientation"])["rank"].mean().max() < 0.1


def test_errors(simulated):
    sim, truth = simulated
    with pytest.raises(ParameterError, match="cell_distance"):
        cc.evaluate.edistance(truth, sim.adata, cell_distance="cosine")
    with pytest.raises(ParameterError, match="exclude"):
        cc.evaluate.edistance(truth, sim.adata, exclude="all")
    with pytest.raises(ParameterError, match="max_cells"):
        cc.evaluate.edistance(truth, sim.adata, max_cells=0)
    groups = _groups(np.ones((3, 2)), np.array([0, 1, 1]), 2)
    with pytest.raises(DataContractError, match="same perturbation"):
        pairwise_edistances(groups, _groups(np.ones((3, 2)), np.zeros(3, int), 1))
    with pytest.raises(ParameterError, match="exclude"):
        pairwise_edistances(groups, groups, exclude="both")
    with pytest.raises(DataContractError, match="1 group"):
        CellGroups.from_codes(np.ones((2, 2)), np.array([0, 0]), 2)
    aligned = cc.evaluate.align(truth, sim.adata)
    with pytest.raises(ParameterError, match="pass cells="):
        cc.evaluate._retrieval_table.retrieval_ranks(aligned, distance="edistance")
