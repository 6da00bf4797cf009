"""Bugs found by reviewing the merged change; each test failed before its fix."""

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
