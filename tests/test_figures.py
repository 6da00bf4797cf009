"""Every figure of ``causalcell demo`` and ``causalcell evaluate``, for papalexi,
simulated and sachs, rendered with Agg: no text overlaps another text, no title
runs over two lines, and every cap on what is drawn is stated in the figure."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from causalcell import demo, plot
from causalcell.evaluate import evaluate, retrieval, summarize

DPI = 120  # as the demo writes


def _tick_labels(fig: Figure) -> tuple[set[int], list[Text]]:
    """Every tick label (ids), and those of ticks inside the view (the ones drawn)."""
    every, drawn = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            tol = 1e-9 * max(abs(high - low), 1.0)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                labels = (tick.label1, tick.label2)
                every.update(map(id, labels))
                if ax.get_visible() and low - tol <= tick.get_loc() <= high + tol:
                    drawn += [t for t in labels if t.get_visible() and t.get_text().strip()]
    return every, drawn


def shown_texts(fig: Figure) -> list[Text]:
    """Texts that are drawn: visible, non-empty, in a visible axes."""
    if not isinstance(fig.canvas, FigureCanvasAgg):  # a Figure made without pyplot
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    ticks, texts = _tick_labels(fig)
    for text in fig.findobj(Text):
        if id(text) in ticks or not text.get_visible() or not text.get_text().strip():
            continue
        if text.axes is not None and not text.axes.get_visible():
            continue
        texts.append(text)
    return texts


def overlaps(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of texts whose bounding boxes intersect (by more than a pixel)."""
    texts = shown_texts(fig)
    renderer = fig.canvas.get_renderer()
    # Text's own extent: an Annotation's would include its arrow, which may cross text.
    boxes = np.array([Text.get_window_extent(t, renderer).extents for t in texts]).reshape(-1, 4)
    x0, y0, x1, y1 = (boxes[:, k] + (1.0 if k < 2 else -1.0) for k in range(4))
    hit = ((x0[:, None] < x1[None, :]) & (x0[None, :] < x1[:, None])
           & (y0[:, None] < y1[None, :]) & (y0[None, :] < y1[:, None]))
    i, j = np.nonzero(np.triu(hit, k=1))
    return [(texts[a].get_text(), texts[b].get_text()) for a, b in zip(i, j, strict=True)]


def titles(fig: Figure) -> list[str]:
    out = [ax.get_title(loc) for ax in fig.axes if ax.get_visible()
           for loc in ("left", "center", "right")]
    if fig._suptitle is not None:
        out.append(fig._suptitle.get_text())
    return [t for t in out if t.strip()]


def check(fig: Figure, name: str) -> None:
    fig.set_dpi(DPI)
    found = overlaps(fig)
    assert not found, f"{name}: overlapping texts {found[:5]}"
    for title in titles(fig):
        assert len(title.splitlines()) <= 2, f"{name}: title over two lines: {title!r}"


def test_overlap_check_can_fail():
    """The check itself: two texts written on one spot are found."""
    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "one label")
    ax.text(0.5, 0.5, "another label")
    assert overlaps(fig) == [("one label", "another label")]
    plt.close(fig)


@pytest.fixture(scope="module", params=demo.DATASETS)
def result(request):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unmeasured targets: not the point here
        return demo.run(request.param)


def test_every_demo_figure_is_legible(result):
    made = []
    for name, fig in demo.figures(result):
        made.append(name)
        check(fig, name)
        plt.close(fig)
    expected = {f"target_effect_{s.key}.png" for s in result.sections} | {
        f"{kind}_{result.data}.png" for kind in ("conditioning_comparison", "retrieval_ranks",
                                                  "rank_matrix", "predicted_vs_observed",
                                                  "intervention_graph")}
    assert set(made) == expected


def test_evaluate_summary_figure_is_legible_and_complete(result):
    cv = result.comparison
    predicted = cv.predictions[result.main_model]
    summary = summarize(evaluate(predicted, cv.observed))
    ranks = retrieval(predicted, cv.observed, exclude=("targeted", "query", "none", "all"))
    fig = plot.evaluation_summary(summary, ranks, title=f"{result.data}.h5ad")
    check(fig, "summary.png")
    shown = {t.get_text() for t in shown_texts(fig)}
    assert any(t.startswith(f"{result.data}.h5ad: mean over {len(cv.held_out)} perturbations")
               for t in shown)
    assert {"mse", "mae"} <= shown  # the errors are drawn, in their own panel
    assert any(t.startswith("targeted (fair): genes targeted") for t in shown)
    plt.close(fig)


def test_capped_figures_say_what_they_show():
    from causalcell.datasets import simulate

    sim = simulate(random_state=0)
    ax = plot.target_effect(sim.adata)
    assert "showing the 30 of 35 perturbations" in ax.get_xlabel()
    check(ax.figure, "target_effect")
    plt.close(ax.figure)
    hub = nx.DiGraph([("T", f"G{k:02d}", {"weight": (k + 1) / 40}) for k in range(40)])
    ax = plot.intervention_graph(hub, "T", max_nodes=12)
    assert "12 of the 41 genes" in ax.get_title()
    # The strongest links are kept: weights (k + 1) / 40 for the 11 largest k.
    drawn = {t.get_text() for t in ax.texts}
    assert drawn == {"T"} | {f"G{k:02d}" for k in range(29, 40)}
    check(ax.figure, "intervention_graph")
    plt.close(ax.figure)


def test_dose_response_figures_are_legible():
    from causalcell.benchmark import predict_dose_response
    from causalcell.datasets import simulate
    from causalcell.evaluate import dose_bins, score_dose_response
    from causalcell.models import ConditionalGRNRegressor

    sim = simulate(n_genes=40, n_tfs=5, regulation="saturating", knockdown_efficiency=0.7,
                   efficiency_sd=0.2, escaper_fraction=0.2, n_combinations=0,
                   n_cells_per_perturbation=200, library_size=3e4, random_state=5)
    model = ConditionalGRNRegressor("spline", alpha="gcv").fit(sim.adata, sim.network)
    bins = dose_bins(sim.adata, n_bins=4, min_cells=40)
    scores = score_dose_response(model.predict(bins.request()), sim.adata, bins)
    counts = scores.genes["condition"].value_counts()
    label = counts.index[counts >= 3][0]
    curve = predict_dose_response(model, sim.adata, label, n_levels=20)
    ax = plot.dose_response(scores, label, n_genes=6, curve=curve)
    check(ax.figure, "dose_response")
    plt.close(ax.figure)
    curves = model.response_curves()
    regulator = curves["regulator"].iloc[0]
    n_edges = curves.loc[curves["regulator"] == regulator, "target"].nunique()
    assert n_edges > 10
    ax = plot.response_curves(curves, regulator=regulator)
    assert f"the 10 of {n_edges} edges with the widest response" in ax.get_title()
    assert len(ax.get_legend().get_texts()) == 10  # one colour per edge: tab10 never repeats
    check(ax.figure, "response_curves")
    plt.close(ax.figure)
