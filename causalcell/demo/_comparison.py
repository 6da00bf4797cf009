"""The demo's comparison: its data, its models, cross-validation, and the verdict
sentences computed from the numbers alone.

Every sentence the demo prints about the models is built here from a
:class:`~causalcell.benchmark.CrossValidation` table (or a target-effect
table): change the numbers and the sentences change.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import networkx as nx
import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell.benchmark import CrossValidation, cross_validate, select
from causalcell.errors import ParameterError, UnorientedEdgesWarning
from causalcell.models import (
    ConditionalGRNRegressor,
    ControlBaseline,
    LinearEmbeddingBaseline,
    MeanBaseline,
    TargetOnlyBaseline,
)

__all__ = [
    "HEADLINE_METRICS",
    "NAN_FOOTNOTE",
    "demo_comparison",
    "demo_data",
    "demo_models",
    "format_comparison",
    "graph_verdict",
    "target_verdict",
    "verdicts",
]

# Metrics shown in the printed table and judged by the verdicts (every
# metric is in the CSV).
HEADLINE_METRICS = ("pearson_delta", "mse", "de_pearson_top20", "retrieval_rank")
FOLDS = 5
GRN = "conditional GRN"
BASELINE = "mean"
SACHS_GRAPHS = ("consensus graph", "learned graph")
SELECTED = f"{GRN} (selected graph)"
EXCLUDE_TITLES = {"targeted": "targeted genes excluded (conditioned, causalcell)",
           "none": "nothing excluded (unconditioned, the usual numbers)"}


def demo_data(name: str, random_state: int = 0) -> tuple[AnnData, nx.DiGraph, str]:
    """The embedded data set, its network and a title.

    ``"papalexi"``: Papalexi et al. 2021 cells with the CollecTRI prior;
    ``"simulated"``: :func:`~causalcell.datasets.simulate` with its true
    network; ``"sachs"``: Sachs et al. 2005 with the consensus network.
    """
    from causalcell import datasets

    if name == "papalexi":
        adata = datasets.load_papalexi2021()
        return adata, datasets.load_collectri(genes=adata.var_names), (
            "Papalexi et al. 2021, CRISPR knockout in THP-1 cells (real), CollecTRI prior")
    if name == "simulated":
        sim = datasets.simulate(random_state=random_state, library_size=100_000)
        return sim.adata, sim.network, "Simulation with a known network (true network)"
    if name == "sachs":
        return datasets.load_sachs2005(), datasets.load_sachs2005_network(), (
            "Sachs et al. 2005, signalling reagents (real), consensus network")
    raise ParameterError(f"Unknown data set {name!r}; choose papalexi, simulated or sachs.")


def _learned_graph(train: AnnData) -> nx.DiGraph:
    """The demo's learned Sachs graph: lasso on a training split only."""
    from causalcell.graph import learn_network

    # learn_network warns once per call about the pairs the interventions leave
    # unoriented; the demo calls it once per (inner) fold, so it reports those
    # pairs once, counted from G.graph["unoriented"], in graph_verdict instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnorientedEdgesWarning)
        return learn_network(train, verbose=False)


def _grn() -> ConditionalGRNRegressor:
    return ConditionalGRNRegressor(verbose=False)


def demo_models(name: str, network: nx.DiGraph) -> tuple[dict[str, object], dict[str, object]]:
    """The demo's models and the network each is given.

    Every data set: the conditional GRN on ``network`` and the four baselines
    (linear embedding, mean, control, target only). On ``"sachs"`` the GRN
    runs on the consensus graph, on a graph learned from each training split
    (:func:`causalcell.graph.learn_network`), and on the graph chosen between
    those two by nested selection (:func:`causalcell.benchmark.select`, by
    ``mse``, inside each training split).

    Returns
    -------
    (dict, dict)
        ``{"name": unfitted estimator}`` and ``{"name": network or function}``.
    """
    baselines = {"linear embedding": LinearEmbeddingBaseline(), BASELINE: MeanBaseline(),
                 "control": ControlBaseline(), "target only": TargetOnlyBaseline()}
    if name != "sachs":
        return {GRN: _grn(), **baselines}, {GRN: network}
    consensus, learned = (f"{GRN} ({g})" for g in SACHS_GRAPHS)
    chooser = select({SACHS_GRAPHS[0]: (_grn(), network),
                      SACHS_GRAPHS[1]: (_grn(), _learned_graph)}, metric="mse")
    models = {consensus: _grn(), learned: _grn(), SELECTED: chooser, **baselines}
    return models, {consensus: network, learned: _learned_graph}


