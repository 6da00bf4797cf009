"""The evaluate API: one exclusion vocabulary, and scores around the aligned object.

- every public function of ``evaluate`` and ``benchmark`` (and the plot that
  takes a rule) spells the rule ``exclude`` with the values of
  ``METRIC_EXCLUDES`` / ``RETRIEVAL_EXCLUDES``, and every table labels its rows
  with the same words in an ``exclude`` column;
- the old spellings (``exclusion=``, ``conditioning=``, ``None``, ``"pair"``,
  ``"targeted excluded"``) warn ``FutureWarning`` naming the new one and give
  results identical to it;
- ``evaluate``, ``compare`` and ``retrieval`` given an ``Aligned`` equal the
  same call given the AnnData and the alignment options.
"""

from __future__ import annotations

import importlib
import inspect
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import causalcell as cc
from causalcell import benchmark, evaluate, plot
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate import (
    ALIGN_OPTIONS,
    METRIC_EXCLUDES,
    RETRIEVAL_EXCLUDES,
    Aligned,
    align,
)
from causalcell.models import MeanBaseline

OLD_PARAMETERS = {"exclusion", "conditioning"}
OLD_VALUES = {None, "pair", "targeted excluded"}


@pytest.fixture(scope="module")
def sim():
    return cc.datasets.simulate(n_genes=40, n_tfs=6, n_combinations=3, random_state=5)


@pytest.fixture(scope="module")
def predictions(sim):
    """Two predictions with every non-control perturbation: the truth, and the
    mean baseline (the know-nothing reference compare() wants)."""
    truth = sim.truth[~sim.truth.obs["is_control"].to_numpy()].copy()
    mean = MeanBaseline().fit(sim.adata).predict(truth.obs)
    return {"truth": truth, "mean": mean}


# ------------------------------------------------------------------ layout


@pytest.mark.parametrize("name", ["align", "de", "metrics", "report", "retrieval",
                                  "retrieval_table", "target_effect"])
def test_no_public_evaluate_module_is_left_to_be_shadowed(name):
    """The implementation modules are private: the public name is the function."""
    module = importlib.import_module(f"causalcell.evaluate._{name}")
    assert inspect.ismodule(module)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"causalcell.evaluate.{name}")
    public = getattr(evaluate, name, None)
    assert public is None or not inspect.ismodule(public)


# ------------------------------------------------------------------ one vocabulary


def _public_callables():
    for package in (evaluate, benchmark):
        for name in package.__all__:
            obj = getattr(package, name)
            if callable(obj):
                yield f"{package.__name__}.{name}", obj
    yield "causalcell.plot.pairwise_rank_matrix", plot.pairwise_rank_matrix


@pytest.mark.parametrize(("name", "function"), list(_public_callables()),
                         ids=[n for n, _ in _public_callables()])
def test_every_public_function_spells_the_rule_exclude(name, function):
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return
    for old in OLD_PARAMETERS & set(parameters):
        # kept for one release only: not given by default, documented as deprecated
        default = parameters[old].default
        assert default is None or type(default).__name__ == "_Deprecated", (name, old)
        assert "Deprecated name of ``exclude``" in inspect.getdoc(function), (name, old)
    if "exclude" in parameters:
        default = parameters["exclude"].default
        values = (default,) if isinstance(default, str) else tuple(default)
        assert set(values) <= set(RETRIEVAL_EXCLUDES), (name, default)
        assert values[0] == "targeted" or values == METRIC_EXCLUDES, (name, default)
        # the one documented vocabulary is inserted into the docstring
        assert "in one vocabulary across" in inspect.getdoc(function) or name.endswith(
            ("compare", "replicate_ceiling", "Selection", "pairwise_rank_matrix",
             "select")), name


def _check_table(table: pd.DataFrame, allowed=RETRIEVAL_EXCLUDES) -> None:
    assert not {"conditioning", "exclusion"} & set(table.columns)
    assert set(table["exclude"]) <= set(allowed)


