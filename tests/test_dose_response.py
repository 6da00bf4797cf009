"""Tests of P(X | T = t) as a curve: simulate()'s escapers and Hill options,
Simulation.expected_at, dose bins, per-bin scoring and the benchmark functions."""

from __future__ import annotations

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
import pytest

from causalcell.benchmark import (
    MAX_LEVEL_FACTOR,
    cross_validate_dose_response,
    predict_dose_response,
)
from causalcell.data import pseudobulk
from causalcell.datasets import simulate
from causalcell.datasets.simulation import (
    _EFFICIENCY_NODES,
    _efficiency_nodes,
    _hill,
    _knockdown_level,
)
from causalcell.errors import CausalCellWarning, DataContractError, ParameterError
from causalcell.evaluate import dose_bins, score_dose_response
from causalcell.models import ConditionalGRNRegressor, MeanBaseline

LEVEL = "expression_level_after_perturbation"


@pytest.fixture(scope="module")
def dosed():
    """Per-cell knockdown efficiency spread wide, a quarter of escapers, deep cells."""
    return simulate(n_genes=60, n_tfs=8, regulation="saturating", knockdown_efficiency=0.7,
                    efficiency_sd=0.2, escaper_fraction=0.25, n_combinations=3,
                    n_cells_per_perturbation=240, n_control_cells=400, library_size=3e4,
                    random_state=2)


def true_model_prediction(sim, request: pd.DataFrame) -> ad.AnnData:
    """The known answer of every requested bin: Simulation.expected_at its mean T."""
    rows = [sim.expected_at(r["perturbation"], [float(r[LEVEL])],
                            kind=r["perturbation_type"]).X[0]
            for _, r in request.iterrows()]
    return ad.AnnData(np.array(rows), obs=request.copy(),
                      var=pd.DataFrame(index=sim.adata.var_names))


# --------------------------------------------------------------------------- simulate
def test_escapers_are_at_the_control_level_in_the_requested_share():
    sim = simulate(n_genes=30, n_tfs=5, escaper_fraction=0.3, n_combinations=0,
                   n_cells_per_perturbation=400, random_state=0)
    obs = sim.adata.obs
    x0 = sim.adata.var["control_level"]
    share = []
    for tf in ("TF01", "TF02", "TF03"):
        levels = obs.loc[obs["perturbation"] == tf, LEVEL].to_numpy(dtype=float)
        escaped = np.isclose(levels, x0[tf], rtol=0, atol=1e-12)
        assert np.all(levels[~escaped] < x0[tf])
        share.append(escaped.mean())
    assert np.mean(share) == pytest.approx(0.3, abs=0.04)
    # The truth's expected T counts the escapers.
    row = sim.truth.obs.loc["TF01", LEVEL]
    without = simulate(n_genes=30, n_tfs=5, n_combinations=0, n_cells_per_perturbation=2,
                       random_state=0).truth.obs.loc["TF01", LEVEL]
    assert float(row) == pytest.approx(0.7 * float(without) + 0.3 * x0["TF01"], rel=1e-9)


def test_defaults_reproduce_the_simulation_without_escapers_or_new_hill_options():
    base = simulate(n_genes=30, n_tfs=5, regulation="saturating", random_state=4)
    same = simulate(n_genes=30, n_tfs=5, regulation="saturating", random_state=4,
                    escaper_fraction=0.0, hill_coefficient=2.0, half_saturation=1.0)
    np.testing.assert_array_equal(base.adata.X, same.adata.X)
    np.testing.assert_array_equal(base.truth.X, same.truth.X)


def test_hill_curve_keeps_the_control_state_and_saturates():
    x0 = np.array([1.5, 2.0, 3.0])
    for n, s in ((2.0, 1.0), (4.0, 0.5), (6.0, 0.3)):
        np.testing.assert_allclose(_hill(x0, x0, (n, s)), x0)
        np.testing.assert_allclose(_hill(s * x0, x0, (n, s)), x0 * (1 + s**n) / 2)
        np.testing.assert_allclose(_hill(1e3 * x0, x0, (n, s)), x0 * (1 + s**n), rtol=1e-5)
    np.testing.assert_allclose(_hill(x0 / 2, x0), 2 * x0 * 0.25 / 1.25)  # the default


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"escaper_fraction": 1.0}, "escaper_fraction"),
    ({"escaper_fraction": -0.1}, "escaper_fraction"),
    ({"hill_coefficient": 0.5}, "hill_coefficient"),
    ({"half_saturation": 0.0}, "half_saturation"),
    ({"half_saturation": 1.5}, "half_saturation"),
])
def test_new_simulation_arguments_are_checked(kwargs, name):
    with pytest.raises(ParameterError, match=name):
        simulate(n_genes=10, n_tfs=2, **kwargs)


