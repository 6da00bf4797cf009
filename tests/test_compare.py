"""compare(): coverage, undefined values, paired intervals and tests, reversals."""

from __future__ import annotations

import itertools
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import causalcell as cc
from causalcell.errors import ParameterError
from causalcell.evaluate._report import compare, summarize
from causalcell.evaluate._uncertainty import (
    bootstrap_means,
    interval,
    resample_counts,
    sign_flip_pvalues,
)
from causalcell.models import ControlBaseline, MeanBaseline


@pytest.fixture(scope="module")
def sim():
    return cc.datasets.simulate(n_genes=60, n_tfs=8, n_combinations=4, random_state=3)


@pytest.fixture(scope="module")
def profiles(sim):
    pb = cc.data.pseudobulk(sim.adata)
    return pb[~pb.obs["is_control"].to_numpy()].copy()


def _prediction(template: ad.AnnData, X: np.ndarray) -> ad.AnnData:
    obs = template.obs[["perturbation", "is_control", "perturbation_type"]].copy()
    return ad.AnnData(X=np.asarray(X, dtype=np.float64), obs=obs, var=template.var[[]].copy())


def _request(profiles):
    return profiles.obs[["perturbation", "is_control", "perturbation_type"]]


# ------------------------------------------------------------------ the statistics


def test_bootstrap_means_equal_a_loop_over_resamples():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(12, 3))
    values[[1, 5], 2] = np.nan  # column 2 is defined on a subset
    counts = resample_counts(12, 50, rng)
    assert (counts.sum(axis=1) == 12).all()
    fast = bootstrap_means(values, counts)
    for b in range(50):
        drawn = np.repeat(np.arange(12), counts[b])
        np.testing.assert_allclose(fast[b], np.nanmean(values[drawn], axis=0), rtol=1e-12)
    low, high = interval(fast, 0.9)
    np.testing.assert_allclose(low, np.percentile(fast, 5, axis=0))
    np.testing.assert_allclose(high, np.percentile(fast, 95, axis=0))


def test_sign_flip_test_is_scipys_paired_permutation_test():
    rng = np.random.default_rng(1)
    differences = rng.normal(0.3, 1.0, size=(9, 4))
    differences[:, 3] = 0.0  # a model equal to the reference
    ours = sign_flip_pvalues(differences, 1000, rng)  # 2^9 = 512 patterns: exact
    for j in range(3):
        theirs = stats.permutation_test(
            (differences[:, j], np.zeros(9)), lambda x, y, axis: np.mean(x - y, axis=axis),
            permutation_type="samples", n_resamples=np.inf, vectorized=True).pvalue
        assert ours[j] == pytest.approx(theirs, rel=1e-12)
    assert ours[3] == 1.0
    # Random patterns: close to the exact answer.
    big = rng.normal(0.1, 1.0, size=(40, 1))
    exact_normal = stats.ttest_1samp(big[:, 0], 0.0).pvalue
    assert sign_flip_pvalues(big, 20_000, rng)[0] == pytest.approx(exact_normal, abs=0.03)


# ------------------------------------------------------------------ undefined values


def _long(values: dict[str, list[float]], metric: str = "pearson_delta") -> pd.DataFrame:
    rows = []
    for model, vals in values.items():
        for i, v in enumerate(vals):
            rows.append({"model": model, "perturbation": f"p{i}",
                         "perturbation_type": "knockout", "exclude": "none",
                         "metric": metric, "value": v, "scorable": True})
    return pd.DataFrame(rows)


