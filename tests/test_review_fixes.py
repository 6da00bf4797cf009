"""Bugs found by reviewing the merged change (each test failed before its fix), and one
guard for a suspected bug that turned out unreachable."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest

import causalcell as cc
from causalcell import plot
from causalcell.benchmark import predict_dose_response
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate import dose_bins, evaluate, retrieval, score_dose_response, summarize
from causalcell.models import ConditionalGRNRegressor


@pytest.fixture(scope="module")
def sim():
    return cc.datasets.simulate(n_genes=30, n_tfs=5, efficiency_sd=0.2, random_state=0)


def test_deprecated_exclude_value_warns_at_the_callers_line(sim):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        retrieval(sim.truth, sim.adata, exclude=("pair", "none"))
    future = [w for w in caught if issubclass(w.category, FutureWarning)]
    assert future
    assert all(w.filename == __file__ for w in future), [w.filename for w in future]


def test_plots_read_tables_of_the_previous_release(sim):
    ranks = retrieval(sim.truth, sim.adata, exclude=("targeted", "none"))
    old_ranks = ranks.rename(columns={"exclude": "exclusion"}).replace(
        {"exclusion": {"targeted": "pair"}})
    summary = summarize(evaluate(sim.truth, sim.adata))
    old_summary = summary.rename(columns={"exclude": "conditioning"}).replace(
        {"conditioning": {"targeted": "targeted excluded"}})
    with pytest.warns(FutureWarning):
        ax = plot.retrieval_ranks(old_ranks)
    plt.close(ax.figure)
    with pytest.warns(FutureWarning):
        fig = plot.evaluation_summary(old_summary, old_ranks)
    assert fig is not None


@pytest.mark.parametrize("levels", ["abc", [["x", 1.0]], object()])
def test_dose_grid_of_non_numbers_is_our_error(sim, levels):
    model = ConditionalGRNRegressor().fit(sim.adata, sim.network)
    with pytest.raises(ParameterError, match="levels"):
        predict_dose_response(model, sim.adata, "TF01", levels=levels)
    with pytest.raises(ParameterError, match="levels"):
        sim.expected_at("TF01", levels)


def test_dose_functions_refuse_a_missing_anndata(sim):
    model = ConditionalGRNRegressor().fit(sim.adata, sim.network)
    with pytest.raises(DataContractError, match="AnnData"):
        predict_dose_response(model, None, "TF01", n_levels=3)
    bins = dose_bins(sim.adata, n_bins=2, min_cells=20)
    with pytest.raises(DataContractError, match="AnnData"):
        score_dose_response(sim.truth, None, bins)
    assert np.isfinite(bins.table["level"]).all()


def test_a_refuted_direction_is_not_kept_by_the_regulator_prior(monkeypatch):
    """Only a is a candidate regulator, a -> b is selected, no direct test decides
    the pair, and a -> b is refuted: the prior must not keep it. (A review feared it
    would when both directions are refuted; b -> a cannot be selected when b is not a
    candidate regulator, so only its own refutation counts, and this guards that.)"""
    import pandas as pd

    from causalcell.graph import _lasso

    monkeypatch.setattr(_lasso, "_single_gene_sums", lambda design: ())
    monkeypatch.setattr(_lasso, "_intervention_qvalues",
                        lambda design, src, dst, sums: np.full(len(src), np.nan))
    monkeypatch.setattr(_lasso, "_refutation_pvalues",
                        lambda src, dst, w, *sums: np.full(len(src), 1e-12))
    genes = pd.Index(["A", "B"])
    edges = _lasso._Edges(source=np.array([0]), target=np.array([1]), weight=np.array([0.8]))
    result = _lasso._orient_pairs(None, edges, np.array([0]), 0.05, genes)
    assert len(result.source) == 0  # nothing kept: the only selected direction is refuted
    assert result.counts["n_oriented_by_regulators"] == 0
    assert result.table["kept"].tolist() == ["none"]
    # Not refuted, the prior orients the pair as before.
    monkeypatch.setattr(_lasso, "_refutation_pvalues",
                        lambda src, dst, w, *sums: np.full(len(src), 0.9))
    result = _lasso._orient_pairs(None, edges, np.array([0]), 0.05, genes)
    assert (result.source.tolist(), result.target.tolist()) == ([0], [1])
    assert result.oriented.tolist() == [True]


def test_intervention_graph_legend_lists_only_what_is_drawn():
    import networkx as nx

    G = nx.DiGraph()
    G.add_edge("A", "B", weight=0.5)
    G.add_edge("C", "A", weight=0.3)
    ax = plot.intervention_graph(G, ["A"])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(ax.figure)
    assert labels == ["target (do)", "activation", "cut by the intervention"]
    G.add_edge("A", "D", weight=-0.2)
    G.remove_edge("C", "A")
    ax = plot.intervention_graph(G, ["A"])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(ax.figure)
    assert labels == ["target (do)", "activation", "repression"]


def test_block_threads_respect_blas_limits_and_the_memory_budget():
    from threadpoolctl import threadpool_limits

    from causalcell.data import _stats

    with threadpool_limits(limits=1, user_api="blas"):
        assert _stats._threads() == 1
    assert _stats._threads(bytes_per_thread=_stats._THREAD_SUMS_BYTES * 4) == 1
    # Sums are the same whatever the thread count.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5_000, 40))
    codes = rng.integers(0, 7, 5_000)
    many = _stats.group_moments(X, codes, 7, squares=True)
    with threadpool_limits(limits=1, user_api="blas"):
        one = _stats.group_moments(X, codes, 7, squares=True)
    np.testing.assert_array_equal(many.sums, one.sums)
    np.testing.assert_array_equal(many.squares, one.squares)


@pytest.mark.parametrize("sparse", [False, True])
def test_group_moments_asks_the_thread_count_once(monkeypatch, sparse):
    """threadpool_info() inspects every loaded library: one call per pass, not one
    for the sparse row split and another for the threads."""
    from scipy.sparse import csr_array

    from causalcell.data import _stats

    calls = []
    monkeypatch.setattr(_stats, "_threads", lambda bytes_per_thread=0: calls.append(1) or 2)
    rng = np.random.default_rng(0)
    X = rng.poisson(0.5, size=(300, 20)).astype(np.float64)
    codes = rng.integers(0, 4, 300)
    sums = _stats.group_moments(csr_array(X) if sparse else X, codes, 4)
    assert len(calls) == 1
    np.testing.assert_allclose(sums.sums, np.stack([X[codes == k].sum(0) for k in range(4)]))
