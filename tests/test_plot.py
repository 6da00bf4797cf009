"""Figures render and carry the expected artists."""

from __future__ import annotations

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import FancyArrowPatch

from causalcell import plot
from causalcell.datasets import simulate
from causalcell.errors import NetworkError
from causalcell.evaluate import target_effect


@pytest.fixture(scope="module")
def sim():
    return simulate(n_genes=60, n_tfs=8, n_combinations=2, seed=3)


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
    with pytest.raises(NetworkError, match="max_nodes"):
        plot.intervention_graph(G, "T", radius=3, max_nodes=3)
    plt.close("all")
