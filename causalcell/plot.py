"""Figures that explain the causal framing. Every function returns matplotlib objects.

Import cost is paid only here: nothing else in causalcell imports matplotlib.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from causalcell._validation import DEPRECATED, is_int, renamed
from causalcell.data.contract import PERTURBATION, PERTURBATION_TYPE
from causalcell.errors import DataContractError, NetworkError, ParameterError
from causalcell.evaluate import (
    DoseResponseScores,
    align,
    pairwise_retrieval,
    perturbation_metrics,
)
from causalcell.evaluate._exclude import current_table, means_by_exclude
from causalcell.evaluate._target_effect import target_entries
from causalcell.graph import intervene

__all__ = [
    "conditioning_comparison",
    "dose_response",
    "evaluation_summary",
    "intervention_graph",
    "pairwise_rank_matrix",
    "predicted_vs_observed",
    "response_curves",
    "retrieval_ranks",
    "target_effect",
]

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
    adata, layer
        As in :func:`causalcell.evaluate.target_effect` (the changes drawn
        are the ones it ranks).
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
        If there are no controls, or no perturbation targets a measured gene
        (as :func:`causalcell.evaluate.target_effect`).
    """
    delta, iv, entry_row, entry_col = target_entries(adata, layer)
    values = np.abs(np.asarray(delta.X))
    rows = np.flatnonzero(np.diff(iv.mask.indptr) > 0)
    if len(rows) == 0:
        raise DataContractError(
            "No perturbation targets a measured gene (var_names), so there is no target "
            "effect to plot."
        )
    target_max = np.full(len(values), -np.inf)
    np.maximum.at(target_max, entry_row, values[entry_row, entry_col])
    order = rows[np.argsort(target_max[rows], kind="stable")][-max_perturbations:]
    others: list[np.ndarray] = []
    for i in order:  # one iteration per shown row (at most max_perturbations)
        cols = iv.mask.indices[iv.mask.indptr[i] : iv.mask.indptr[i + 1]]
        keep = np.ones(values.shape[1], dtype=bool)
        keep[cols] = False
        others.append(values[i, keep])
    ax = _axes(ax, (7, 0.3 * len(order) + 1.8))
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
    ax.set_yticks(positions, _row_labels(delta.obs)[order])
    label = "|change| vs control (log-normalized expression)"
    if len(order) < len(rows):  # a cap is stated, never silent
        label += (f"\nshowing the {len(order)} of {len(rows)} perturbations with the largest "
                  f"target change (max_perturbations={max_perturbations})")
    ax.set_xlabel(label)
    ax.set_title("The targeted gene moves far more than any other gene")
    # Outside the axes: inside, the legend would cover the markers of some row.
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    return ax


def _row_labels(obs: pd.DataFrame) -> np.ndarray:
    """Perturbation labels, with the kind added where a label is not unique (Sachs:
    ``pkc`` inhibited and activated become ``pkc [inhibition]``, ``pkc [activation]``)."""
    labels = obs[PERTURBATION].astype(str).to_numpy()
    if PERTURBATION_TYPE not in obs.columns:
        return labels
    kinds = obs[PERTURBATION_TYPE].astype(str).to_numpy()
    repeated = pd.Series(labels).duplicated(keep=False).to_numpy()
    return np.where(repeated, np.char.add(np.char.add(labels, " ["),
                                          np.char.add(kinds.astype(str), "]")), labels)