def test_every_table_labels_its_rows_with_the_same_words(sim, predictions):
    truth = predictions["truth"]
    _check_table(evaluate.evaluate(truth, sim.adata, top_k=[5]), METRIC_EXCLUDES)
    _check_table(evaluate.replicate_ceiling(sim.adata, n_splits=1, top_k=[5]),
                 METRIC_EXCLUDES)
    ranks = evaluate.retrieval(truth, sim.adata, exclude=RETRIEVAL_EXCLUDES)
    _check_table(ranks)
    assert list(dict.fromkeys(ranks["exclude"])) == list(RETRIEVAL_EXCLUDES)
    cells = cc.data.sample_cells(truth, sim.adata, n_cells=3, random_state=0)
    _check_table(evaluate.edistance(cells, sim.adata), METRIC_EXCLUDES)
    table = evaluate.compare(predictions, sim.adata, top_k=[5], n_resamples=20)
    assert {"value [targeted]", "value [none]"} <= set(table.columns)
    assert not any("excluded" in c for c in table.columns)
    summary = evaluate.summarize(evaluate.evaluate(truth, sim.adata, top_k=[5]))
    assert set(summary["exclude"]) == set(METRIC_EXCLUDES)


def _same_after_warning(old_call, new_call):
    """The old spelling warns FutureWarning naming the new one and returns the same."""
    with pytest.warns(FutureWarning, match=r"exclude"):
        old = old_call()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        new = new_call()
    return old, new


def test_old_spellings_warn_and_give_identical_results(sim, predictions):
    truth = predictions["truth"]
    aligned = align(truth, sim.adata)
    P, T, targets = aligned.predicted, aligned.observed, aligned.targets

    old, new = _same_after_warning(
        lambda: evaluate.perturbation_metrics(P, T, targets, exclude=None, top_k=[5]),
        lambda: evaluate.perturbation_metrics(P, T, targets, exclude="none", top_k=[5]))
    pd.testing.assert_frame_equal(old, new)

    old, new = _same_after_warning(
        lambda: evaluate.evaluate(truth, sim.adata, exclude=("targeted", None), top_k=[5]),
        lambda: evaluate.evaluate(truth, sim.adata, exclude=("targeted", "none"), top_k=[5]))
    pd.testing.assert_frame_equal(old, new)

    for old_value, new_value in (("pair", "targeted"), ("query", "query"), ("all", "all")):
        old, new = _same_after_warning(
            lambda v=old_value: evaluate.pairwise_retrieval(P, T, targets, exclusion=v),
            lambda v=new_value: evaluate.pairwise_retrieval(P, T, targets, exclude=v))
        np.testing.assert_array_equal(old, new)
    # positional: the fifth argument is the rule, old values still translated
    old, new = _same_after_warning(
        lambda: evaluate.pairwise_retrieval(P, T, targets, "cosine", "pair"),
        lambda: evaluate.pairwise_retrieval(P, T, targets, "cosine", "targeted"))
    np.testing.assert_array_equal(old, new)

    old, new = _same_after_warning(
        lambda: evaluate.retrieval(truth, sim.adata, exclusion=["pair", "none"]),
        lambda: evaluate.retrieval(truth, sim.adata, exclude=["targeted", "none"]))
    pd.testing.assert_frame_equal(old, new)

    cells = cc.data.sample_cells(truth, sim.adata, n_cells=3, random_state=0)
    old, new = _same_after_warning(
        lambda: evaluate.edistance(cells, sim.adata, exclude=None),
        lambda: evaluate.edistance(cells, sim.adata, exclude="none"))
    pd.testing.assert_frame_equal(old, new)
    groups = evaluate._edistance.cell_groups(align(cells, sim.adata, aggregate_predicted=True),
                                             cells, sim.adata)
    old, new = _same_after_warning(
        lambda: evaluate.pairwise_edistances(*groups, targets, exclusion="pair"),
        lambda: evaluate.pairwise_edistances(*groups, targets, exclude="targeted"))
    for a, b in zip(old, new, strict=True):
        np.testing.assert_array_equal(a, b)

    old, new = _same_after_warning(
        lambda: evaluate.replicate_ceiling(sim.adata, n_splits=1, top_k=[5], exclude=None),
        lambda: evaluate.replicate_ceiling(sim.adata, n_splits=1, top_k=[5], exclude="none"))
    pd.testing.assert_frame_equal(old, new)