@pytest.mark.parametrize("regulation", ["linear", "saturating"])
def test_expected_averages_expected_at_over_the_efficiency(regulation):
    """expected = E_T[expected_at(T)]: exact (quadrature) for linear regulation, within
    Monte-Carlo error for saturating regulation."""
    sim = simulate(n_genes=40, n_tfs=6, regulation=regulation, escaper_fraction=0.2,
                   efficiency_sd=0.15, n_combinations=0, random_state=0)
    p = sim.params
    e, w = _efficiency_nodes(p["knockdown_efficiency"], p["efficiency_sd"], _EFFICIENCY_NODES,
                             p["escaper_fraction"])
    x0 = sim.adata.var["control_level"]["TF02"]
    at = sim.expected_at("TF02", _knockdown_level(x0, e))
    mixture = w @ at.X
    row = sim.expected["TF02"].X.ravel()
    if regulation == "linear":
        np.testing.assert_allclose(mixture, row, atol=1e-8)
    else:
        se = np.hypot(sim.expected.layers["standard_error"][
            sim.expected.obs_names.get_loc("TF02")], w @ at.layers["standard_error"])
        assert np.all(np.abs(mixture - row) <= 5 * se + 1e-9)


def test_expected_at_the_control_level_is_the_control_profile():
    """Held at its control level, a regulator changes no mean state; only genes
    downstream of it lose the part of their variance that came from its noise."""
    sim = simulate(n_genes=30, n_tfs=5, random_state=1)
    x0 = sim.adata.var["control_level"]
    at = sim.expected_at("TF01", [x0["TF01"]])
    downstream = np.zeros(sim.adata.n_vars, dtype=bool)
    for gene in nx.descendants(sim.network, "TF01") | {"TF01"}:
        downstream[sim.adata.var_names.get_loc(gene)] = True
    np.testing.assert_allclose(at.X[0, ~downstream], sim.expected.X[0, ~downstream], atol=1e-8)
    np.testing.assert_allclose(at.X[0, downstream], sim.expected.X[0, downstream], atol=0.02)
    assert at.obs.loc[at.obs_names[0], LEVEL] == pytest.approx(x0["TF01"])
    combo = sim.expected_at("TF01,TF02", [[0.5, 0.7]], kind="knockdown")
    assert combo.obs["perturbation"].iloc[0] == "TF01,TF02"
    knockout = sim.expected_at("TF03", [0.0], kind="knockout")
    assert knockout.X[0, 2] > 0  # the cut transcript is still measured


@pytest.mark.parametrize(("args", "kwargs", "error", "word"), [
    (("TF01", [0.5, -1.0]), {}, ParameterError, ">= 0"),
    (("TF01", [[0.5, 0.5]]), {}, ParameterError, "shape"),
    (("TF01,TF02", [0.5]), {}, ParameterError, "shape"),
    (("TF01", [0.5]), {"kind": "knockout"}, ParameterError, "T = 0"),
    (("NOPE", [0.5]), {}, DataContractError, "NOPE"),
    (("TF01", [0.5]), {"kind": "crispri"}, DataContractError, "kind"),
])
def test_expected_at_errors(args, kwargs, error, word):
    sim = simulate(n_genes=30, n_tfs=5, random_state=1, n_cells_per_perturbation=2)
    with pytest.raises(error, match=word):
        sim.expected_at(*args, **kwargs)


