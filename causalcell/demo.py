"""The work behind ``causalcell demo``: fit models of P(X | T) on embedded data,
predict held-out perturbations and score them with and without conditioning.

Kept apart from :mod:`causalcell.cli` so that it can be called from Python and
tested without parsing arguments.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell.data import Interventions, pseudobulk
from causalcell.data.contract import LEVEL, PERTURBATION, PERTURBATION_TYPE
from causalcell.data.interventions import format_levels
from causalcell.data.split import split_by_perturbation
from causalcell.errors import ParameterError, UnmeasuredTargetWarning
from causalcell.evaluate import compare
from causalcell.models import (
    ConditionalGRNRegressor,
    ControlBaseline,
    LinearEmbeddingBaseline,
    MeanBaseline,
    TargetOnlyBaseline,
)
from causalcell.models.base import observed_target_levels

__all__ = ["ModelComparison", "compare_models", "demo_data", "observed_request"]

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
    """

    table: pd.DataFrame
    held_out: list[str]
    fit_seconds: dict[str, float]


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
        sim = datasets.simulate(seed=seed, library_size=100_000)
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


def _predictable(adata: AnnData) -> np.ndarray:
    """Samples whose every target is measured (a model can only clamp those)."""
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    cond = iv.conditions
    ok = (cond["n_measured"] == cond["n_targets"]).to_numpy()
    return ok[iv.codes]


def compare_models(
    adata: AnnData,
    network: nx.DiGraph,
    *,
    test_size: float = 0.4,
    seed: int = 0,
    extra_models: dict[str, Callable[[], object]] | None = None,
    verbose: bool = True,
) -> ModelComparison:
    """Hold out perturbations, fit every model on the rest, score the predictions.

    Only perturbations whose targets are all measured can be held out (a
    model clamps targets at T); the others stay in training. Models:
    ``ConditionalGRNRegressor`` on ``network``, and the baselines control,
    mean, target-only (predicts only P(T)) and linear embedding.

    Returns
    -------
    ModelComparison
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmeasuredTargetWarning)
        predictable = _predictable(adata)
        pool = adata[predictable]
        _, test = split_by_perturbation(pool, test_size=test_size, seed=seed)
        held = set(test.obs_names)
        in_test = adata.obs_names.isin(list(held))
        train = adata[~in_test].copy()
        controls = train[train.obs["is_control"].to_numpy()]
        observed = ad.concat([test, controls], merge="same")
        request = observed_request(test)
        factories: dict[str, Callable[[], object]] = {
            "conditional GRN": lambda: ConditionalGRNRegressor(verbose=False),
            "linear embedding": lambda: LinearEmbeddingBaseline(),
            "mean": MeanBaseline,
            "control": ControlBaseline,
            "target only": TargetOnlyBaseline,
        }
        factories.update(extra_models or {})
        predictions, seconds = {}, {}
        for name, factory in factories.items():
            start = time.perf_counter()
            model = factory()
            predictions[name] = model.fit(train, network).predict(request)
            seconds[name] = time.perf_counter() - start
            if verbose:
                print(f"  fitted {name} in {seconds[name]:.1f} s")
        table = compare(predictions, observed)
    return ModelComparison(table=table, held_out=sorted(request.index), fit_seconds=seconds)


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
