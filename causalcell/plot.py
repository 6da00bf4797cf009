"""Figures that explain the causal framing. Every function returns matplotlib objects.

Import cost is paid only here: nothing else in causalcell imports matplotlib.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from causalcell.data.contract import PERTURBATION
from causalcell.data.interventions import Interventions
from causalcell.data.pseudobulk import changes
from causalcell.errors import NetworkError, ParameterError
from causalcell.graph.intervene import intervene

__all__ = ["intervention_graph", "target_effect"]

TARGET_COLOR = "#c0392b"
OTHER_COLOR = "#7f8c8d"


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=size)
    return new


def target_effect(
    adata: AnnData,
    *,
    layer: str | None = None,
    max_perturbations: int = 30,
    ax: Axes | None = None,
) -> Axes:
    """How far each targeted gene moves compared with every other gene.

    One row per perturbation with a measured target: a box of the absolute
    changes of all untargeted genes (whiskers to the 1st / 99th percentile),
    the largest of them as a grey dot, and the targeted gene's own absolute
    change as a red diamond. Rows are sorted by the target's change.

    Parameters
    ----------
    adata
        Cells or pseudobulk rows following the data contract, with controls.
    layer
        Layer with log-normalized expression; ``None`` uses ``X``.
    max_perturbations
        Show at most this many perturbations (those with the largest target
        change).
    ax
        Axes to draw on; a new figure is made when None.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    DataContractError
        If there are no controls or no measured target.
    """
    delta = changes(adata, layer=layer)
    iv = Interventions.from_adata(delta, warn_unmeasured=False)
    values = np.abs(np.asarray(delta.X))
    has_target = np.diff(iv.mask.indptr) > 0
    rows = np.flatnonzero(has_target)
    if len(rows) == 0:
        raise ParameterError("No perturbation targets a measured gene: nothing to plot.")
    entry_row = np.repeat(np.arange(len(values)), np.diff(iv.mask.indptr))
    target_max = np.full(len(values), -np.inf)
    np.maximum.at(target_max, entry_row, values[entry_row, iv.mask.indices])
    order = rows[np.argsort(target_max[rows], kind="stable")][-max_perturbations:]
    others: list[np.ndarray] = []
    for i in order:  # one iteration per shown row (at most max_perturbations)
        cols = iv.mask.indices[iv.mask.indptr[i] : iv.mask.indptr[i + 1]]
        keep = np.ones(values.shape[1], dtype=bool)
        keep[cols] = False
        others.append(values[i, keep])
    ax = _axes(ax, (7, 0.3 * len(order) + 1.5))
    positions = np.arange(len(order))
    ax.boxplot(
        others, positions=positions, orientation="horizontal", whis=(1, 99), showfliers=False,
        widths=0.6, patch_artist=True,
        boxprops={"facecolor": "#ecf0f1", "edgecolor": OTHER_COLOR},
        medianprops={"color": OTHER_COLOR}, whiskerprops={"color": OTHER_COLOR},
        capprops={"color": OTHER_COLOR},
    )
    ax.scatter([o.max() for o in others], positions, color=OTHER_COLOR, s=14, zorder=3,
               label="largest untargeted gene")
    ax.scatter(target_max[order], positions, color=TARGET_COLOR, marker="D", s=30, zorder=4,
               label="targeted gene itself")
    ax.set_yticks(positions, delta.obs[PERTURBATION].to_numpy()[order])
    ax.set_xlabel("|change| vs control (log-normalized expression)")
    ax.set_title("The targeted gene moves far more than any other gene")
    ax.legend(loc="lower right", frameon=False)
    return ax


def intervention_graph(
    G: nx.DiGraph,
    targets: Hashable | Iterable[Hashable],
    *,
    radius: int = 1,
    max_nodes: int = 60,
    ax: Axes | None = None,
) -> Axes:
    """Draw the network around the targets with the do-operator applied.

    Columns from left to right: regulators upstream of the targets, the
    targets, genes downstream (by directed distance). Targets are red; the
    incoming edges that the intervention cuts are drawn
    dashed and faded; kept edges are solid, coloured by the sign of their
    ``weight`` (activation blue, repression orange).

    Parameters
    ----------
    G
        The network (not modified).
    targets
        A gene or genes.
    radius
        Include genes up to this many edges away from a target (both
        directions).
    max_nodes
        Refuse to draw larger neighbourhoods (they are unreadable); lower
        ``radius`` instead.
    ax
        Axes to draw on; a new figure is made when None.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    NetworkError
        If no target is in ``G``, or the neighbourhood exceeds ``max_nodes``.
    """
    wanted = [targets] if isinstance(targets, str) or not isinstance(targets, Iterable) else list(
        targets
    )
    present = [t for t in wanted if t in G]
    if not present:
        raise NetworkError(f"None of the targets {wanted} is a node of the network.")
    undirected = G.to_undirected(as_view=True)
    nodes: set = set()
    for t in present:
        nodes |= set(nx.single_source_shortest_path_length(undirected, t, cutoff=radius))
    if len(nodes) > max_nodes:
        raise NetworkError(
            f"The radius-{radius} neighbourhood of {present} has {len(nodes)} genes (more than "
            f"max_nodes={max_nodes}); lower radius or raise max_nodes."
        )
    sub = G.subgraph(nodes)
    after = intervene(sub, present)
    cut = [e for e in sub.edges if not after.has_edge(*e)]
    kept = list(after.edges)
    ax = _axes(ax, (7, 5))
    pos = _layered_layout(sub, present, radius)
    colors = [
        "#2471a3" if after.edges[e].get("weight", 1.0) >= 0 else "#e67e22" for e in kept
    ]
    nx.draw_networkx_edges(sub, pos, edgelist=kept, edge_color=colors, ax=ax, arrows=True,
                           arrowsize=12)
    nx.draw_networkx_edges(sub, pos, edgelist=cut, style="dashed", edge_color=OTHER_COLOR,
                           alpha=0.6, ax=ax, arrows=True, arrowsize=12)
    node_colors = [TARGET_COLOR if n in present else "#d6eaf8" for n in sub.nodes]
    nx.draw_networkx_nodes(sub, pos, node_color=node_colors, edgecolors="#34495e", ax=ax)
    nx.draw_networkx_labels(sub, pos, font_size=8, ax=ax)
    handles = [
        Line2D([], [], color=TARGET_COLOR, marker="o", linestyle="", label="target (do)"),
        Line2D([], [], color="#2471a3", label="activation"),
        Line2D([], [], color="#e67e22", label="repression"),
        Line2D([], [], color=OTHER_COLOR, linestyle="--", label="cut by the intervention"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              fontsize=8)
    ax.set_title(f"Intervention graph: do({', '.join(map(str, present))})")
    ax.set_axis_off()
    return ax


def _layered_layout(G: nx.DiGraph, targets: list, radius: int) -> dict:
    """Columns by signed directed distance to the targets: upstream < 0 < downstream."""
    def hops(graph: nx.DiGraph) -> dict:
        # Count edges, not weights: regulation weights are not distances.
        return nx.multi_source_dijkstra_path_length(
            graph, set(targets), cutoff=radius, weight=lambda u, v, d: 1
        )

    down, up = hops(G), hops(G.reverse(copy=False))
    layers = {}
    for node in G.nodes:
        if node in down:
            layers[node] = down[node]
        elif node in up:
            layers[node] = -up[node]
        else:  # linked to a target only through undirected paths
            layers[node] = radius + 1
    columns: dict[int, list] = {}
    for node in sorted(layers, key=str):
        columns.setdefault(layers[node], []).append(node)
    pos = {}
    for layer, members in columns.items():
        ys = np.linspace(1.0, -1.0, len(members)) if len(members) > 1 else np.zeros(1)
        for node, y in zip(members, ys, strict=True):
            pos[node] = np.array([float(layer), float(y)])
    return pos