def test_old_selection_rule_warns_and_selects_the_same(sim):
    candidates = {"mean": MeanBaseline(), "control": cc.models.ControlBaseline()}
    with pytest.warns(FutureWarning, match="exclude"):
        old = benchmark.Selection(candidates, conditioning="targeted excluded").fit(sim.adata)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        new = benchmark.Selection(candidates, exclude="targeted").fit(sim.adata)
    assert old.selected_ == new.selected_
    pd.testing.assert_series_equal(old.scores_, new.scores_)


def test_unknown_rules_and_both_names_are_our_errors(sim, predictions):
    truth = predictions["truth"]
    with pytest.raises(ParameterError, match=r"exclude='query' is unknown.*'targeted', 'none'"):
        evaluate.evaluate(truth, sim.adata, exclude="query")
    with pytest.raises(ParameterError, match="exclude='some' is unknown"):
        evaluate.retrieval(truth, sim.adata, exclude="some")
    with pytest.raises(ParameterError, match="without repeats"):
        evaluate.evaluate(truth, sim.adata, exclude=("targeted", "targeted"))
    with pytest.raises(ParameterError, match="exclusion= is the old name of exclude="):
        evaluate.retrieval(truth, sim.adata, exclusion="pair", exclude="none")


# ------------------------------------------------------------------ the aligned object


OPTIONS = [
    {},
    {"reference": "perturbed_mean"},
    {"join": "inner", "layer": "counts_free", "predicted_layer": None},
]


@pytest.fixture(scope="module")
def layered(sim, predictions):
    """Observed cells whose expression also sits in a layer (the X of a copy is
    scrambled, so a score that read X instead of the layer would differ)."""
    observed = sim.adata.copy()
    observed.layers["counts_free"] = observed.X.copy()
    rng = np.random.default_rng(0)
    observed.X = rng.permutation(np.asarray(observed.X), axis=1)
    return observed


@pytest.mark.parametrize("options", OPTIONS, ids=["defaults", "perturbed_mean", "layer"])
def test_aligned_in_equals_anndata_in(sim, predictions, layered, options):
    observed = layered if "layer" in options else sim.adata
    aligned = align(predictions["truth"], observed, **options)
    assert dict(aligned.options) == {**dict.fromkeys(ALIGN_OPTIONS), "reference": "control",
                                     "join": "exact", "aggregate_predicted": False, **options}

    direct = evaluate.evaluate(predictions["truth"], observed, top_k=[5], **options)
    via = evaluate.evaluate(aligned, observed, top_k=[5])
    pd.testing.assert_frame_equal(direct, via)
    assert direct.attrs == via.attrs
    if "layer" in options:  # the DE test read the layer too, not the scrambled X
        plain = evaluate.evaluate(predictions["truth"], sim.adata, top_k=[5], join="inner")
        pd.testing.assert_frame_equal(via, plain)

    direct = evaluate.retrieval(predictions["truth"], observed, exclude=RETRIEVAL_EXCLUDES,
                                orientation=["prediction", "observed"], **options)
    via = evaluate.retrieval(aligned, exclude=RETRIEVAL_EXCLUDES,
                             orientation=["prediction", "observed"])
    pd.testing.assert_frame_equal(direct, via)
    assert direct.attrs == via.attrs

    both = {name: align(pred, observed, **options) for name, pred in predictions.items()}
    direct = evaluate.compare(predictions, observed, top_k=[5], n_resamples=50, **options)
    via = evaluate.compare(both, observed, top_k=[5], n_resamples=50)
    pd.testing.assert_frame_equal(direct, via)