# --------------------------------------------------------------------------- dose bins
def test_bins_are_equal_count_quantiles_of_each_cells_own_level(dosed):
    adata = dosed.adata.copy()
    adata.obs[LEVEL] = adata.obs[LEVEL].astype(object)
    tf2 = (adata.obs["perturbation"] == "TF02").to_numpy()
    adata.obs.loc[tf2, LEVEL] = "nan"  # no recorded level: the measured one is T
    bins = dose_bins(adata, n_bins=4, min_cells=40)
    table = bins.table
    assert set(table["perturbation"]) == {f"TF0{i}" for i in range(1, 9)} | set(
        dosed.adata.obs["perturbation"][~dosed.adata.obs["perturbation"].str.contains(
            ",|TF|control")].unique())  # single-gene perturbations only: no combination
    tf1 = table[table["perturbation"] == "TF01"]
    assert tf1["n_cells"].tolist() == [60, 60, 60, 60]
    assert np.all(np.diff(tf1["level"]) > 0)
    assert np.all(tf1["level_max"].to_numpy()[:-1] <= tf1["level_min"].to_numpy()[1:])
    measured = adata.X[tf2, adata.var_names.get_loc("TF02")]
    rows = table.index[table["perturbation"] == "TF02"]
    for key in rows:
        members = bins.cell_bin[tf2] == table.index.get_loc(key)
        assert table.loc[key, "level"] == pytest.approx(measured[members].mean())
    request = bins.request()
    assert request.loc[rows[0], LEVEL] == repr(float(table.loc[rows[0], "level"]))
    # A quarter of escapers: the highest bin of a knockdown sits at the control level.
    assert tf1["escaper"].tolist() == [False, False, False, True]


def test_small_perturbations_get_fewer_bins_or_are_left_out(dosed):
    bins = dose_bins(dosed.adata, n_bins=4, min_cells=100)
    assert (bins.table["n_bins"] == 2).all()
    with pytest.raises(DataContractError, match="too few cells per bin"), pytest.warns(
            CausalCellWarning, match="fewer than min_cells=300"):
        dose_bins(dosed.adata, min_cells=300)


@pytest.mark.parametrize(("kwargs", "word"), [({"min_cells": 1}, "too few cells per bin"),
                                              ({"min_cells": 3.5}, "min_cells"),
                                              ({"n_bins": 0}, "n_bins")])
def test_bad_bin_arguments(dosed, kwargs, word):
    with pytest.raises(ParameterError, match=word):
        dose_bins(dosed.adata, **kwargs)


def test_bins_need_cells_controls_and_a_dose(dosed):
    with pytest.raises(DataContractError, match="pseudobulk"):
        dose_bins(pseudobulk(dosed.adata))
    no_control = dosed.adata[~dosed.adata.obs["is_control"].to_numpy()]
    with pytest.raises(DataContractError, match="control"):
        dose_bins(no_control)
    knockouts = simulate(n_genes=20, n_tfs=4, kind="knockout", n_combinations=0,
                         random_state=0).adata
    with pytest.raises(DataContractError, match="knockout"):
        dose_bins(knockouts)


# --------------------------------------------------------------------------- scoring
def test_true_model_scores_at_the_replicate_level_and_escapers_near_control(dosed):
    """The dose-response known answer: predictions of every bin at its mean T by the
    simulation's exact E[X | T] score like the data's own replicate, and escaper bins
    are predicted within noise of control."""
    bins = dose_bins(dosed.adata, n_bins=4, min_cells=40)
    predicted = true_model_prediction(dosed, bins.request())
    scores = score_dose_response(predicted, dosed.adata, bins)
    table = scores.bins
    knocked = table[~table["escaper"] & table["perturbation"].str.startswith("TF")]
    gap = knocked["pearson_delta"] - knocked["ceiling_pearson_delta"]
    assert abs(gap.median()) < 0.05
    assert knocked["pearson_delta"].median() > 0.8
    mse_ratio = knocked["mse"] / knocked["ceiling_mse"]
    assert 0.7 < mse_ratio.median() < 1.3
    escapers = table[table["escaper"] & table["perturbation"].str.startswith("TF")]
    assert len(escapers) >= 6
    assert escapers["near_control"].all()
    # The shape of the response across the bins: right shape, right amplitude.
    assert scores.genes["shape_pearson"].median() > 0.95
    assert scores.genes["span_ratio"].median() == pytest.approx(1.0, abs=0.1)
    assert scores.genes["curve_error"].median() < 0.15
    per_gene = scores.per_gene()
    assert {"gene", "n_perturbations", "shape_pearson"} <= set(per_gene.columns)