def demo_comparison(
    name: str, *, random_state: int = 0, verbose: bool = True
) -> tuple[CrossValidation, str]:
    """:func:`~causalcell.benchmark.cross_validate` of :func:`demo_models` on an
    embedded data set, as the demo runs it: every perturbation whose targets
    are measured is predicted once, in :data:`FOLDS` folds.

    Returns
    -------
    (CrossValidation, str)
        The result (``networks`` holds the graphs of the GRN models only,
        for the figures) and the data set's title.
    """
    adata, network, title = demo_data(name, random_state=random_state)
    models, networks = demo_models(name, network)
    result = cross_validate(models, adata, networks, folds=FOLDS, random_state=random_state,
                            verbose=verbose)
    shown = {k: v for k, v in result.networks.items() if k.startswith(GRN)}
    return dataclasses.replace(result, networks=shown), title


# --------------------------------------------------------------------------- text


def _conditionings(table: pd.DataFrame) -> list[str]:
    return [c[len("value [") : -1] for c in table.columns if c.startswith("value [")]


def _interval(low: float, high: float, signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"[{fmt.format(low)}, {fmt.format(high)}]"


def _cell(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return NOT_AVAILABLE
    return f"{value:.3f} {_interval(low, high)}"


# Printed for a NaN, with the footnote saying what it means.
NOT_AVAILABLE = "n/a"
NAN_FOOTNOTE = ("   n/a: no value: the metric is undefined for every scored perturbation of "
                "that model (e.g. a constant prediction has no correlation), or the data "
                "have too few genes for it.")


def format_comparison(result: CrossValidation,
                      metrics: Sequence[str] = HEADLINE_METRICS, *,
                      calibrated: bool = True) -> str:
    """The compact text tables printed by the demo, one block per conditioning.

    Each cell is the mean over perturbations with its 95% bootstrap
    interval; the header gives ``n`` per metric; below, with ``calibrated``,
    the calibrated scores (0 = the mean baseline, 1 = the data's replicate
    ceiling), and the models whose prediction left a metric undefined
    (counted as no skill). A value that does not exist is printed ``n/a``,
    with a footnote saying why.
    """
    table = result.table
    shown = [m for m in metrics if m in set(table["metric"])]
    blocks = []
    for cond in _conditionings(table):
        rows = table[table["metric"].isin(shown)]
        cells, scaled, undefined = {}, {}, []
        n = {}
        for metric in shown:
            part = rows[rows["metric"] == metric].set_index("model")
            n[metric] = int(part[f"n [{cond}]"].max())
            cells[f"{metric} (n={n[metric]})"] = [
                _cell(v, lo, hi) for v, lo, hi in zip(
                    part[f"value [{cond}]"], part[f"ci_low [{cond}]"],
                    part[f"ci_high [{cond}]"], strict=True)]
            if f"calibrated [{cond}]" in part.columns:
                scaled[metric] = [f"{v:.2f}" if np.isfinite(v) else "-"
                                  for v in part[f"calibrated [{cond}]"]]
            undefined += [f"{model} {metric} {k}/{n[metric]}" for model, k in
                          part[f"n_undefined [{cond}]"].items() if k > 0]
        models = list(dict.fromkeys(rows["model"]))
        values = pd.DataFrame(cells, index=models)
        text = [f"-- {EXCLUDE_TITLES.get(cond, cond)}: mean over perturbations [95% interval]",
                values.to_string()]
        if (values == NOT_AVAILABLE).any(axis=None):
            text.append(NAN_FOOTNOTE)
        if calibrated and scaled:
            text += ["   calibrated (0 = mean baseline, 1 = replicate ceiling, '-' where the "
                     "ceiling does not beat the baseline):",
                     pd.DataFrame(scaled, index=models).to_string()]
        if undefined:
            text.append("   undefined (constant prediction; counted as no skill): "
                        + "; ".join(undefined))
        blocks.append("\n".join(text))
    return "\n".join(blocks)


def _judge(row: pd.Series, cond: str, better: float, alpha: float) -> str:
    """Where the paired difference from the baseline lies, oriented so that
    positive is better: beyond the baseline only when both its bootstrap
    interval excludes 0 and the paired test rejects at ``alpha`` (percentile
    intervals are too narrow on a handful of perturbations; the sign-flip
    test is exact there)."""
    low, high = sorted((better * row[f"diff_ci_low [{cond}]"],
                        better * row[f"diff_ci_high [{cond}]"]))
    p = row[f"p_value [{cond}]"]
    if not (np.isfinite(low) and np.isfinite(high) and np.isfinite(p)):
        return "cannot be compared with the mean baseline"
    if low > 0 and p < alpha:
        return "beats the mean baseline"
    if high < 0 and p < alpha:
        return "is worse than the mean baseline"
    return "is indistinguishable from the mean baseline"


def _holm(p_values: pd.Series) -> pd.Series:
    """Holm-adjusted p-values (Holm 1979) of the finite entries; NaN stays NaN."""
    from statsmodels.stats.multitest import multipletests

    out = pd.Series(np.nan, index=p_values.index)
    finite = np.isfinite(p_values.to_numpy(dtype=float))
    if finite.any():
        out[finite] = multipletests(p_values[finite].to_numpy(dtype=float), method="holm")[1]
    return out


def _alpha(result: CrossValidation) -> float:
    return 1.0 - float(result.table.attrs.get("confidence_level", 0.95))


def verdicts(result: CrossValidation, metrics: Sequence[str] = HEADLINE_METRICS,
             baseline: str = BASELINE) -> list[str]:
    """Sentences computed from the comparison table: under each conditioning, the
    best model on each metric and whether it beats the mean baseline (the
    interval of the paired difference excludes 0 *and* the paired test's
    p-value, Holm-adjusted over the models compared since the best is picked
    on the scored perturbations, is below 1 - confidence level); whether anything beats the
    baseline; and which rankings reverse beyond the intervals between the
    conditionings.

    Raises
    ------
    ParameterError
        A table without ``baseline`` or without difference columns.
    """
    table = result.table
    if baseline not in set(table["model"]) or not any(c.startswith("diff [") for c in
                                                     table.columns):
        raise ParameterError(f"The comparison has no baseline {baseline!r} to judge against.")
    shown = [m for m in metrics if m in set(table["metric"])]
    lines = []
    for cond in _conditionings(table):
        winners = []
        for metric in shown:
            part = table[(table["metric"] == metric) & (table["model"] != baseline)]
            part = part[np.isfinite(part[f"value [{cond}]"].to_numpy(dtype=float))]
            if part.empty:
                continue
            better = 1.0 if bool(part["higher_is_better"].iloc[0]) else -1.0
            best = part.loc[(better * part[f"value [{cond}]"]).idxmax()].copy()
            # The best model is picked on the scored perturbations, so its test
            # against the baseline is one of len(part): Holm's adjustment over
            # those comparisons keeps the verdict's error rate at alpha.
            raw = best[f"p_value [{cond}]"]
            best[f"p_value [{cond}]"] = _holm(part[f"p_value [{cond}]"])[best.name]
            verdict = _judge(best, cond, better, _alpha(result))
            if verdict.startswith("beats"):
                winners.append(f"{best['model']} on {metric}")
            lines.append(
                f"{EXCLUDE_TITLES.get(cond, cond)}, {metric} "
                f"(n = {int(best[f'n [{cond}]'])}): best model {best['model']} "
                f"{best[f'value [{cond}]']:.3f} "
                f"{_interval(best[f'ci_low [{cond}]'], best[f'ci_high [{cond}]'])} {verdict} "
                f"(difference {best[f'diff [{cond}]']:+.3f} "
                f"{_interval(best[f'diff_ci_low [{cond}]'], best[f'diff_ci_high [{cond}]'], True)}"
                f", p = {raw:.2g}; Holm-adjusted over {len(part)} models "
                f"{best[f'p_value [{cond}]']:.2g}).")
        if winners:
            lines.append(f"=> {EXCLUDE_TITLES.get(cond, cond)}: {'; '.join(winners)} beat(s) "
                         f"the mean baseline (interval of the difference excludes 0 and "
                         f"Holm-adjusted p < {_alpha(result):.2g}).")
        else:
            lines.append(f"=> {EXCLUDE_TITLES.get(cond, cond)}: nothing beats the mean baseline on "
                         f"{', '.join(shown)} (no best model whose difference interval "
                         f"excludes 0 with Holm-adjusted p < {_alpha(result):.2g}).")
    if len(_conditionings(table)) > 1:
        flips = []
        for metric in shown:
            part = table[(table["metric"] == metric) & table["reversal"].astype(bool)]
            if len(part):
                flips.append(f"{metric} ({', '.join(part['model'])})")
        lines.append(
            "Excluding the targeted genes reverses, beyond the intervals, the order of models "
            f"on {'; '.join(flips)}." if flips else
            "No order of two models reverses beyond the intervals between the conditionings "
            f"on {', '.join(shown)}.")
    return lines


def target_verdict(name: str, table: pd.DataFrame) -> str:
    """Does the targeted gene dominate its own profile on this data set?

    From a :func:`causalcell.evaluate.target_effect` table: the share of
    perturbed targets whose own change is the largest of their profile, and
    what that means for scores that include it.
    """
    n = len(table)
    first = int((table["rank"] == 1).sum())
    if n == 0:
        return f"{name}: no measured target, nothing to say about its own change."
    share = first / n
    head = (f"{name}: the targeted gene's own change is the largest of its profile in {first} "
            f"of {n} perturbed targets ({100 * share:.0f}%)")
    if share > 0.5:
        return (head + ": it dominates on this data set, so models and metrics that include "
                "it are rewarded for this obvious signal; causalcell conditions on it "
                "(P(X | T)) and scores the rest.")
    return (head + ": it does not dominate on this data set, so scoring it inflates the "
            "usual numbers less here; causalcell still conditions on it (P(X | T)).")


def graph_verdict(result: CrossValidation, selected: str = SELECTED, *,
                  metric: str = "mse", conditioning: str = "targeted",
                  baseline: str = BASELINE) -> str:
    """Which graph nested selection chose, and how the chosen graph scored.

    Counts the candidate each outer fold's :class:`~causalcell.benchmark.
    Selection` chose inside its training split, and reports the selected
    model's cross-validated ``metric`` against the baseline with the paired
    difference's interval.

    Raises
    ------
    ParameterError
        ``selected`` is not a selection model of the result.
    """
    fitted = result.fitted.get(selected)
    if not fitted or not all(hasattr(f, "selected_") for f in fitted):
        raise ParameterError(f"{selected!r} is not a fitted selection model of this result.")
    counts = pd.Series([f.selected_ for f in fitted]).value_counts()
    candidates = list(fitted[0].scores_.index)
    chosen = ", ".join(f"the {c} in {int(counts.get(c, 0))} of {len(fitted)} folds"
                       for c in candidates)
    rows = result.table[result.table["metric"] == metric].set_index("model")
    row = rows.loc[selected]
    base = rows.loc[baseline]
    better = 1.0 if bool(row["higher_is_better"]) else -1.0
    c = conditioning
    verdict = _judge(row, c, better, _alpha(result))
    majority = counts.index[0] if counts.iloc[0] > len(fitted) / 2 else None
    lead = (f"the {majority} wins the selection" if majority is not None
            else "no graph wins a majority of the selections")
    unoriented = [len(g.graph.get("unoriented", ())) for g in result.fold_networks.get(
        f"{GRN} ({SACHS_GRAPHS[1]})", ()) if isinstance(g, nx.DiGraph)]
    pairs = ""
    if unoriented:
        spread = (f"{min(unoriented)}" if min(unoriented) == max(unoriented)
                  else f"{min(unoriented)} to {max(unoriented)}")
        pairs = (f" The interventions left {spread} selected gene pairs of each fold's learned "
                 f"graph unoriented (listed in its graph['unoriented']).")
    return (f"Graph verdict by nested selection ({metric} inside each training split, never "
            f"on the scored perturbations): {lead} (chosen: {chosen}); scored on the held-out "
            f"folds ({EXCLUDE_TITLES.get(c, c)}, n = {int(row[f'n [{c}]'])}), the selected graph's "
            f"{metric} {row[f'value [{c}]']:.3f} "
            f"{_interval(row[f'ci_low [{c}]'], row[f'ci_high [{c}]'])} {verdict} "
            f"({base[f'value [{c}]']:.3f}; difference {row[f'diff [{c}]']:+.3f} "
            f"{_interval(row[f'diff_ci_low [{c}]'], row[f'diff_ci_high [{c}]'], True)}, "
            f"p = {row[f'p_value [{c}]']:.2g}: one comparison fixed before scoring, so not "
            f"adjusted)."
            f"{pairs}")