def test_aligned_without_observed_needs_no_de_test(sim, predictions):
    aligned = align(predictions["truth"], sim.adata)
    by_change = evaluate.evaluate(aligned, de_method=None, top_k=[5])
    pd.testing.assert_frame_equal(
        by_change, evaluate.evaluate(predictions["truth"], sim.adata, de_method=None, top_k=[5]))
    with pytest.raises(ParameterError, match="pass observed="):
        evaluate.evaluate(aligned, top_k=[5])


def test_alignment_options_belong_to_align(sim, predictions):
    truth = predictions["truth"]
    aligned = align(truth, sim.adata)
    with pytest.raises(ParameterError, match=r"\['reference'\] are options of align\(\)"):
        evaluate.evaluate(aligned, sim.adata, reference="perturbed_mean")
    with pytest.raises(ParameterError, match="options of align"):
        evaluate.retrieval(aligned, join="inner")
    with pytest.raises(ParameterError, match=r"unknown option\(s\) \['refrence'\]"):
        evaluate.evaluate(truth, sim.adata, refrence="control")
    with pytest.raises(ParameterError, match="E-distances compare the cells"):
        evaluate.retrieval(aligned, distance="edistance")
    with pytest.raises(DataContractError, match="observed data must be an AnnData"):
        evaluate.retrieval(truth)
    other = {"truth": aligned,
             "mean": align(predictions["mean"], sim.adata, reference="perturbed_mean")}
    with pytest.raises(ParameterError, match="aligned with different options"):
        evaluate.compare(other, sim.adata, top_k=[5], n_resamples=5)


def test_aligned_subset_keeps_its_options(sim, predictions):
    aligned = align(predictions["truth"], sim.adata, reference="perturbed_mean")
    assert aligned.subset(np.arange(3)).options == aligned.options
    assert isinstance(aligned.subset(np.arange(3)), Aligned)


def test_inputs_are_left_as_they_were(sim, predictions):
    truth = predictions["truth"]
    before = truth.copy()
    aligned = align(truth, sim.adata)
    predicted_before = aligned.predicted.copy()
    evaluate.evaluate(aligned, sim.adata, top_k=[5])
    evaluate.retrieval(aligned)
    np.testing.assert_array_equal(aligned.predicted, predicted_before)
    np.testing.assert_array_equal(truth.X, before.X)
    pd.testing.assert_frame_equal(truth.obs, before.obs)
    assert isinstance(truth, ad.AnnData)


def test_tables_of_the_previous_release_are_read_with_a_warning(sim, predictions):
    table = evaluate.evaluate(predictions["truth"], sim.adata, top_k=[5], retrieval=False)
    old = table.rename(columns={"exclude": "conditioning"})
    old["conditioning"] = old["conditioning"].replace({"targeted": "targeted excluded"})
    kept = old.copy()
    with pytest.warns(FutureWarning, match="'conditioning' is now 'exclude'"):
        summary = evaluate.summarize(old)
    pd.testing.assert_frame_equal(summary, evaluate.summarize(table))
    pd.testing.assert_frame_equal(old, kept)  # the caller's table is left as it was


def test_the_option_list_is_the_signature_of_align():
    """AlignOptions lists exactly the keyword options of align(), so the two cannot drift."""
    keywords = [name for name, p in inspect.signature(align).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert list(ALIGN_OPTIONS) == keywords
    for function in (evaluate.evaluate, evaluate.compare, evaluate.retrieval):
        parameters = inspect.signature(function).parameters
        assert not set(ALIGN_OPTIONS) & set(parameters)  # no second copy of the list
        assert parameters["align_options"].kind is inspect.Parameter.VAR_KEYWORD