def test_a_flat_prediction_is_not_a_curve(dosed):
    """Predicting every bin at the control profile: every bin is predicted near
    control, right for escapers, wrong for knocked-down bins whose observed change is
    far beyond noise; the amplitude is 0."""
    bins = dose_bins(dosed.adata, n_bins=4, min_cells=40)
    request = bins.request()
    flat = ad.AnnData(np.tile(dosed.expected.X[0], (len(request), 1)), obs=request,
                      var=pd.DataFrame(index=dosed.adata.var_names))
    scores = score_dose_response(flat, dosed.adata, bins)
    assert scores.bins["near_control"].all()  # near control everywhere, rightly or not
    strongest = scores.bins[(scores.bins["bin"] == 0)
                            & scores.bins["perturbation"].str.startswith("TF")]
    assert (strongest["observed_rms_change"] > 3 * strongest["noise_rms"]).all()
    assert scores.genes["span_ratio"].abs().max() < 0.05
    assert scores.genes["curve_error"].median() > 0.3


def test_scoring_checks_its_inputs(dosed):
    bins = dose_bins(dosed.adata, n_bins=2, min_cells=40)
    request = bins.request()
    predicted = true_model_prediction(dosed, request.iloc[:3])
    with pytest.raises(DataContractError, match="no row for"):
        score_dose_response(predicted, dosed.adata, bins)
    full = true_model_prediction(dosed, request)
    with pytest.raises(DataContractError, match="lacks"):
        score_dose_response(full[:, :10], dosed.adata, bins)
    with pytest.raises(DataContractError, match="cells"):
        score_dose_response(full, dosed.adata[:100], bins)
    with pytest.raises(ParameterError, match="exclude"):
        score_dose_response(full, dosed.adata, bins, exclude="all")


# --------------------------------------------------------------------------- benchmark layer
def test_predict_dose_response_is_the_models_prediction_on_a_grid(dosed):
    model = ConditionalGRNRegressor("spline", alpha="gcv").fit(dosed.adata, dosed.network)
    curve = predict_dose_response(model, dosed.adata, "TF01", n_levels=5)
    top = float(dosed.adata[:, "TF01"].X.max())
    np.testing.assert_allclose(np.unique(curve["level"]), np.linspace(0, top, 5))
    one = curve[curve["level"] == curve["level"].max()]
    request = pd.DataFrame({"perturbation": ["TF01"], "is_control": [False],
                            "perturbation_type": ["knockdown"], LEVEL: [top]}, index=["r"])
    np.testing.assert_allclose(one["predicted"].to_numpy(), model.predict(request).X[0])
    target = curve[(curve["gene"] == "TF01")]
    np.testing.assert_allclose(target["predicted"], target["level"])  # clamped at T
    combo = predict_dose_response(model, dosed.adata, "TF01,TF02", [[0.5, 1.0], [1.0, 1.5]])
    assert {"level_TF01", "level_TF02"} <= set(combo.columns)


@pytest.mark.parametrize(("levels", "kind", "word"), [
    ([0.5, 100.0], "knockdown", "outside"),
    ([-0.5], "knockdown", "outside"),
    ([0.5], "knockout", "no dose-response"),
    ([[0.5, 0.5]], "knockdown", "shape"),
])
def test_a_grid_outside_the_observed_range_is_refused(dosed, levels, kind, word):
    model = MeanBaseline().fit(dosed.adata)
    with pytest.raises(ParameterError, match=word) as info:
        predict_dose_response(model, dosed.adata, "TF01", levels, kind=kind)
    if word == "outside":
        assert f"{MAX_LEVEL_FACTOR:g} x the largest level" in str(info.value)


def test_cross_validated_dose_response_table_and_computed_verdict(dosed):
    models = {"spline": ConditionalGRNRegressor("spline", alpha="gcv"),
              "mean": MeanBaseline()}
    result = cross_validate_dose_response(models, dosed.adata, dosed.network, folds=3,
                                          n_bins=3, min_cells=40, verbose=False)
    table = result.table
    assert list(table.index) == ["spline", "mean"]
    assert (table["n_escaper_bins"] > 0).all()
    assert table.loc["mean", "span_ratio"] == 0.0
    assert table.loc["spline", "curve_error"] < table.loc["mean", "curve_error"]
    lines = result.verdict()
    assert f"{table.loc['spline', 'pearson_delta']:.3f}" in lines[0]
    assert "Closest predicted dose-response curves: spline" in lines[-1]
    # Every bin was predicted by a model that never saw its perturbation.
    assert set(result.predictions["spline"].obs_names) == set(result.bins.table.index)
