"""Figures render and carry the expected artists."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import FancyArrowPatch

from causalcell import plot
from causalcell.datasets import simulate
from causalcell.errors import NetworkError, ParameterError
from causalcell.evaluate import target_effect


@pytest.fixture(scope="module")
def sim():
    return simulate(n_genes=60, n_tfs=8, n_combinations=2, random_state=3)


def test_target_effect_plot_marks_each_target(sim):
    ax = plot.target_effect(sim.adata, max_perturbations=5)
    table = target_effect(sim.adata)
    per_perturbation = table.groupby("perturbation")["target_change"].apply(
        lambda s: s.abs().max()
    )
    shown = [t.get_text() for t in ax.get_yticklabels()]
    assert len(shown) == 5
    # the five perturbations with the largest target change, in increasing order
    assert shown == list(per_perturbation.sort_values().index[-5:])
    diamonds = [c for c in ax.collections if isinstance(c, PathCollection)][-1]
    np.testing.assert_allclose(diamonds.get_offsets()[:, 0], per_perturbation[shown].to_numpy())
    assert ax.get_legend() is not None
    plt.close("all")


def test_intervention_graph_draws_cut_edges_dashed():
    G = nx.DiGraph()
    G.add_weighted_edges_from([("A", "T", 1.0), ("B", "T", -0.5), ("T", "C", 0.7), ("C", "D", 1)])
    before = nx.to_dict_of_dicts(G)
    ax = plot.intervention_graph(G, "T", radius=1)
    assert nx.to_dict_of_dicts(G) == before  # input untouched
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    dashed = [p for p in arrows if p.get_linestyle() not in ("-", "solid")]
    assert len(arrows) == 3  # A->T, B->T (cut) and T->C; D is two steps away
    assert len(dashed) == 2
    assert "do(T)" in ax.get_title()
    with pytest.raises(NetworkError, match="None of the targets"):
        plot.intervention_graph(G, "ZZZ")
    # A larger neighbourhood is cut to the targets' strongest links, and says so.
    ax = plot.intervention_graph(G, "T", radius=3, max_nodes=3)
    assert {t.get_text() for t in ax.texts} == {"T", "A", "C"}  # |1.0|, |0.7| beat |-0.5|
    assert "3 of the 5 genes within 3 edges" in ax.get_title()
    with pytest.raises(ParameterError, match="max_nodes"):
        plot.intervention_graph(G, ["T", "C"], max_nodes=1)
    plt.close("all")


# --------------------------------------------------------------------------- comparisons


@pytest.fixture(scope="module")
def predictions(sim):
    """The truth and three baselines, predicted for every observed perturbation."""
    import warnings

    from causalcell.benchmark import observed_request
    from causalcell.models import ControlBaseline, MeanBaseline, TargetOnlyBaseline

    request = observed_request(sim.adata[~sim.adata.obs["is_control"].to_numpy()])
    out = {"truth": sim.truth}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unmeasured-target warnings are not the point here
        for name, model in (("target only", TargetOnlyBaseline), ("mean", MeanBaseline),
                            ("control", ControlBaseline)):
            out[name] = model().fit(sim.adata, sim.network).predict(request)
    return out


@pytest.fixture(scope="module")
def comparison(sim, predictions):
    from causalcell.evaluate import compare

    return compare(predictions, sim.adata, top_k=[5, 20])


def _naive_reordered(rows, conds):
    """Models whose order against another model differs between conditionings."""
    ranks = {m: [r[f"rank [{c}]"] for c in conds] for m, r in rows.set_index("model").iterrows()}
    out = set()
    for a in ranks:
        for b in ranks:
            signs = {np.sign(ra - rb) for ra, rb in zip(ranks[a], ranks[b], strict=True)}
            if len(signs) > 1:
                out.add(a)
    return out


def test_conditioning_comparison_one_line_per_model(comparison):
    fig = plot.conditioning_comparison(comparison)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split(":")[0] for ax in panels] == list(plot.DEFAULT_METRICS)
    models = list(dict.fromkeys(comparison["model"]))
    conds = ["none", "targeted"]
    for ax in panels:
        metric = ax.get_title().split(":")[0]
        rows = comparison[comparison["metric"] == metric]
        assert [line.get_label() for line in ax.lines] == models
        assert [t.get_text() for t in ax.get_xticklabels()] == conds
        for line, (_, row) in zip(ax.lines, rows.iterrows(), strict=True):
            np.testing.assert_allclose(line.get_ydata(), [row[f"value [{c}]"] for c in conds])
        thick = {line.get_label() for line in ax.lines if line.get_linewidth() > 2}
        assert thick == _naive_reordered(rows, conds)
        # up is better everywhere
        assert ax.yaxis_inverted() == (not rows["higher_is_better"].iloc[0])
        assert ax.get_title().endswith("ranking changes" if rows["rank_changed"].any()
                                       else "ranking unchanged")
    # The point of the figure on this simulation: predicting only the target wins
    # pearson_delta against the mean baseline until the targeted genes are excluded.
    pearson = panels[0]
    assert {"target only", "mean"} <= {line.get_label() for line in pearson.lines
                                       if line.get_linewidth() > 2}
    assert fig.legends
    plt.close("all")


def test_rank_labels_are_spread_a_gap_apart_around_their_values():
    from causalcell.plot import _spread

    np.testing.assert_allclose(_spread(np.array([0.0, 0.01, 1.0]), 0.1), [-0.045, 0.055, 1.0])
    # A run that grows into its neighbour merges with it; NaN stays NaN.
    out = _spread(np.array([0.0, 0.0, 0.0, 0.15, np.nan]), 0.1)
    np.testing.assert_allclose(out[:4], [-0.1125, -0.0125, 0.0875, 0.1875])
    assert np.isnan(out[4])
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = rng.normal(size=12)
        placed = np.sort(_spread(values, 0.3))
        assert (np.diff(placed) >= 0.3 - 1e-12).all()
        assert abs(placed.mean() - values.mean()) < 1e-9  # runs stay centred on their values


def test_conditioning_comparison_axes_and_errors(comparison):
    _, ax = plt.subplots()
    assert plot.conditioning_comparison(comparison, "mse", ax=ax) is ax
    assert len(ax.lines) == comparison["model"].nunique()
    with pytest.raises(ParameterError, match="need as many Axes"):
        plot.conditioning_comparison(comparison, ["mse", "mae"], ax=ax)
    with pytest.raises(ParameterError, match="Unknown metric"):
        plot.conditioning_comparison(comparison, "nope")
    with pytest.raises(ParameterError, match="columns"):
        plot.conditioning_comparison(comparison.drop(columns="rank_changed"))
    one = comparison.drop(columns=["value [none]", "rank [none]"])
    with pytest.raises(ParameterError, match="needs two"):
        plot.conditioning_comparison(one)
    plt.close("all")


# --------------------------------------------------------------------------- retrieval


def test_retrieval_ranks_boxes_points_and_chance(sim, predictions):
    import pandas as pd

    from causalcell.evaluate import retrieval

    exclusions = ["targeted", "none", "query"]
    table = pd.concat([retrieval(predictions[m], sim.adata, exclude=exclusions).assign(model=m)
                       for m in ("truth", "mean")], ignore_index=True)
    ax = plot.retrieval_ranks(table)
    boxes = [p for p in ax.patches if type(p).__name__ == "PathPatch"]
    assert len(boxes) == 2 * 3
    chance = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(chance) == 1
    assert list(chance[0].get_ydata()) == [0.5, 0.5]
    points = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    np.testing.assert_allclose(np.sort(points), np.sort(table["rank"].to_numpy()))
    # medians, drawn exclusion by exclusion in the order none, query, pair
    medians = [line.get_ydata()[0] for line in ax.lines if line.get_gid() == "median"]
    expected = [table[(table.model == m) & (table.exclude == e)]["rank"].median()
                for e in ("none", "query", "targeted") for m in ("truth", "mean")]
    np.testing.assert_allclose(medians, expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["truth", "mean"]
    mixed = table.assign(distance=np.where(np.arange(len(table)) % 2, "cosine", "euclidean"))
    with pytest.raises(ParameterError, match="several distances"):
        plot.retrieval_ranks(mixed)
    with pytest.raises(ParameterError, match="columns"):
        plot.retrieval_ranks(table.drop(columns="rank"))
    plt.close("all")


def test_pairwise_rank_matrix_is_the_beats_matrix(sim, predictions):
    from causalcell.evaluate import align, pairwise_retrieval

    ax = plot.pairwise_rank_matrix(predictions["target only"], sim.adata, exclude="query")
    aligned = align(predictions["target only"], sim.adata)
    ranks, beats = pairwise_retrieval(aligned.predicted, aligned.observed, aligned.targets,
                                      exclude="query", return_matrix=True)
    order = np.argsort(ranks, kind="stable")
    np.testing.assert_array_equal(ax.images[0].get_array(), beats[np.ix_(order, order)])
    assert [t.get_text() for t in ax.get_yticklabels()] == list(aligned.perturbations[order])
    assert f"mean rank {ranks.mean():.3f}" in ax.get_title()
    assert "exclude='query'" in ax.get_title()
    plt.close("all")


# --------------------------------------------------------------------------- one perturbation


def test_predicted_vs_observed_marks_targets_red(sim, predictions):
    from matplotlib.colors import to_rgba

    from causalcell.evaluate import align

    ax = plot.predicted_vs_observed(predictions["target only"], sim.adata, "TF01,TF04")
    aligned = align(predictions["target only"], sim.adata)
    row = list(aligned.perturbations).index("TF01,TF04")
    pred, obs = aligned.predicted[row], aligned.observed[row]
    targeted = np.isin(aligned.genes, ["TF01", "TF04"])
    others, red = ax.collections[:2]
    assert len(others.get_offsets()) == len(aligned.genes) - 2
    np.testing.assert_allclose(red.get_offsets(), np.column_stack([obs, pred])[targeted])
    np.testing.assert_allclose(red.get_facecolor()[0], to_rgba(plot.TARGET_COLOR))
    assert sorted(t.get_text() for t in ax.texts) == ["TF01", "TF04"]
    r_all = np.corrcoef(pred, obs)[0, 1]
    # Off its targets the target-only prediction is zero up to rounding: the
    # conditioned correlation is undefined (not a number made of rounding noise).
    assert np.abs(pred[~targeted]).max() < 1e-12
    assert f"r = {r_all:.2f} all genes, undefined targeted excluded" in ax.get_title()
    assert r_all > 0.3  # the target carries the unconditioned score
    with pytest.raises(ParameterError, match="not among"):
        plot.predicted_vs_observed(predictions["truth"], sim.adata, "NOPE")
    plt.close("all")


def test_target_effect_without_measured_targets_is_a_contract_error():
    import anndata as ad
    import pandas as pd

    from causalcell.errors import DataContractError, UnmeasuredTargetWarning
    from causalcell.plot import target_effect

    obs = pd.DataFrame(
        {
            "perturbation": ["control", "control", "ZZZ", "ZZZ"],
            "is_control": [True, True, False, False],
            "perturbation_type": ["control", "control", "knockout", "knockout"],
        },
        index=[f"c{i}" for i in range(4)],
    )
    adata = ad.AnnData(np.ones((4, 3)), obs=obs, var=pd.DataFrame(index=["A", "B", "C"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)  # ZZZ: said once, expected
        with pytest.raises(DataContractError, match="measured gene"):
            target_effect(adata)