def test_summaries_count_undefined_correlations_as_no_skill():
    nan = np.nan
    table = _long({"full": [0.5, 0.5, 0.5, 0.5], "half": [0.9, 0.9, nan, nan]})
    zero = summarize(table).set_index("model")
    assert zero.loc["half", "mean"] == pytest.approx(0.45)
    assert zero.loc["half", "n"] == 4
    assert zero.loc["half", "n_undefined"] == 2
    assert zero.loc["full", "n_undefined"] == 0
    # Skipping: both models on the two perturbations where both are defined.
    skip = summarize(table, undefined="skip").set_index("model")
    assert skip.loc["full", "n"] == skip.loc["half", "n"] == 2
    assert skip.loc["half", "mean"] == pytest.approx(0.9)
    assert skip.loc["half", "n_undefined"] == 2
    direction = summarize(_long({"m": [1.0, nan]}, "direction_agreement"))
    assert direction["mean"].iloc[0] == pytest.approx(0.75)  # a coin flip counts 0.5
    with pytest.raises(ParameterError, match="undefined='never'"):
        summarize(table, undefined="never")


def test_undefined_by_the_data_is_left_out_for_every_model():
    nan = np.nan
    table = _long({"a": [0.5, nan, 0.7], "b": [0.1, nan, 0.2]})
    table.loc[table["perturbation"] == "p1", "scorable"] = False  # no significant gene
    summary = summarize(table).set_index("model")
    assert (summary["n"] == 2).all()
    assert (summary["n_undefined"] == 0).all()
    assert summary.loc["a", "mean"] == pytest.approx(0.6)


def test_control_baseline_correlations_are_undefined_and_count_zero(sim, profiles):
    """The control baseline predicts zero change: every correlation is undefined
    (not a number made of rounding noise) and counts as no skill."""
    request = _request(profiles)
    predictions = {"mean": MeanBaseline().fit(sim.adata).predict(request),
                   "control": ControlBaseline().fit(sim.adata).predict(request)}
    table, long = compare(predictions, sim.adata, top_k=[5], details=True)
    rows = table.set_index(["metric", "model"])
    n = profiles.n_obs
    for cond in ("targeted", "none"):
        for metric in ("pearson_delta", "spearman_delta", "cosine_delta", "de_pearson_top5"):
            assert rows.loc[(metric, "control"), f"value [{cond}]"] == 0.0
            assert rows.loc[(metric, "control"), f"n_undefined [{cond}]"] == n
            assert rows.loc[(metric, "mean"), f"n_undefined [{cond}]"] == 0
        assert rows.loc[("direction_agreement", "control"), f"value [{cond}]"] == 0.5
        # Its top-k sets are all ties: exactly the chance overlap.
        scored = long[(long["model"] == "control") & (long["exclude"] == cond)
                      & (long["metric"] == "de_overlap_top5")]
        np.testing.assert_allclose(scored["value"], 5 / scored["n_genes_scored"])
    raw = long[(long["model"] == "control") & (long["metric"] == "pearson_delta")]
    assert raw["value"].isna().all()
    assert (raw["scored"] == 0.0).all()


# ------------------------------------------------------------------ intervals and tests


def test_intervals_differences_and_p_values(sim, profiles):
    rng = np.random.default_rng(5)
    X = np.asarray(profiles.X)
    predictions = {
        "good": _prediction(profiles, X + rng.normal(0, 0.05, X.shape)),
        "mean": MeanBaseline().fit(sim.adata).predict(_request(profiles)),
        "copy of mean": MeanBaseline().fit(sim.adata).predict(_request(profiles)),
    }
    table = compare(predictions, sim.adata, top_k=[5]).set_index(["metric", "model"])
    cond = "targeted"
    values = table[f"value [{cond}]"]
    assert (table[f"ci_low [{cond}]"] <= values + 1e-12).all()
    assert (values <= table[f"ci_high [{cond}]"] + 1e-12).all()
    assert (table[f"n [{cond}]"].loc["mse"] == profiles.n_obs).all()
    same = table.xs("copy of mean", level="model")
    assert (same[f"diff [{cond}]"] == 0).all()
    assert (same[f"p_value [{cond}]"] == 1).all()
    good = table.loc[("pearson_delta", "good")]
    assert good[f"diff_ci_low [{cond}]"] > 0
    assert good[f"p_value [{cond}]"] < 0.01
    # The same seed gives the same intervals; another seed slightly different ones.
    again = compare(predictions, sim.adata, top_k=[5]).set_index(["metric", "model"])
    pd.testing.assert_frame_equal(table, again)
    other = compare(predictions, sim.adata, top_k=[5], random_state=1)
    assert not np.allclose(other[f"ci_low [{cond}]"], table[f"ci_low [{cond}]"])


