"""The dose-response and response-curve figures draw what the tables say."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from causalcell import plot
from causalcell.benchmark import predict_dose_response
from causalcell.datasets import simulate
from causalcell.errors import ParameterError
from causalcell.evaluate import dose_bins, score_dose_response
from causalcell.models import ConditionalGRNRegressor


@pytest.fixture(scope="module")
def dosed():
    sim = simulate(n_genes=40, n_tfs=5, regulation="saturating", knockdown_efficiency=0.7,
                   efficiency_sd=0.2, escaper_fraction=0.2, n_combinations=0,
                   n_cells_per_perturbation=200, library_size=3e4, random_state=5)
    model = ConditionalGRNRegressor("spline", alpha="gcv").fit(sim.adata, sim.network)
    bins = dose_bins(sim.adata, n_bins=4, min_cells=40)
    scores = score_dose_response(model.predict(bins.request()), sim.adata, bins)
    return sim, model, scores


def test_dose_response_draws_observed_bins_predictions_and_the_grid(dosed):
    sim, model, scores = dosed
    counts = scores.genes["condition"].value_counts()
    label = counts.index[counts >= 3][0]
    curve = predict_dose_response(model, sim.adata, label, n_levels=20)
    ax = plot.dose_response(scores, label, n_genes=3, curve=curve)
    genes = scores.genes[scores.genes["condition"] == label].sort_values("rank")["gene"][:3]
    observed = scores.curves[(scores.curves["condition"] == label)
                             & (scores.curves["gene"] == genes.iloc[0])].sort_values("level")
    # Error bars: one container per gene, centred on the observed bin means.
    first = ax.containers[0]
    np.testing.assert_allclose(np.asarray(first.lines[0].get_ydata(), dtype=float),
                               observed["observed"])
    np.testing.assert_allclose(np.asarray(first.lines[0].get_xdata(), dtype=float),
                               observed["level"])
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    np.testing.assert_allclose(np.asarray(dashed[0].get_ydata(), dtype=float),
                               observed["predicted"])
    solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"
             and len(line.get_xdata()) == 20]
    assert len(solid) == 3
    assert len(ax.containers) == 3
    plt.close("all")


def test_dose_response_errors(dosed):
    _, _, scores = dosed
    with pytest.raises(ParameterError, match="no dose-response curve"):
        plot.dose_response(scores, "NOPE")
    label = scores.genes["condition"].iloc[0]
    with pytest.raises(ParameterError, match="have no curve"):
        plot.dose_response(scores, label, genes=["not-a-gene"])


def test_response_curves_mark_extrapolation_and_models(dosed):
    sim, model, _ = dosed
    grid = np.linspace(-0.5, 5.0, 30)  # below and above the training range
    spline = model.response_curves(regulators=["TF01"], levels=grid).assign(model="spline")
    ridge = ConditionalGRNRegressor().fit(sim.adata, sim.network).response_curves(
        regulators=["TF01"], levels=grid).assign(model="ridge")
    table = pd.concat([spline, ridge])
    target = spline["target"].iloc[0]
    ax = plot.response_curves(table, target=target)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == [f"TF01 -> {target} (spline)", f"TF01 -> {target} (ridge)"]
    inside = ax.get_lines()[0]
    outside = ax.get_lines()[1]
    in_range = spline[spline["target"] == target]["in_range"].to_numpy()
    assert not in_range.all()
    assert np.isnan(np.asarray(inside.get_ydata(), dtype=float)[~in_range]).all()
    assert np.isfinite(np.asarray(outside.get_ydata(), dtype=float)[~in_range]).all()
    plt.close("all")
    with pytest.raises(ParameterError, match="columns"):
        plot.response_curves(pd.DataFrame({"a": [1]}))
    with pytest.raises(ParameterError, match="No edge"):
        plot.response_curves(table, target="nope")


def test_escaper_band_is_drawn(dosed):
    _, _, scores = dosed
    with_escapers = scores.bins.loc[scores.bins["escaper"], "condition"]
    label = next(c for c in scores.genes["condition"] if c in set(with_escapers))
    ax = plot.dose_response(scores, label)
    assert any(patch.get_label() == "escaper bins" for patch in ax.patches)
    plt.close("all")


def test_dose_response_accepts_scores_of_a_flat_prediction(dosed):
    sim, _, _ = dosed
    bins = dose_bins(sim.adata, n_bins=4, min_cells=40)
    request = bins.request()
    flat = ad.AnnData(np.tile(sim.expected.X[0], (len(request), 1)), obs=request,
                      var=pd.DataFrame(index=sim.adata.var_names))
    scores = score_dose_response(flat, sim.adata, bins)
    label = scores.genes["condition"].iloc[0]
    ax = plot.dose_response(scores, label, n_genes=2)
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    values = np.asarray(dashed[0].get_ydata(), dtype=float)
    assert np.allclose(values, values[0], atol=0.05)
    plt.close("all")
