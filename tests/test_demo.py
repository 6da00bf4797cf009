"""causalcell.demo: the Sachs graph comparison, the verdict line and the demo figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import networkx as nx
import pandas as pd
import pytest

from causalcell import plot
from causalcell.demo import ModelComparison, compare_models, demo_comparison, graph_verdict
from causalcell.errors import ParameterError

A, B = "conditional GRN (a)", "conditional GRN (b)"


def _result(mse: dict, pearson: dict) -> ModelComparison:
    rows = [{"metric": "mse", "model": m, "higher_is_better": False,
             "value [targeted excluded]": v} for m, v in mse.items()]
    rows += [{"metric": "pearson_delta", "model": m, "higher_is_better": True,
              "value [targeted excluded]": v} for m, v in pearson.items()]
    return ModelComparison(table=pd.DataFrame(rows), held_out=["p1", "p2", "p3"],
                           fit_seconds={})


def test_verdict_names_the_winner_and_the_margin():
    line = graph_verdict(_result({A: 0.8, B: 1.0, "mean": 0.9}, {A: 0.5, B: 0.2, "mean": 0.1}),
                         A, B)
    assert line.startswith("Verdict on 3 held-out interventions (targeted excluded): the a ")
    assert "mse a 0.800 vs b 1.000 (20% lower)" in line
    assert "pearson_delta a 0.500 vs b 0.200 (+0.300)" in line
    assert "on each metric the better of the two graphs beats the best baseline" in line


def test_verdict_says_when_no_graph_beats_the_baseline():
    line = graph_verdict(_result({A: 1.1, B: 1.0, "mean": 0.5}, {A: 0.1, B: 0.2, "mean": 0.3}),
                         A, B)
    assert "the b predicts better on every metric" in line
    assert "neither graph beats the best baseline" in line
    mixed = graph_verdict(_result({A: 0.9, B: 1.0, "mean": 0.5}, {A: 0.1, B: 0.2, "mean": 0.3}),
                          A, B)
    assert "mixed" in mixed


def test_verdict_rejects_unknown_models():
    with pytest.raises(ParameterError, match="not in the comparison"):
        graph_verdict(_result({A: 1.0}, {A: 0.1}), A, B)


@pytest.fixture(scope="module")
def sachs() -> ModelComparison:
    result, _ = demo_comparison("sachs", verbose=False)
    return result


def test_sachs_has_both_graphs_and_learns_on_training_only(sachs):
    assert {"conditional GRN (consensus graph)", "conditional GRN (learned graph)"} <= set(
        sachs.predictions)
    assert len(sachs.held_out) == 4
    learned = sachs.networks["conditional GRN (learned graph)"]
    assert learned.number_of_edges() > 0
    values = sachs.table.set_index(["metric", "model"])["value [targeted excluded]"]
    assert values["mse", "conditional GRN (consensus graph)"] != values[
        "mse", "conditional GRN (learned graph)"]


def test_learned_network_never_sees_held_out_perturbations():
    from causalcell import datasets

    sim = datasets.simulate(n_genes=40, n_tfs=6, n_cells_per_perturbation=20, random_state=1)
    seen = {}

    def learner(train):
        seen["labels"] = set(train.obs["perturbation"])
        return sim.network

    result = compare_models(sim.adata, sim.network, extra_networks={"learned": learner},
                            verbose=False)
    held = {key.split(" [")[0] for key in result.held_out}
    assert held
    assert not held & seen["labels"]
    assert result.networks["conditional GRN (learned)"] is sim.network
    with pytest.raises(ParameterError, match="used twice"):
        compare_models(sim.adata, sim.network, network_name="x",
                       extra_networks={"x": nx.DiGraph()}, verbose=False)


def test_demo_figures_have_the_expected_artists(sachs):
    fig = plot.conditioning_comparison(sachs.table)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3  # pearson_delta, mse, retrieval_rank on Sachs (no top-k DE)
    assert all(len(ax.lines) == len(sachs.predictions) for ax in panels)
    plt.close(fig)
    ax = plot.predicted_vs_observed(sachs.predictions["conditional GRN (consensus graph)"],
                                    sachs.observed, "pkc [inhibition]")
    assert len(ax.collections[0].get_offsets()) == 10  # 11 proteins, pkc is the target
    assert len(ax.collections[1].get_offsets()) == 1
    plt.close(ax.figure)
