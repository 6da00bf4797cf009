"""The work behind ``causalcell demo``: fit models of P(X | T) on embedded data,
predict held-out perturbations and score them with and without conditioning.

Kept apart from :mod:`causalcell.cli` so that it can be called from Python and
tested without parsing arguments.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
from anndata import AnnData
from tqdm.auto import tqdm

from causalcell.data import Interventions, pseudobulk, split_by_perturbation
from causalcell.data._schema import format_levels
from causalcell.data.contract import LEVEL, PERTURBATION, PERTURBATION_TYPE
from causalcell.errors import ParameterError, UnmeasuredTargetWarning
from causalcell.evaluate import compare
from causalcell.models import (
    ConditionalGRNRegressor,
    ControlBaseline,
    LinearEmbeddingBaseline,
    MeanBaseline,
    TargetOnlyBaseline,
)
from causalcell.models._base import observed_target_levels

__all__ = [
    "ModelComparison",
    "compare_models",
    "demo_comparison",
    "demo_data",
    "graph_verdict",
    "observed_request",
]

# Metrics shown in the printed table (every metric is in the CSV).
SHOWN_METRICS = ("pearson_delta", "mse", "de_pearson_top20", "retrieval_rank")


@dataclass(frozen=True)
class ModelComparison:
    """Result of :func:`compare_models`.

    Attributes
    ----------
    table : pandas.DataFrame
        :func:`causalcell.evaluate.compare` output (metric x model, one value
        and rank column per conditioning).
    held_out : list of str
        The held-out perturbations that were predicted.
    fit_seconds : dict
        Fit-and-predict time per model.
    predictions : dict of str to AnnData
        Each model's predicted profiles of the held-out perturbations.
    observed : AnnData or None
        The observed held-out cells and the training controls (what the
        predictions were scored against).
    networks : dict of str to networkx.DiGraph
        The network of each network-based model, by model name (a learned
        network as learned on the training split).
    """

    table: pd.DataFrame
    held_out: list[str]
    fit_seconds: dict[str, float]
    predictions: dict[str, AnnData] = field(default_factory=dict)
    observed: AnnData | None = None
    networks: dict[str, nx.DiGraph] = field(default_factory=dict)


def demo_data(name: str, seed: int = 0) -> tuple[AnnData, nx.DiGraph, str]:
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
        sim = datasets.simulate(random_state=seed, library_size=100_000)
        return sim.adata, sim.network, "Simulation with a known network (true network)"
    if name == "sachs":
        return datasets.load_sachs2005(), datasets.load_sachs2005_network(), (
            "Sachs et al. 2005, signalling reagents (real), consensus network")
    raise ParameterError(f"Unknown data set {name!r}; choose papalexi, simulated or sachs.")


def observed_request(test: AnnData) -> pd.DataFrame:
    """One request row per held-out perturbation, told the observed level T.

    Models estimate P(X | T): the level of each targeted gene is an input.
    Where the data do not record it, it is the mean measured level of the
    targeted gene in the held-out cells (knockouts keep T = 0).
    """
    pb = pseudobulk(test)
    iv = Interventions.from_adata(pb, warn_unmeasured=False)
    known = observed_target_levels(pb.X, iv).set_index([PERTURBATION, PERTURBATION_TYPE, "gene"])
    obs = pb.obs.copy()
    levels = []
    for i in range(pb.n_obs):  # one row per held-out perturbation
        label, kind = obs[PERTURBATION].iat[i], obs[PERTURBATION_TYPE].iat[i]
        values = [known["level"].get((label, kind, g), np.nan) for g in iv.targets(i)]
        levels.append(format_levels(values))
    obs[LEVEL] = levels
    return obs


def _grn_name(graph: str | None) -> str:
    return "conditional GRN" if graph is None else f"conditional GRN ({graph})"


def compare_models(
    adata: AnnData,
    network: nx.DiGraph,
    *,
    test_size: float = 0.4,
    seed: int = 0,
    network_name: str | None = None,
    extra_networks: Mapping[str, nx.DiGraph | Callable[[AnnData], nx.DiGraph]] | None = None,
    extra_models: dict[str, Callable[[], object]] | None = None,
    verbose: bool = True,
) -> ModelComparison:
    """Hold out perturbations, fit every model on the rest, score the predictions.

    Only perturbations whose targets are all measured can be held out (a
    model clamps targets at T); the others stay in training. Models:
    ``ConditionalGRNRegressor`` on ``network`` (and on each of
    ``extra_networks``), and the baselines control, mean, target-only
    (predicts only P(T)) and linear embedding.

    Parameters
    ----------
    adata
        Cells following the data contract, with controls.
    network
        Network of the main ``ConditionalGRNRegressor``.
    test_size
        Share of the predictable perturbations held out.
    seed
        Seed of the split.
    network_name
        Names the main model ``"conditional GRN (<network_name>)"``; default
        ``"conditional GRN"``.
    extra_networks
        ``{"name": graph}`` adds a ``"conditional GRN (name)"`` model on each
        graph. A value may be a function of the **training split** returning
        the graph (e.g. :func:`causalcell.graph.learn_network`): it never sees
        the held-out perturbations.
    extra_models
        ``{"name": factory}`` of further estimators (``fit(train, network)``,
        ``predict(request)``).
    verbose
        Show a progress bar and the fit times.

    Returns
    -------
    ModelComparison

    Raises
    ------
    ParameterError
        A name in ``extra_networks`` that gives a model name already used.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)
        # Only measured targets can be clamped at T: the others always train.
        train, test = split_by_perturbation(adata, test_size=test_size, random_state=seed,
                                            measured_only=True)
        controls = train[train.obs["is_control"].to_numpy()]
        observed = ad.concat([test, controls], merge="same")
        request = observed_request(test)
        graphs: dict[str, nx.DiGraph | Callable[[AnnData], nx.DiGraph]] = {
            _grn_name(network_name): network
        }
        for name, graph in (extra_networks or {}).items():
            if _grn_name(name) in graphs:
                raise ParameterError(f"extra_networks: the name {name!r} is used twice.")
            graphs[_grn_name(name)] = graph
        factories: dict[str, Callable[[], object]] = {
            name: lambda: ConditionalGRNRegressor(verbose=False) for name in graphs
        }
        factories.update({
            "linear embedding": lambda: LinearEmbeddingBaseline(),
            "mean": MeanBaseline,
            "control": ControlBaseline,
            "target only": TargetOnlyBaseline,
        })
        factories.update(extra_models or {})
        predictions, seconds, networks = {}, {}, {}
        bar = tqdm(factories.items(), desc="fit and predict", unit="model", disable=not verbose,
                   leave=False)
        for name, factory in bar:
            bar.set_postfix_str(name)
            start = time.perf_counter()
            graph = graphs.get(name, network)
            if callable(graph) and not isinstance(graph, nx.DiGraph):
                graph = graph(train)  # learned on the training split only
            if name in graphs:
                networks[name] = graph
            model = factory()
            predictions[name] = model.fit(train, graph).predict(request)
            seconds[name] = time.perf_counter() - start
        bar.close()
        if verbose:
            print("  fit + predict: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
        table = compare(predictions, observed)
    return ModelComparison(table=table, held_out=sorted(request.index), fit_seconds=seconds,
                           predictions=predictions, observed=observed, networks=networks)


def _learned_sachs(train: AnnData) -> nx.DiGraph:
    """The demo's learned Sachs graph: lasso on the training split only."""
    from causalcell.graph import learn_network

    return learn_network(train, verbose=False)


def demo_comparison(name: str, *, seed: int = 0, verbose: bool = True
                    ) -> tuple[ModelComparison, str]:
    """:func:`compare_models` on an embedded data set, as the demo runs it.

    On ``"sachs"`` the conditional GRN is fitted twice: on the consensus
    network (Sachs et al. 2005) and on a network learned by
    :func:`causalcell.graph.learn_network` from the training split; half
    of the interventions are held out (there are only seven).

    Returns
    -------
    (ModelComparison, str)
        The comparison and the data set's title.
    """
    adata, network, title = demo_data(name, seed=seed)
    if name == "sachs":
        result = compare_models(adata, network, test_size=0.5, seed=seed,
                                network_name="consensus graph",
                                extra_networks={"learned graph": _learned_sachs},
                                verbose=verbose)
    else:
        result = compare_models(adata, network, seed=seed, verbose=verbose)
    return result, title


def _short(model: str) -> str:
    """ "conditional GRN (learned graph)" -> "learned graph" """
    if model.startswith("conditional GRN (") and model.endswith(")"):
        return model[len("conditional GRN (") : -1]
    return model


def graph_verdict(
    result: ModelComparison,
    first: str,
    second: str,
    *,
    metrics: tuple[str, ...] = ("mse", "pearson_delta"),
    conditioning: str = "targeted excluded",
) -> str:
    """One honest line: which of two models predicted the held-out
    perturbations better on each metric, by how much, and whether the better
    one beats the best baseline (every model not named ``conditional GRN``).

    Error metrics (lower is better) are compared in relative terms,
    correlations (higher is better) by their difference.

    Parameters
    ----------
    result
        A comparison holding the models ``first`` and ``second``.
    first, second
        Model names (e.g. the conditional GRN on two graphs).
    metrics
        Metrics of :func:`causalcell.evaluate.compare` to judge on.
    conditioning
        ``"targeted excluded"`` (default) or ``"none"``.

    Returns
    -------
    str

    Raises
    ------
    ParameterError
        A model, metric or conditioning not in the table.
    """
    table = result.table
    column = f"value [{conditioning}]"
    if column not in table.columns:
        raise ParameterError(f"The comparison has no conditioning {conditioning!r}.")
    parts, winners, beats_baseline = [], set(), []
    for metric in metrics:
        rows = table[table["metric"] == metric]
        if rows.empty:
            raise ParameterError(f"The comparison has no metric {metric!r}.")
        values = rows.set_index("model")[column].astype(float)
        missing = [m for m in (first, second) if m not in values.index]
        if missing:
            raise ParameterError(
                f"Models {missing} are not in the comparison {list(values.index)}."
            )
        higher = bool(rows["higher_is_better"].iloc[0])
        a, b = values[first], values[second]
        if not (np.isfinite(a) and np.isfinite(b)):
            parts.append(f"{metric} undefined")
            continue
        sign = 1.0 if higher else -1.0
        win, lose = (first, second) if sign * (a - b) >= 0 else (second, first)
        wv, lv = values[win], values[lose]
        if wv == lv:
            diff = "tie"
        elif higher:
            diff = f"+{wv - lv:.3f}"
        else:
            diff = f"{100 * (lv - wv) / lv:.0f}% lower" if lv > 0 else f"{wv - lv:+.3f}"
        winners.add(win if wv != lv else "tie")
        base = values.drop([m for m in values.index if m.startswith("conditional GRN")])
        base = base[np.isfinite(base.to_numpy())]
        text = f"{metric} {_short(win)} {wv:.3f} vs {_short(lose)} {lv:.3f} ({diff})"
        if not base.empty:
            base_name = base.idxmax() if higher else base.idxmin()
            text += f", best baseline {base_name} {base[base_name]:.3f}"
            if sign * (wv - base[base_name]) > 0:
                beats_baseline.append(metric)
        parts.append(text)
    n = len(result.held_out)
    if len(winners) == 1 and "tie" not in winners:
        head = f"the {_short(winners.pop())} predicts better on every metric"
    else:
        head = "mixed: neither graph is better on every metric"
    if not beats_baseline:
        tail = "neither graph beats the best baseline"
    elif len(beats_baseline) == len(metrics):
        tail = "on each metric the better of the two graphs beats the best baseline"
    else:
        tail = f"a graph beats the best baseline only on {', '.join(beats_baseline)}"
    return (f"Verdict on {n} held-out intervention{'s' if n != 1 else ''} "
            f"({conditioning}): {head}; {tail} [{'; '.join(parts)}].")


def format_comparison(result: ModelComparison) -> str:
    """The compact text tables printed by the demo: one per conditioning."""
    table = result.table
    conds = [c[len("value [") : -1] for c in table.columns if c.startswith("value [")]
    shown = table[table["metric"].isin(SHOWN_METRICS)]
    metrics = [m for m in SHOWN_METRICS if m in set(shown["metric"])]
    blocks = []
    for cond in conds:
        wide = shown.pivot(index="model", columns="metric", values=f"value [{cond}]")[metrics]
        title = {"targeted excluded": "targeted genes excluded (conditioned, causalcell)",
                 "none": "nothing excluded (unconditioned, the usual numbers)"}.get(cond, cond)
        blocks.append(f"-- {title}\n" + wide.to_string(float_format=lambda v: f"{v:.3f}"))
    return "\n".join(blocks)
