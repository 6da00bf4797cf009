"""causalcell.benchmark: cross-validation over perturbations, nested selection, and the
known answers of simulate() scored through them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator

import causalcell as cc
from causalcell.benchmark import cross_validate, observed_request, select
from causalcell.errors import CausalCellError, DataContractError, ParameterError
from causalcell.models import (
    ConditionalGRNRegressor,
    ControlBaseline,
    LinearEmbeddingBaseline,
    MeanBaseline,
    TargetOnlyBaseline,
)

CONDITIONINGS = ("targeted", "none")


class Oracle(BaseEstimator):
    """Predicts rows of a fixed table of profiles (e.g. ``Simulation.expected``);
    with ``zero_half``, every other requested perturbation gets the control row
    (no change at all)."""

    def __init__(self, profiles=None, zero_half: bool = False):
        self.profiles = profiles
        self.zero_half = zero_half

    def fit(self, adata, network=None):
        return self

    def predict(self, request):
        out = self.profiles[list(request.index)].copy()
        if self.zero_half:
            control = np.asarray(self.profiles[self.profiles.obs["is_control"].to_numpy()].X)[0]
            X = np.asarray(out.X).copy()
            X[::2] = control
            out.X = X
        return out


class Spy(BaseEstimator):
    """A mean baseline that records what it was trained on and asked for."""

    log: list = []  # noqa: RUF012 - shared on purpose: clones write to it

    def __init__(self, tag: str = "spy"):
        self.tag = tag

    def fit(self, adata, network=None):
        self.trained_ = set(adata.obs["perturbation"].astype(str))
        self.model_ = MeanBaseline().fit(adata)
        return self

    def predict(self, request):
        Spy.log.append((self.trained_, list(request["perturbation"]), request.copy()))
        return self.model_.predict(request)


@pytest.fixture(scope="module")
def sim():
    return cc.datasets.simulate(random_state=0)


@pytest.fixture(scope="module")
def known(sim):
    """Cross-validated known answer, half of it, and every built-in baseline."""
    models = {"expected": Oracle(sim.expected), "half": Oracle(sim.expected, zero_half=True),
              "mean": MeanBaseline(), "control": ControlBaseline(),
              "target only": TargetOnlyBaseline(), "linear embedding": LinearEmbeddingBaseline()}
    return cross_validate(models, sim.adata, sim.network, verbose=False)


# ------------------------------------------------------------------ the folds


def test_every_perturbation_is_predicted_once_by_models_that_never_saw_it(sim):
    Spy.log.clear()
    spy = Spy()
    result = cross_validate({"spy": spy, "mean": MeanBaseline()}, sim.adata, folds=4,
                            ceiling=False, top_k=[20], verbose=False)
    assert not hasattr(spy, "trained_")  # cloned, never fitted itself
    asked = [label for _, labels, _ in Spy.log for label in labels]
    assert len(Spy.log) == 4
    assert sorted(asked) == sorted(set(asked))  # exactly once
    perturbed = set(sim.truth.obs_names[1:])
    assert set(asked) == perturbed == set(result.held_out)
    for trained, labels, _ in Spy.log:
        assert not trained & set(labels)
        assert "control" in trained
    assert sorted(result.folds.index) == sorted(perturbed)
    assert result.folds["fold"].value_counts().sort_index().tolist() == [9, 9, 9, 8]
    for name, prediction in result.predictions.items():
        assert sorted(prediction.obs_names) == sorted(perturbed), name


def test_requests_carry_the_observed_level_of_the_held_out_cells(sim):
    combination = next(name for name in sim.truth.obs_names if "," in name)
    cells = sim.adata[sim.adata.obs["perturbation"].isin(["TF03", combination]).to_numpy()]
    request = observed_request(cells)
    assert sorted(request.index) == sorted(["TF03", combination])
    obs = cells.obs[cells.obs["perturbation"] == "TF03"]
    tf03 = float(request.loc["TF03", "expression_level_after_perturbation"])
    assert tf03 == pytest.approx(obs["expression_level_after_perturbation"].astype(float).mean())
    recorded = cells.obs.loc[cells.obs["perturbation"] == combination,
                             "expression_level_after_perturbation"]
    first = np.mean([float(v.split(",")[0]) for v in recorded])
    pair = request.loc[combination, "expression_level_after_perturbation"].split(",")
    assert len(pair) == 2
    assert float(pair[0]) == pytest.approx(first)
    # Without recorded levels: the mean measured expression of the target.
    unrecorded = cc.datasets.simulate(random_state=0, record_levels=False).adata
    cells = unrecorded[unrecorded.obs["perturbation"].to_numpy() == "TF03"]
    request = observed_request(cells)
    measured = float(np.asarray(cells[:, "TF03"].X).mean())
    assert float(request.loc["TF03", "expression_level_after_perturbation"]) == pytest.approx(
        measured, rel=1e-6)


def test_a_network_function_sees_each_training_split_only(sim):
    seen = []

    def learner(train):
        seen.append(set(train.obs["perturbation"].astype(str)))
        return sim.network

    result = cross_validate({"grn": ConditionalGRNRegressor(verbose=False),
                             "mean": MeanBaseline()}, sim.adata, learner, folds=3,
                            ceiling=False, top_k=[20], verbose=False)
    assert len(seen) == 3  # once per fold, shared by the models that take a network
    held = result.folds.groupby("fold").groups
    for labels, (_, members) in zip(seen, sorted(held.items()), strict=True):
        assert not labels & set(members)
    assert set(result.fold_networks) == {"grn", "mean"}  # MeanBaseline.fit takes one too
    assert result.networks["grn"] is sim.network


# ------------------------------------------------------------------ known answers


def test_expected_beats_every_baseline_on_every_metric(known):
    """The known answer (Simulation.expected) is first on every metric, under both
    conditionings, against every built-in baseline at default settings."""
    table = known.table.set_index(["metric", "model"])
    baselines = ["mean", "control", "target only", "linear embedding"]
    for metric in table.index.get_level_values("metric").unique():
        better = 1.0 if table.loc[(metric, "expected"), "higher_is_better"] else -1.0
        for cond in CONDITIONINGS:
            ours = table.loc[(metric, "expected"), f"value [{cond}]"]
            for base in baselines:
                theirs = table.loc[(metric, base), f"value [{cond}]"]
                assert better * (ours - theirs) > 0, (metric, cond, base)


def test_ceiling_calibrates_the_known_answer_at_one_and_the_baseline_at_zero(known):
    table = known.table.set_index(["metric", "model"])
    corrected = ["mae", "mse", "pearson_delta", "cosine_delta", "de_pearson_top20",
                 "de_pearson_top100", "de_pearson_sig", "retrieval_rank"]
    for metric in corrected:
        for cond in CONDITIONINGS:
            row = table.loc[(metric, "expected")]
            low, high = row[f"calibrated_ci_low [{cond}]"], row[f"calibrated_ci_high [{cond}]"]
            assert low - 0.02 <= 1.0 <= high + 0.02, (metric, cond, low, high)
            assert abs(row[f"calibrated [{cond}]"] - 1.0) < 0.15, (metric, cond)
            assert table.loc[(metric, "mean"), f"calibrated [{cond}]"] == 0.0


def test_half_zero_prediction_never_outranks_the_full_one(known, sim):
    pair = {name: known.predictions[name] for name in ("expected", "half")}
    for undefined in ("zero", "skip"):
        table = cc.evaluate.compare(pair, known.observed, undefined=undefined,
                                    baseline="expected", n_resamples=200
                                    ).set_index(["metric", "model"])
        for cond in CONDITIONINGS:
            ranks = table[f"rank [{cond}]"]
            full = ranks.xs("expected", level="model")
            half = ranks.xs("half", level="model")
            assert (half >= full).all(), (undefined, cond, half[half < full])


def test_control_baseline_counts_as_no_skill(known):
    table = known.table.set_index(["metric", "model"])
    n = len(known.held_out)
    for cond in CONDITIONINGS:
        row = table.loc[("pearson_delta", "control")]
        assert row[f"value [{cond}]"] == 0.0
        assert row[f"n_undefined [{cond}]"] == row[f"n [{cond}]"] == n


# ------------------------------------------------------------------ nested selection


def test_selection_happens_inside_the_training_folds():
    sim = cc.datasets.simulate(n_genes=60, n_tfs=8, n_combinations=4, random_state=0)
    seen = []

    def learned(train):
        seen.append(set(train.obs["perturbation"].astype(str)))
        return sim.network

    candidates = {"true": (ConditionalGRNRegressor(verbose=False), sim.network),
                  "reversed": (ConditionalGRNRegressor(verbose=False), sim.network.reverse()),
                  "learned": (ConditionalGRNRegressor(verbose=False), learned)}
    chooser = select(candidates, metric="mse", folds=2)
    result = cross_validate({"selected": chooser, "mean": MeanBaseline()}, sim.adata, folds=3,
                            ceiling=False, top_k=[20], verbose=False)
    fitted = result.fitted["selected"]
    assert len(fitted) == 3
    assert all(f.selected_ in ("true", "learned") for f in fitted)
    # The learned network was computed on inner and outer training splits only:
    # never on a perturbation the enclosing outer fold scores.
    held = result.folds.groupby("fold").groups
    calls = iter(seen)
    for fold, selection in enumerate(fitted):
        assert set(selection.scores_.index) == set(candidates)
        assert selection.network_ is not None
        # Per outer fold: one call per inner fold, and one for the refit if chosen.
        n_calls = 2 + (selection.selected_ == "learned")
        for labels in [next(calls) for _ in range(n_calls)]:
            assert not labels & set(held[fold])
    assert next(calls, None) is None


def test_select_bad_arguments(sim):
    with pytest.raises(ParameterError, match="metric='accuracy'"):
        select({"a": MeanBaseline()}, metric="accuracy").fit(sim.adata)
    with pytest.raises(ParameterError, match="non-empty mapping"):
        select({}).fit(sim.adata)
    with pytest.raises(CausalCellError, match="not fitted"):
        select({"a": MeanBaseline()}).predict(sim.truth.obs)


# ------------------------------------------------------------------ bad input


def test_cross_validate_bad_input(sim):
    small = cc.datasets.simulate(n_genes=30, n_tfs=3, n_combinations=0, random_state=0)
    with pytest.raises(ParameterError, match=r"folds=9 but there are only 8 perturbations"):
        cross_validate({"mean": MeanBaseline()}, small.adata, folds=9, verbose=False)
    with pytest.raises(ParameterError, match="folds=1"):
        cross_validate({"mean": MeanBaseline()}, small.adata, folds=1, verbose=False)
    for models, match in (({"mean": MeanBaseline}, "is a class.*parentheses"),
                          ({"mean": "mean"}, "not an estimator"),
                          ([MeanBaseline()], "non-empty mapping"),
                          ({}, "non-empty mapping")):
        with pytest.raises(ParameterError, match=match):
            cross_validate(models, small.adata, verbose=False)
    with pytest.raises(ParameterError, match="baseline='mean' is not among"):
        cross_validate({"control": ControlBaseline()}, small.adata, verbose=False)
    with pytest.raises(DataContractError, match="needs per-cell data"):
        cross_validate({"mean": MeanBaseline()}, cc.data.pseudobulk(small.adata),
                       verbose=False)
    with pytest.raises(ParameterError, match="network must be"):
        cross_validate({"grn": ConditionalGRNRegressor(verbose=False), "mean": MeanBaseline()},
                       small.adata, "not a graph", ceiling=False, verbose=False)
    assert issubclass(ParameterError, CausalCellError)


def test_pseudobulk_rows_cross_validate_without_a_ceiling(sim):
    pb = cc.data.pseudobulk(sim.adata)
    result = cross_validate({"mean": MeanBaseline(), "control": ControlBaseline()}, pb,
                            ceiling=False, top_k=[20], verbose=False)
    assert result.ceiling is None
    assert not any(c.startswith("calibrated") for c in result.table.columns)
    assert isinstance(result.table, pd.DataFrame)


def test_cross_validate_leaves_the_callers_data_alone():
    sim = cc.datasets.simulate(n_genes=40, n_tfs=6, n_combinations=2, random_state=5)
    obs, X = sim.adata.obs.copy(), np.asarray(sim.adata.X).copy()
    edges = sorted(sim.network.edges(data=True))
    cross_validate({"grn": ConditionalGRNRegressor(verbose=False), "mean": MeanBaseline()},
                   sim.adata, sim.network, folds=3, top_k=[5], verbose=False)
    pd.testing.assert_frame_equal(sim.adata.obs, obs)
    np.testing.assert_array_equal(np.asarray(sim.adata.X), X)
    assert sorted(sim.network.edges(data=True)) == edges