def test_reversal_needs_more_than_a_rank_swap(sim, profiles):
    """Two equally good models swap ranks by noise: rank_changed, not a reversal."""
    X = np.asarray(profiles.X)
    found = False
    for seed in range(20):
        rng = np.random.default_rng(seed)
        predictions = {"a": _prediction(profiles, X + rng.normal(0, 0.1, X.shape)),
                       "b": _prediction(profiles, X + rng.normal(0, 0.1, X.shape))}
        table = compare(predictions, sim.adata, top_k=[5], baseline="a", n_resamples=500)
        assert not table["reversal"].any()
        found |= bool(table["rank_changed"].any())
        if found and seed >= 4:
            break
    assert found  # some seed swapped a ranking between conditionings


def test_compare_bad_arguments(sim, profiles):
    one = {"a": profiles}
    with pytest.raises(ParameterError, match=r"baseline='mean' is not among .*\['a'\]"):
        compare(one, sim.adata)
    with pytest.raises(ParameterError, match="give baseline="):
        compare(one, sim.adata, baseline=None, ceiling=pd.DataFrame())
    with pytest.raises(ParameterError, match="replicate_ceiling"):
        compare(one, sim.adata, baseline="a", ceiling=pd.DataFrame({"x": [1]}))
    with pytest.raises(ParameterError, match="undefined="):
        compare(one, sim.adata, baseline="a", undefined="drop")
    with pytest.raises(ParameterError, match="n_resamples=0"):
        compare(one, sim.adata, baseline="a", n_resamples=0)
    with pytest.raises(ParameterError, match="confidence_level=95"):
        compare(one, sim.adata, baseline="a", confidence_level=95)


def test_exact_test_enumerates_every_pattern():
    d = np.array([[1.0], [2.0], [3.0]])
    # All 8 sign patterns: the observed sum 6 is reached once, -6 once.
    p = sign_flip_pvalues(d, 100, np.random.default_rng(0))
    patterns = np.array(list(itertools.product((1, -1), repeat=3)))
    sums = patterns @ d[:, 0]
    expected = min(1.0, 2 * min((sums >= 6).mean(), (sums <= 6).mean()))
    assert p[0] == pytest.approx(expected) == pytest.approx(0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(sign_flip_pvalues(np.full((3, 1), np.nan), 100,
                                          np.random.default_rng(0))[0])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 8), shift=st.floats(-1.0, 1.0),
       ties=st.booleans())
def test_sign_flip_equals_scipy_on_any_small_sample(seed, n, shift, ties):
    rng = np.random.default_rng(seed)
    d = rng.normal(shift, 1.0, size=n)
    if ties:  # repeated magnitudes: many sign patterns reach the observed sum
        d = np.round(d)
    ours = sign_flip_pvalues(d[:, None], 1000, rng)[0]
    theirs = stats.permutation_test(
        (d, np.zeros(n)), lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples", n_resamples=np.inf, vectorized=True).pvalue
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 15), k=st.integers(1, 4))
def test_bootstrap_means_property(seed, n, k):
    """Every resampled mean is the mean of the drawn perturbations; with every
    count 1 (the original sample) it is the plain mean."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, k))
    values[rng.random((n, k)) < 0.2] = np.nan
    counts = np.vstack([np.ones((1, n), dtype=np.int64), resample_counts(n, 5, rng)])
    means = bootstrap_means(values, counts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(means[0], np.nanmean(values, axis=0), rtol=1e-12)
        for b in range(1, 6):
            drawn = np.repeat(np.arange(n), counts[b])
            np.testing.assert_allclose(means[b], np.nanmean(values[drawn], axis=0),
                                       rtol=1e-12)