def intervention_graph(
    G: nx.DiGraph,
    targets: Hashable | Iterable[Hashable],
    *,
    radius: int = 1,
    max_nodes: int = 16,
    ax: Axes | None = None,
) -> Axes:
    """Draw the network around the targets with the do-operator applied.

    Columns from left to right: regulators upstream of the targets, the
    targets, genes downstream (by directed distance); a column with more
    genes than fit one above another is wrapped into several. Targets are
    red; the incoming edges that the intervention cuts are drawn dashed and
    faded; kept edges are solid, coloured by the sign of their ``weight``
    (activation blue, repression orange). Gene names are written inside the
    nodes, which are sized to hold the longest name.

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
        Draw at most this many genes: the targets, then the genes nearest to
        them, among equally near ones those with the strongest edge
        (largest ``|weight|``) towards the genes already nearer. The title
        says how many of the neighbourhood's genes are shown.
    ax
        Axes to draw on; a new figure is made when None.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    NetworkError
        If no target is in ``G``.
    ParameterError
        ``max_nodes`` smaller than the number of targets in ``G``.
    """
    wanted = [targets] if isinstance(targets, str) or not isinstance(targets, Iterable) else list(
        targets
    )
    present = [t for t in wanted if t in G]
    if not present:
        raise NetworkError(f"None of the targets {wanted} is a node of the network.")
    if not is_int(max_nodes) or max_nodes < len(present):
        raise ParameterError(f"max_nodes={max_nodes!r} must be an integer of at least the "
                             f"{len(present)} targets in the network; raise max_nodes.")
    distance = nx.multi_source_dijkstra_path_length(
        G.to_undirected(as_view=True), set(present), cutoff=radius, weight=lambda u, v, d: 1)
    shown = _most_relevant(G, distance, max_nodes)
    sub = G.subgraph(shown)
    after = intervene(sub, present)
    cut = [e for e in sub.edges if not after.has_edge(*e)]
    kept = list(after.edges)
    ax = _axes(ax, (7, 5))
    longest = max(len(str(n)) for n in sub.nodes)
    diameter = max(30.0, 7 * 0.62 * longest + 10.0)  # points: the name fits inside
    node_size = diameter**2
    pos = _layered_layout(sub, present, radius, per_column=max(3, int(300 / (1.5 * diameter))))
    colors = [
        "#2471a3" if after.edges[e].get("weight", 1.0) >= 0 else "#e67e22" for e in kept
    ]
    # A pair of opposite edges (A -> B, B -> A) is drawn as two arcs, so that a
    # cut edge is never hidden under the kept edge going the other way.
    def arcs(edges: list) -> tuple[list, list]:
        paired = [e for e in edges if sub.has_edge(e[1], e[0])]
        return [e for e in edges if not sub.has_edge(e[1], e[0])], paired

    for edges, style, color_of, alpha in (
        (kept, "solid", dict(zip(kept, colors, strict=True)), 1.0),
        (cut, "dashed", dict.fromkeys(cut, OTHER_COLOR), 0.8),
    ):
        for part, rad in zip(arcs(edges), (0.0, 0.2), strict=True):
            if part:
                nx.draw_networkx_edges(
                    sub, pos, edgelist=part, edge_color=[color_of[e] for e in part],
                    style=style, alpha=alpha, ax=ax, arrows=True, arrowsize=12,
                    node_size=node_size, connectionstyle=f"arc3,rad={rad}",
                )
    node_colors = [TARGET_COLOR if n in present else "#d6eaf8" for n in sub.nodes]
    nx.draw_networkx_nodes(sub, pos, node_color=node_colors, edgecolors="#34495e", ax=ax,
                           node_size=node_size)
    nx.draw_networkx_labels(sub, pos, font_size=7, ax=ax,
                            font_color={n: "white" if n in present else "black"
                                        for n in sub.nodes})
    # The legend names only what the figure draws.
    kinds = [("#2471a3", "activation"), ("#e67e22", "repression")]
    handles = [Line2D([], [], color=TARGET_COLOR, marker="o", linestyle="", label="target (do)")]
    handles += [Line2D([], [], color=color, label=label) for color, label in kinds
                if color in colors]
    if cut:
        handles.append(Line2D([], [], color=OTHER_COLOR, linestyle="--",
                              label="cut by the intervention"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              fontsize=8)
    title = f"Intervention graph: do({', '.join(map(str, present))})"
    if len(shown) < len(distance):  # the cap is stated, never silent
        title += (f", {len(shown)} of the {len(distance)} genes within {radius} edge"
                  f"{'s' if radius > 1 else ''} (strongest links)")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    ax.margins(0.08)
    return ax


def _most_relevant(G: nx.DiGraph, distance: dict, max_nodes: int) -> list:
    """The ``max_nodes`` genes nearest to the targets (distance 0); among equally near
    ones, those with the strongest edge (|weight|) to or from a gene one step nearer."""
    if len(distance) <= max_nodes:
        return list(distance)
    strength = dict.fromkeys(distance, 0.0)
    for u, v, weight in G.subgraph(distance).edges(data="weight", default=1.0):
        for near, far in ((u, v), (v, u)):
            if distance[far] == distance[near] + 1:
                strength[far] = max(strength[far], abs(float(weight)))
    ranked = sorted(distance, key=lambda n: (distance[n], -strength[n], str(n)))
    return ranked[:max_nodes]


def _layered_layout(G: nx.DiGraph, targets: list, radius: int, per_column: int = 10) -> dict:
    """Columns by signed directed distance to the targets: upstream < 0 < downstream;
    a layer with more than ``per_column`` genes is wrapped into several columns,
    staggered so that edges pass between the nodes."""
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
    pos, x = {}, 0.0
    for layer in sorted(columns):
        members = columns[layer]
        n_cols = -(-len(members) // per_column)
        rows = -(-len(members) // n_cols)
        for k, node in enumerate(members):
            col, row = divmod(k, rows)
            # Each further column is shifted by a fraction of a row, so that edges
            # into it pass between the nodes of the columns before it.
            y = 1.0 - 2.0 * (row + col / n_cols) / max(rows, 1) if rows > 1 else 0.0
            pos[node] = np.array([x + 0.6 * col, y])
        x += 0.6 * (n_cols - 1) + 1.0
    return pos


# --------------------------------------------------------------------------- comparisons

# Headline metrics drawn by default (the demo's printed table); any other
# metric of the table can be asked for by name.
DEFAULT_METRICS = ("pearson_delta", "mse", "de_pearson_top20", "retrieval_rank")
# Left to right: the usual (unconditioned) numbers, then the conditioned ones.
_CONDITIONING_ORDER = ("none", "targeted")
_COMPARE_COLUMNS = {"metric", "model", "higher_is_better", "rank_changed"}


def _conditionings(table: pd.DataFrame) -> list[str]:
    found = [c[len("value [") : -1] for c in table.columns
             if c.startswith("value [") and c.endswith("]")]
    known = [c for c in _CONDITIONING_ORDER if c in found]
    return known + [c for c in found if c not in known]


def conditioning_comparison(
    table: pd.DataFrame,
    metrics: str | Sequence[str] | None = None,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure | Axes:
    """Slope chart of each model's score without and with the targeted genes.

    One panel per metric; in each, one line per model from ``"none"``
    (every gene scored, the usual numbers) to ``"targeted"``
    (conditioned), with the model's rank written at both ends. The y axis
    points towards better scores (it is flipped for metrics where lower is
    better), so a line that crosses another is a reversal. Models whose
    rank differs between the conditionings are drawn thick and solid, the
    others thin and faded; a panel whose ranking changes says so in its
    title.

    Parameters
    ----------
    table
        The output of :func:`causalcell.evaluate.compare`: columns
        ``metric``, ``model``, ``higher_is_better``, ``rank_changed`` and
        ``value [c]`` / ``rank [c]`` for at least two conditionings ``c``.
    metrics
        A metric or metrics to draw, in panel order. Default: those of
        :data:`DEFAULT_METRICS` in the table, else every metric.
    ax
        ``None`` (a new figure, one panel per metric), one Axes (exactly one
        metric), or a sequence of Axes (one per metric).

    Returns
    -------
    matplotlib.figure.Figure or matplotlib.axes.Axes
        The Axes when ``ax`` is one Axes, otherwise the Figure.

    Raises
    ------
    ParameterError
        A table without the columns of ``compare()``, fewer than two
        conditionings, an unknown metric, or axes that do not match the
        number of metrics.
    """
    if not isinstance(table, pd.DataFrame) or not set(table.columns) >= _COMPARE_COLUMNS:
        cols = list(table.columns) if isinstance(table, pd.DataFrame) else type(table).__name__
        raise ParameterError(
            f"conditioning_comparison() takes the table of causalcell.evaluate.compare(); it "
            f"needs the columns {sorted(_COMPARE_COLUMNS)} and 'value [...]', got {cols}."
        )
    conds = _conditionings(table)
    if len(conds) < 2:
        raise ParameterError(
            f"The table has the conditionings {conds}; a comparison needs two. Call "
            f"compare(..., exclude=('targeted', 'none'))."
        )
    available = list(dict.fromkeys(table["metric"]))
    if metrics is None:
        chosen = [m for m in DEFAULT_METRICS if m in available] or available
    else:
        chosen = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in chosen if m not in available]
        if unknown or not chosen:
            raise ParameterError(f"Unknown metric(s) {unknown or chosen}; the table has "
                                 f"{available}.")
    if ax is None:
        ncols = min(len(chosen), 2)  # two panels a row: readable at any metric count
        nrows = -(-len(chosen) // ncols)
        # Constrained layout: a suptitle set later (the demo's) still gets its room.
        fig, grid = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 2.4, 3.8 * nrows),
                                 squeeze=False, layout="constrained")
        axes = list(grid.ravel())
        for extra in axes[len(chosen):]:
            extra.set_visible(False)
        single = False
    else:
        single = isinstance(ax, Axes)
        axes = [ax] if single else list(ax)
        if len(axes) < len(chosen):
            raise ParameterError(f"{len(chosen)} metric(s) {chosen} need as many Axes; got "
                                 f"{len(axes)}.")
        fig = axes[0].figure
    models = list(dict.fromkeys(table["model"]))
    palette = plt.get_cmap("tab10")
    colors = {m: palette(i % 10) for i, m in enumerate(models)}
    for metric, panel in zip(chosen, axes, strict=False):
        _slope_panel(table[table["metric"] == metric], metric, conds, colors, panel)
    if single:
        return axes[0]
    handles = [Line2D([], [], color=colors[m], marker="o", label=m) for m in models]
    handles += [Line2D([], [], color="black", lw=2.5, label="rank changes"),
                Line2D([], [], color="black", lw=1, alpha=0.35, label="rank unchanged")]
    fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize=8)
    fig.suptitle("Model rankings with and without the targeted genes scored")
    return fig


def _reordered(ranks: np.ndarray) -> np.ndarray:
    """Models (rows) whose order against some other model differs between
    conditionings (columns): a swap, or a tie made or broken. A rank number
    alone misses a tie (2 -> 2 while a rival goes 3 -> 2)."""
    order = np.sign(ranks[:, None, :] - ranks[None, :, :])  # (model, model, conditioning)
    return (order != order[:, :, :1]).any(axis=(1, 2))


def _spread(values: np.ndarray, gap: float) -> np.ndarray:
    """Label positions near ``values`` (NaN kept) at least ``gap`` apart: labels of
    near-equal values are stacked around their mean instead of printing over each
    other."""
    values = np.asarray(values, dtype=float)
    out = values.copy()
    finite = np.flatnonzero(np.isfinite(values))
    groups = [[i] for i in finite[np.argsort(values[finite], kind="stable")]]

    def ends(group: list[int]) -> tuple[float, float]:
        centre, half = float(values[group].mean()), gap * (len(group) - 1) / 2
        return centre - half, centre + half

    merged = True
    while merged:  # merge neighbouring runs until every pair is a gap apart
        merged = False
        for k in range(len(groups) - 1):
            if ends(groups[k + 1])[0] - ends(groups[k])[1] < gap:
                groups[k : k + 2] = [groups[k] + groups[k + 1]]
                merged = True
                break
    for group in groups:
        out[group] = ends(group)[0] + gap * np.arange(len(group))
    return out


def _slope_panel(rows: pd.DataFrame, metric: str, conds: list[str], colors: dict,
                 ax: Axes) -> None:
    x = np.arange(len(conds), dtype=float)
    values = rows[[f"value [{c}]" for c in conds]].to_numpy(dtype=float)
    ranks = rows[[f"rank [{c}]" for c in conds]].to_numpy(dtype=float)
    moved = _reordered(ranks)
    for model, vals, changed in zip(rows["model"], values, moved, strict=True):
        ax.plot(x, vals, marker="o", color=colors[model], label=model,
                lw=2.5 if changed else 1.0, alpha=1.0 if changed else 0.35, zorder=3 if changed
                else 2)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    span = (high - low) or 1.0
    gap = 0.085 * span  # about one line of 7-point text on a panel 2.7 in high
    labelled = []
    for j, xi in enumerate(x):
        where = _spread(values[:, j], gap)
        labelled.append(where)
        for model, v, y, r in zip(rows["model"], values[:, j], where, ranks[:, j], strict=True):
            if np.isfinite(v) and np.isfinite(r):
                ax.annotate(f"{int(r)}", (xi, v), xytext=(xi + (-0.06 if j == 0 else 0.06), y),
                            textcoords="data", fontsize=7, color=colors[model], va="center",
                            ha="right" if j == 0 else "left")
    ends = np.concatenate([w[np.isfinite(w)] for w in labelled] + [finite])
    if len(ends):
        pad = 0.06 * span
        ax.set_ylim(float(ends.min()) - pad, float(ends.max()) + pad)
    better = bool(rows["higher_is_better"].iloc[0])
    if not better:
        ax.invert_yaxis()  # up always means better: a crossing is a reversal
    ax.set_xticks(x, conds)
    ax.set_xlim(x[0] - 0.35, x[-1] + 0.35)
    ax.set_ylabel(f"mean ({'higher' if better else 'lower'} is better)", fontsize=8)
    changed_any = bool(rows["rank_changed"].any())
    ax.set_title(f"{metric}: " + ("ranking changes" if changed_any else "ranking unchanged"),
                 fontsize=9, color=TARGET_COLOR if changed_any else "black")
    note = _undefined_note(rows, conds).replace(" (drawn", "\n(drawn")
    if note:
        ax.text(0.5, -0.14, note, transform=ax.transAxes, ha="center", va="top", fontsize=7,
                color="#515a5a", wrap=True)


def _undefined_note(rows: pd.DataFrame, conds: list[str]) -> str:
    """Which models a panel does not show as scores, and why: no value at all (not
    drawn), or a prediction that left the metric undefined on every perturbation
    (a constant prediction has no correlation; drawn at the no-skill value)."""
    missing, constant = [], []
    for _, row in rows.iterrows():
        values = [row[f"value [{c}]"] for c in conds]
        if not np.isfinite(values).any():
            missing.append(str(row["model"]))
            continue
        counts = [(row.get(f"n_undefined [{c}]", 0), row.get(f"n [{c}]", 0)) for c in conds]
        if any(n > 0 and k == n for k, n in counts):
            constant.append(str(row["model"]))
    parts = []
    if missing:
        parts.append(f"not drawn (no value): {', '.join(missing)}")
    if constant:
        parts.append(f"constant prediction, undefined on every perturbation (drawn at no "
                     f"skill): {', '.join(constant)}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- retrieval

_EXCLUSION_ORDER = ("none", "query", "targeted", "all")
_EXCLUSION_LABEL = {"none": "none", "query": "query only (VCC)", "targeted": "targeted (fair)",
                    "all": "all targeted"}
_RETRIEVAL_COLUMNS = {PERTURBATION, "distance", "exclude", "orientation", "rank"}
_MIN_BOX = 10


def retrieval_ranks(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Distributions of retrieval ranks per model and exclusion rule.

    One box per (model, exclusion), with every perturbation's rank as a
    dot (with fewer than 10 perturbations, the dots and their median only:
    a box of a few ranks says little); 0 means the prediction retrieves its
    own observed perturbation first, the dashed line at 0.5 is chance. The
    title gives the number of perturbations. Boxes are coloured by the
    exclusion rule, so a model that beats chance only without exclusion (or
    under the query-only rule) shows it at once.

    Parameters
    ----------
    table
        The output of :func:`causalcell.evaluate.retrieval` (columns
        ``perturbation``, ``distance``, ``exclude``, ``orientation``,
        ``rank``), or several of them concatenated with a ``model`` column.
        One distance and one orientation (filter the table first).
    ax
        Axes to draw on; a new figure is made when None.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ParameterError
        Missing columns, an empty table, or several distances or
        orientations.
    """
    table = current_table("retrieval_ranks", table)
    if not isinstance(table, pd.DataFrame) or not set(table.columns) >= _RETRIEVAL_COLUMNS:
        cols = list(table.columns) if isinstance(table, pd.DataFrame) else type(table).__name__
        raise ParameterError(
            f"retrieval_ranks() takes the table of causalcell.evaluate.retrieval(); it needs "
            f"the columns {sorted(_RETRIEVAL_COLUMNS)}, got {cols}."
        )
    if table.empty:
        raise ParameterError("The retrieval table is empty: nothing to plot.")
    for column in ("distance", "orientation"):
        values = table[column].unique()
        if len(values) > 1:
            raise ParameterError(
                f"The table mixes several {column}s {sorted(map(str, values))}; plot one, e.g. "
                f"table[table[{column!r}] == {str(values[0])!r}]."
            )
    data = table if "model" in table.columns else table.assign(model="")
    models = list(dict.fromkeys(data["model"]))
    present = set(data["exclude"])
    exclusions = [e for e in _EXCLUSION_ORDER if e in present]
    exclusions += sorted(present - set(exclusions))
    palette = plt.get_cmap("Set2")
    colors = {e: palette(i) for i, e in enumerate(exclusions)}
    grouped = {key: g["rank"].to_numpy(dtype=float)
               for key, g in data.groupby(["model", "exclude"], sort=False)}
    counts = sorted({len(r) for r in grouped.values()})
    # Boxes of a handful of ranks (which take few distinct values) look alike and
    # hide how few there are: below this many, draw the points and their median only.
    boxes = counts[0] >= _MIN_BOX
    width = 0.8 / len(exclusions)
    ax = _axes(ax, (1.6 + 0.45 * len(models) * len(exclusions), 4.2))
    rng = np.random.default_rng(0)  # jitter only; fixed so figures are reproducible
    for k, excl in enumerate(exclusions):
        keys = [(m, excl) for m in models if (m, excl) in grouped]
        if not keys:
            continue
        pos = np.array([models.index(m) for m, _ in keys]) + (k - (len(exclusions) - 1) / 2) * width
        ranks = [grouped[key] for key in keys]
        xs = np.concatenate([np.full(len(r), p) for r, p in zip(ranks, pos, strict=True)])
        xs = xs + rng.uniform(-0.3, 0.3, len(xs)) * width
        if boxes:
            ax.boxplot(ranks, positions=pos, widths=width * 0.85, showfliers=False,
                       patch_artist=True, boxprops={"facecolor": colors[excl], "alpha": 0.6},
                       medianprops={"color": "black", "gid": "median"})
            ax.scatter(xs, np.concatenate(ranks), s=8, color="#2c3e50", alpha=0.6, zorder=3)
        else:
            ax.scatter(xs, np.concatenate(ranks), s=18, color=colors[excl], edgecolors="#2c3e50",
                       linewidths=0.5, zorder=3)
            ax.hlines([np.median(r) for r in ranks], pos - width * 0.4, pos + width * 0.4,
                      color="black", lw=1.5, zorder=4, gid="median")
    ax.axhline(0.5, color=TARGET_COLOR, linestyle="--", lw=1.2, label="chance (0.5)")
    # Long names break before their parenthesis: level labels never overlap each other.
    ax.set_xticks(np.arange(len(models)),
                  [str(m).replace(" (", "\n(") if len(str(m)) > 14 else str(m) for m in models],
                  fontsize=9)
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("retrieval rank (0 = own perturbation first)")
    if boxes:
        handles = [Patch(facecolor=colors[e], alpha=0.6, label=_EXCLUSION_LABEL.get(e, e))
                   for e in exclusions]
    else:
        handles = [Line2D([], [], marker="o", linestyle="", color=colors[e],
                          markeredgecolor="#2c3e50", label=_EXCLUSION_LABEL.get(e, e))
                   for e in exclusions]
        handles.append(Line2D([], [], color="black", lw=1.5, label="median"))
    handles.append(Line2D([], [], color=TARGET_COLOR, linestyle="--", label="chance"))
    ax.legend(handles=handles, title="targeted genes excluded", loc="upper left",
              bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    n = f"n = {counts[0]}" if len(counts) == 1 else f"n = {counts[0]}-{counts[-1]}"
    ax.set_title(f"Pairwise retrieval ({table['distance'].iloc[0]}), {n} perturbations per "
                 f"{'box' if boxes else 'group'}, one dot each; lower is better", fontsize=10)
    return ax


def pairwise_rank_matrix(
    predicted: AnnData,
    observed: AnnData,
    *,
    distance: str = "euclidean",
    exclude: str = "targeted",
    orientation: str = "prediction",
    reference: str = "control",
    ax: Axes | None = None,
    exclusion: Any = DEPRECATED,
) -> Axes:
    """The n x n matrix "candidate j is closer to query i than i's true match".

    Row i is a query (a prediction, or an observation with
    ``orientation="observed"``), column j a candidate; a dark cell means
    candidate j beats the true match, a grey one a tie. A row's mean is
    that query's retrieval rank (written on the right). Rows and columns are
    sorted by rank, best retrieved at the top.

    Parameters
    ----------
    predicted, observed
        Predicted profiles and observed cells or pseudobulk, as in
        :func:`causalcell.evaluate.align`.
    distance, exclude, orientation
        As in :func:`causalcell.evaluate.pairwise_retrieval`.
    exclusion
        Deprecated name of ``exclude`` (FutureWarning).
    reference
        Reference subtracted from both sides, as in
        :func:`causalcell.evaluate.align`.
    ax
        Axes to draw on; a new figure is made when None.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.images[0]`` holds the reordered matrix.

    Raises
    ------
    DataContractError
        Fewer than 2 perturbations in common, and every error of
        :func:`~causalcell.evaluate.align`.
    ParameterError
        Unknown ``distance``, ``exclude``, ``orientation`` or
        ``reference``.

    Notes
    -----
    The matrix costs ``4 n^2`` bytes; tick labels are drawn up to 50
    perturbations.
    """
    exclude = renamed("pairwise_rank_matrix", "exclusion", exclusion, "exclude", exclude,
                      "targeted")
    aligned = align(predicted, observed, reference=reference)
    if len(aligned) < 2:
        raise DataContractError(
            f"The rank matrix needs at least 2 perturbations predicted and observed; got "
            f"{len(aligned)}."
        )
    ranks, beats = pairwise_retrieval(aligned.predicted, aligned.observed, aligned.targets,
                                      distance=distance, exclude=exclude,
                                      orientation=orientation, return_matrix=True)
    order = np.argsort(ranks, kind="stable")
    n = len(order)
    side = min(1.6 + 0.26 * n, 11)
    ax = _axes(ax, (side + 2.6, side + 0.6))
    cmap = ListedColormap(["#fdfefe", "#aab7b8", TARGET_COLOR])
    shown = beats[np.ix_(order, order)]
    ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
    # Outline the diagonal (each query's true match) so the eye finds its row.
    ax.scatter(np.arange(n), np.arange(n), marker="s", s=max(4.0, 2000.0 / n),
               facecolors="none", edgecolors="black", linewidths=0.6)
    labels = aligned.perturbations.to_numpy()[order]
    if n <= 50:
        ax.set_xticks(np.arange(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(np.arange(n), labels, fontsize=7)
        for row, r in enumerate(ranks[order]):
            ax.text(n - 0.3, row, f"{r:.2f}", va="center", fontsize=7)
        # Headed below the matrix: above it is the title's place.
        ax.text(n - 0.3, n - 0.4, "row\nrank", va="top", fontsize=7, fontweight="bold")
    query, cand = ("prediction", "observed") if orientation == "prediction" else (
        "observed", "prediction")
    ax.set_ylabel(f"query i ({query})")
    ax.set_xlabel(f"candidate j ({cand})")
    # Only the kinds of cell that the matrix holds.
    kinds = [(1.0, Patch(facecolor=TARGET_COLOR, label="j closer than the true match")),
             (0.5, Patch(facecolor="#aab7b8", label="tie")),
             (0.0, Patch(facecolor="#fdfefe", edgecolor="#aab7b8", label="true match closer"))]
    off_diagonal = shown[~np.eye(n, dtype=bool)]
    handles = [patch for value, patch in kinds if np.isclose(off_diagonal, value).any()]
    handles.append(Line2D([], [], marker="s", color="black", markerfacecolor="none",
                          linestyle="", label="true match (diagonal)"))
    # Right of the column of row ranks (borderaxespad is in font sizes: about 30 points).
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), borderaxespad=3.8,
              frameon=False, fontsize=8)
    ax.set_title(f"exclude={exclude!r}, {distance}: mean rank {ranks.mean():.3f} "
                 f"(chance 0.5), n = {n}", fontsize=9)
    return ax


# --------------------------------------------------------------------------- one perturbation


def _pearson_text(r: float) -> str:
    return "undefined" if not np.isfinite(r) else f"{r:.2f}"


def predicted_vs_observed(
    predicted: AnnData,
    observed: AnnData,
    perturbation: str,
    *,
    reference: str = "control",
    ax: Axes | None = None,
) -> Axes:
    """Predicted against observed change of every gene for one perturbation.

    Untargeted genes are grey dots; the targeted genes are red, labelled
    with their names. The title gives the Pearson correlation of the changes
    over all genes and with the targeted genes excluded (the
    ``pearson_delta`` of :func:`causalcell.evaluate.evaluate`): a predictor
    that only moves the target can look good on the first and is judged on
    the second.

    Parameters
    ----------
    predicted, observed
        Predicted profiles and observed cells or pseudobulk, as in
        :func:`causalcell.evaluate.align`.
    perturbation
        The perturbation to draw: its condition key or its ``perturbation``
        label (e.g. ``"TF01"`` or ``"TF01,TF04"``).
    reference
        ``"control"`` or ``"perturbed_mean"``, as in
        :func:`causalcell.evaluate.align`.
    ax
        Axes to draw on; a new figure is made when None.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.collections[0]``: the untargeted genes, ``ax.collections[1]``:
        the targeted genes.

    Raises
    ------
    ParameterError
        ``perturbation`` is not both predicted and observed, or its label is
        ambiguous (several perturbation types: pass the condition key).
    DataContractError
        Every error of :func:`~causalcell.evaluate.align`.
    """
    aligned = align(predicted, observed, reference=reference)
    keys = aligned.perturbations.to_numpy().astype(str)
    hits = np.flatnonzero(keys == str(perturbation))
    if not len(hits):
        hits = np.flatnonzero(aligned.labels == str(perturbation))
    if len(hits) != 1:
        if len(hits) > 1:
            raise ParameterError(
                f"The label {perturbation!r} names several perturbations "
                f"{keys[hits].tolist()}; pass one of these keys."
            )
        shown = keys[:10].tolist() + (["..."] if len(keys) > 10 else [])
        raise ParameterError(
            f"{perturbation!r} is not among the perturbations both predicted and observed "
            f"({shown})."
        )
    row = hits[0]
    pred, obs = aligned.predicted[row], aligned.observed[row]
    targeted = np.zeros(len(aligned.genes), dtype=bool)
    targeted[aligned.targets[[row]].indices] = True
    scores = {
        setting: float(perturbation_metrics(pred[None], obs[None], aligned.targets[[row]],
                                            exclude=setting, top_k=())["pearson_delta"].iloc[0])
        for setting in ("none", "targeted")
    }
    ax = _axes(ax, (5.5, 5))
    ax.scatter(obs[~targeted], pred[~targeted], s=12, color=OTHER_COLOR, alpha=0.7,
               label="other genes")
    ax.scatter(obs[targeted], pred[targeted], s=45, color=TARGET_COLOR, marker="D", zorder=4,
               label="targeted gene")
    # Names stacked in the lower right, each with a line to its point: targets of a
    # combination often land on one spot, where their names would print over each other.
    # The lowest point gets the lowest name.
    by_height = np.argsort(pred[targeted], kind="stable")  # lines to the names never cross
    for k, (gene, x, y) in enumerate(zip(aligned.genes[targeted][by_height],
                                         obs[targeted][by_height], pred[targeted][by_height],
                                         strict=True)):
        ax.annotate(str(gene), (x, y), xytext=(0.97, 0.04 + 0.07 * k), textcoords="axes fraction",
                    ha="right", color=TARGET_COLOR, fontsize=9, fontweight="bold",
                    arrowprops={"arrowstyle": "-", "color": TARGET_COLOR, "lw": 0.6,
                                "alpha": 0.7, "shrinkB": 4})
    lo = float(min(obs.min(), pred.min(), 0.0))
    hi = float(max(obs.max(), pred.max(), 0.0))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", lw=0.8, linestyle=":",
            label="perfect prediction")
    ax.axhline(0.0, color="#d5d8dc", lw=0.8, zorder=0)
    ax.axvline(0.0, color="#d5d8dc", lw=0.8, zorder=0)
    ax.set_xlabel(f"observed change vs {reference}")
    ax.set_ylabel(f"predicted change vs {reference}")
    ax.set_title(f"{keys[row]}: Pearson r = {_pearson_text(scores['none'])} all genes, "
                 f"{_pearson_text(scores['targeted'])} targeted excluded", fontsize=10)
    ax.legend(loc="upper left", frameon=False, fontsize=8)
    return ax


# --------------------------------------------------------------------------- dose-response


def dose_response(
    scores: DoseResponseScores,
    perturbation: str,
    *,
    genes: Sequence[str] | None = None,
    n_genes: int = 6,
    curve: pd.DataFrame | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Observed and predicted change of the top responding genes along the level T.

    One colour per gene: the observed change of each dose bin at the bin's
    mean T (dots, with +- 2 standard errors of the bin mean), the prediction
    of each bin (open diamonds joined by a dashed line), and optionally the
    model's continuous prediction on a grid of T (a solid line, from
    :func:`causalcell.benchmark.predict_dose_response`). The grey band is
    the control level of the target +- one control-cell standard deviation:
    bins there are escapers.

    Parameters
    ----------
    scores
        From :func:`causalcell.evaluate.score_dose_response` (or one model's
        entry of :attr:`causalcell.benchmark.DoseResponse.scores`).
    perturbation
        Its condition key or ``perturbation`` label.
    genes
        The genes to draw (default: the ``n_genes`` responding genes with the
        largest observed span, from ``scores.genes``).
    n_genes
        Number of genes when ``genes`` is None.
    curve
        A :func:`~causalcell.benchmark.predict_dose_response` table of the
        same perturbation, drawn as continuous predictions.
    ax
        Axes to draw on; a new figure is made when None.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ParameterError
        A perturbation without curves in ``scores`` (fewer than 3 bins, or no
        responding gene), or genes that are not among its curves.
    """
    curves = scores.curves
    keys = curves["condition"].astype(str)
    which = curves[(keys == str(perturbation))
                   | (curves["perturbation"].astype(str) == str(perturbation))]
    if which.empty:
        shown = sorted(keys.unique())[:10]
        raise ParameterError(
            f"{perturbation!r} has no dose-response curve in these scores (it needs >= 3 "
            f"bins and a gene whose response is beyond noise); perturbations with curves: "
            f"{shown}."
        )
    if genes is None:
        ranked = scores.genes[scores.genes["condition"].isin(which["condition"].unique())]
        genes = ranked.sort_values("rank")["gene"].head(int(n_genes)).tolist()
    else:
        genes = [genes] if isinstance(genes, str) else list(genes)
        unknown = sorted(set(genes) - set(which["gene"]))
        if unknown:
            raise ParameterError(f"genes {unknown} have no curve for {perturbation!r}; "
                                 f"available: {sorted(which['gene'].unique())[:10]}.")
    bins = scores.bins[scores.bins["condition"].isin(which["condition"].unique())]
    ax = _axes(ax, (6.5, 4.5))
    control, spread = float(bins["control_level"].iloc[0]), np.nan
    escapers = bins[bins["escaper"].to_numpy(dtype=bool)]
    if np.isfinite(control):
        spread = control - float(escapers["level"].min()) if len(escapers) else np.nan
        ax.axvline(control, color=OTHER_COLOR, lw=1.0, linestyle=":")
        ax.annotate("control level", (control, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(-4, -12), textcoords="offset points", ha="right", fontsize=8,
                    color=OTHER_COLOR)
    if len(escapers) and np.isfinite(spread):
        ax.axvspan(control - max(spread, 0.0), control, color="#eaecee", zorder=0,
                   label="escaper bins")
    colors = plt.get_cmap("tab10")
    for k, gene in enumerate(genes):
        rows = which[which["gene"] == gene].sort_values("level")
        color = colors(k % 10)
        ax.errorbar(rows["level"], rows["observed"], yerr=2 * rows["observed_se"], fmt="o",
                    color=color, ms=5, capsize=2, label=f"{gene} observed")
        ax.plot(rows["level"], rows["predicted"], linestyle="--", marker="D", mfc="white",
                color=color, ms=5, lw=1.0)
        if curve is not None:
            line = curve[curve["gene"] == gene].sort_values("level")
            ax.plot(line["level"], line["change"], color=color, lw=1.4, alpha=0.8)
    ax.axhline(0.0, color="#d5d8dc", lw=0.8, zorder=0)
    handles = [Line2D([], [], marker="o", linestyle="", color="black", label="observed bin mean"),
               Line2D([], [], marker="D", mfc="white", linestyle="--", color="black",
                      label="predicted, bin's mean T")]
    if curve is not None:
        handles.append(Line2D([], [], color="black", label="predicted, grid of T"))
    if len(escapers) and np.isfinite(spread):
        handles.append(Patch(facecolor="#eaecee", label="escaper bins"))
    # Both legends outside the axes: inside, they cover curves.
    first = ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(1.0, 0.0),
                      frameon=False, fontsize=8)
    ax.add_artist(first)
    ax.legend(handles=[Line2D([], [], color=colors(k % 10), marker="o", linestyle="",
                              label=str(g)) for k, g in enumerate(genes)],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), title="gene", frameon=False,
              fontsize=8)
    ax.set_xlabel(f"level T of {which['perturbation'].iloc[0]} (log-normalized)")
    ax.set_ylabel("change vs control")
    ax.set_title(f"{which['perturbation'].iloc[0]}: the response is a curve", fontsize=10)
    return ax


def response_curves(
    curves: pd.DataFrame,
    *,
    target: str | None = None,
    regulator: str | None = None,
    max_edges: int = 10,
    ax: Axes | None = None,
) -> Axes:
    """Fitted response curves of edges: how a target moves with one regulator.

    Draws a ``ConditionalGRNRegressor.response_curves()`` table (several
    models' tables concatenated with a ``model`` column are drawn side by
    side in line style): one line per edge, solid inside the regulator's
    training range and dashed where the model extrapolates, with a dot at
    the regulator's control level (response 0).

    Parameters
    ----------
    curves
        The table (``regulator``, ``target``, ``level``, ``response``,
        ``control_level``, ``in_range``; optionally ``model``).
    target, regulator
        Draw only edges into this target / from this regulator.
    max_edges
        Draw at most this many edges (one colour each): those whose response
        spans the widest range; the title says how many of how many are shown.
    ax
        Axes to draw on; a new figure is made when None.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ParameterError
        A table without the columns, or no edge left after filtering.
    """
    needed = {"regulator", "target", "level", "response", "control_level", "in_range"}
    if not isinstance(curves, pd.DataFrame) or not needed <= set(curves.columns):
        raise ParameterError(
            f"curves must be a ConditionalGRNRegressor.response_curves() table with columns "
            f"{sorted(needed)}."
        )
    table = curves
    if target is not None:
        table = table[table["target"] == target]
    if regulator is not None:
        table = table[table["regulator"] == regulator]
    if table.empty:
        raise ParameterError(f"No edge {regulator or '*'} -> {target or '*'} in the curves.")
    if not is_int(max_edges) or max_edges < 1:
        raise ParameterError(f"max_edges must be a positive integer; got {max_edges!r}.")
    models = table["model"].unique().tolist() if "model" in table.columns else [None]
    styles = ["-", "--", "-.", ":"]
    span = table.groupby(["regulator", "target"], sort=False)["response"].agg(
        lambda r: float(r.max() - r.min()))
    n_edges = len(span)
    edges = list(span.sort_values(ascending=False, kind="stable").index[:max_edges])
    colors = plt.get_cmap("tab10")
    ax = _axes(ax, (6.0, 4.2))
    for k, (reg, tgt) in enumerate(edges):
        color = colors(k % 10)
        for m, name in enumerate(models):
            rows = table[(table["regulator"] == reg) & (table["target"] == tgt)]
            if name is not None:
                rows = rows[rows["model"] == name]
            rows = rows.sort_values("level")
            inside = rows["in_range"].to_numpy(dtype=bool)
            style = styles[m % len(styles)]
            label = f"{reg} -> {tgt}" + (f" ({name})" if name is not None else "")
            ax.plot(rows["level"].where(inside), rows["response"].where(inside),
                    color=color, linestyle=style, lw=1.6, label=label)
            ax.plot(rows["level"].where(~inside), rows["response"].where(~inside),
                    color=color, linestyle=":", lw=1.0, alpha=0.8)
            if m == 0:
                ax.plot([rows["control_level"].iloc[0]], [0.0], "o", color=color, ms=5)
    ax.axhline(0.0, color="#d5d8dc", lw=0.8, zorder=0)
    ax.set_xlabel("regulator level (log-normalized)")
    ax.set_ylabel("response of the target (change of its fitted value)")
    shown = "" if len(edges) == n_edges else (
        f"\nthe {len(edges)} of {n_edges} edges with the widest response")
    ax.set_title(f"fitted response curves (dotted: extrapolated){shown}", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


# --------------------------------------------------------------------------- evaluate

_EXCLUSION_EXPLAINED = {
    "none": "none: every gene scored",
    "query": "query: genes targeted in the\nquery ignored (VCC rule)",
    "targeted": "targeted (fair): genes targeted in\nthe query or candidate ignored",
    "all": "all: every gene targeted\nanywhere in the data ignored",
}


def _metric_bars(ax: Axes, table: pd.DataFrame, better: str) -> None:
    """Horizontal bars: one group per metric (rows of ``table``), one bar per
    exclusion rule (columns)."""
    height = 0.8 / max(len(table.columns), 1)
    y = np.arange(len(table))
    palette = plt.get_cmap("tab10")
    for k, cond in enumerate(table.columns):
        ax.barh(y + k * height, table[cond].to_numpy(dtype=float), height=height,
                label=cond, color=palette(k))
    ax.set_yticks(y + height * (len(table.columns) - 1) / 2, table.index)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"mean over perturbations ({better} is better)")


def evaluation_summary(
    summary: pd.DataFrame,
    retrieval: pd.DataFrame | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """The figure of ``causalcell evaluate``: mean scores per exclusion rule, and the
    mean retrieval rank per exclusion rule.

    Draws tables it is given (nothing is recomputed): scores where higher is
    better (correlations) and errors where lower is better (``mse``,
    ``mae``) in separate panels, since their scales differ; each retrieval
    exclusion rule is named with what it ignores.

    Parameters
    ----------
    summary
        :func:`causalcell.evaluate.summarize` of :func:`causalcell.evaluate.evaluate`
        (columns ``metric``, ``exclude``, ``mean``, ``n``,
        ``higher_is_better``).
    retrieval
        :func:`causalcell.evaluate.retrieval` table, or None (the panel says
        retrieval was not run).
    title
        What was scored (e.g. the file names); the number of perturbations is
        added.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ParameterError
        A summary without those columns.
    """
    summary = current_table("evaluation_summary", summary)
    if retrieval is not None:
        retrieval = current_table("evaluation_summary", retrieval)
    needed = {"metric", "exclude", "mean", "n", "higher_is_better"}
    if not isinstance(summary, pd.DataFrame) or not needed <= set(summary.columns):
        raise ParameterError(f"summary must be a causalcell.evaluate.summarize() table with "
                             f"columns {sorted(needed)}.")

    higher = summary["higher_is_better"].to_numpy(dtype=bool)
    # The retrieval rank has its own panel, by exclusion rule, when the table is given.
    own_panel = (summary["metric"] == "retrieval_rank").to_numpy() & (retrieval is not None)
    lower = ~higher & ~own_panel
    scores, errors = means_by_exclude(summary[higher]), means_by_exclude(summary[lower])
    rows = max(len(scores), 1)
    fig = Figure(figsize=(13, 0.32 * rows + 2.8), layout="constrained")
    ratios = [2.2, 1.3 if len(errors) else 0.01, 1.4]
    left, middle, right = fig.subplots(1, 3, width_ratios=ratios)
    if len(scores):
        _metric_bars(left, scores, "higher")
        fig.legend(*left.get_legend_handles_labels(), title="exclude (genes not scored)",
                   loc="outside lower center", ncols=len(scores.columns), frameon=False,
                   fontsize=8)
    else:
        left.set_axis_off()
    if len(errors):
        _metric_bars(middle, errors, "lower")
    else:
        middle.set_axis_off()
    if retrieval is not None:
        ranks = retrieval.groupby("exclude", sort=False)["rank"].mean()
        order = [e for e in _EXCLUSION_ORDER if e in ranks.index]
        order += [e for e in ranks.index if e not in order]
        ranks = ranks.reindex(order)
        y = np.arange(len(ranks))
        bars = right.barh(y, ranks.to_numpy(), color="#4c72b0")
        right.bar_label(bars, fmt="%.3f", padding=3, fontsize=8)  # a rank of 0 has no bar
        right.set_yticks(y, [_EXCLUSION_EXPLAINED.get(e, e) for e in ranks.index], fontsize=8)
        right.invert_yaxis()
        right.axvline(0.5, color=TARGET_COLOR, linestyle="--", label="chance")
        right.set_xlim(0, 1)
        right.set_xlabel("mean retrieval rank (0 = perfect)")
        right.set_title("pairwise retrieval", fontsize=10)
        right.legend(loc="lower right", fontsize=8, frameon=False)
    else:
        right.set_axis_off()
        right.text(0.5, 0.5, "retrieval needs\n2+ perturbations", ha="center", va="center")
    n = int(summary["n"].max()) if len(summary) else 0
    missing = [] if len(errors) else ["no error metric (mse, mae) in the summary"]
    head = f"{title}: " if title else ""
    fig.suptitle(f"{head}mean over {n} perturbations, with the targeted genes excluded and "
                 f"with every gene" + (f"\n{missing[0]}" if missing else ""), fontsize=10)
    return fig
