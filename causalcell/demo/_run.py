"""One run of the demo: the target-effect tables, the cross-validated comparison and
the retrieval table, held in one result object that the text and the figures read."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell.benchmark import CrossValidation
from causalcell.demo._comparison import GRN, demo_comparison
from causalcell.errors import ParameterError

__all__ = ["DATASETS", "DemoResult", "TargetSection", "run"]

DATASETS = ("papalexi", "simulated", "sachs")


@dataclass(frozen=True, repr=False)
class TargetSection:
    """The first part of the demo on one data set: how far each targeted gene moves.

    Attributes
    ----------
    key : str
        Short name, used in file names (``target_effect_<key>.csv``).
    title : str
        What the data are.
    adata : AnnData
        The cells.
    table : pandas.DataFrame
        The :func:`causalcell.evaluate.target_effect` table.
    unmeasured : list of str
        Targets that are not among the measured genes.
    """

    key: str
    title: str
    adata: AnnData
    table: pd.DataFrame
    unmeasured: list[str]


@dataclass(frozen=True, repr=False)
class DemoResult:
    """Everything ``causalcell demo`` prints and draws, computed once.

    Attributes
    ----------
    data : str
        ``"papalexi"``, ``"simulated"`` or ``"sachs"``.
    title : str
        What the compared data are.
    sections : list of TargetSection
        The target-effect part, one per data set (Papalexi is shown with a
        simulation for comparison).
    comparison : CrossValidation
        The cross-validated models (``networks`` holds the GRN models' graphs).
    retrieval : pandas.DataFrame or None
        Every model's retrieval ranks (exclusions none, query, pair) with a
        ``model`` column; None with fewer than 2 perturbations.
    showcase : (str, list of str) or None
        The held-out perturbation drawn in detail and its targeted genes.
    """

    data: str
    title: str
    sections: list[TargetSection]
    comparison: CrossValidation
    retrieval: pd.DataFrame | None
    showcase: tuple[str, list[str]] | None

    @property
    def main_model(self) -> str:
        """The main conditional GRN model (the first one)."""
        return next(m for m in self.comparison.predictions if m.startswith(GRN))

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables written as CSV, by file name."""
        out = {f"target_effect_{s.key}.csv": s.table for s in self.sections}
        out[f"model_comparison_{self.data}.csv"] = self.comparison.table
        if self.retrieval is not None:
            out[f"retrieval_{self.data}.csv"] = self.retrieval
        return out


def _sections(data: str, random_state: int) -> list[tuple[str, str, Callable[[], AnnData]]]:
    from causalcell import datasets

    simulated = ("simulated", "Simulation with a known network (knockdowns, default settings)",
                 lambda: datasets.simulate(random_state=random_state).adata)
    if data == "papalexi":
        return [("papalexi2021", "Papalexi et al. 2021, CRISPR knockout in THP-1 cells (real)",
                 datasets.load_papalexi2021), simulated]
    if data == "simulated":
        return [simulated]
    return [("sachs2005", "Sachs et al. 2005, signalling inhibitors/activators (real)",
             datasets.load_sachs2005)]


def _target_sections(data: str, random_state: int, verbose: bool) -> list[TargetSection]:
    from causalcell._progress import tqdm
    from causalcell.data import Interventions
    from causalcell.evaluate import target_effect

    out = []
    for key, title, load in tqdm(_sections(data, random_state), desc="target effect",
                                 disable=not verbose, leave=False, unit="data set"):
        with warnings.catch_warnings():
            # Unmeasured targets (e.g. IRF1 in Papalexi) are listed in the text instead.
            warnings.simplefilter("ignore", category=UserWarning)
            adata = load()
            table = target_effect(adata)
            unmeasured = Interventions.from_adata(adata, warn_unmeasured=False).unmeasured
        out.append(TargetSection(key, title, adata, table, list(unmeasured)))
    return out


def _retrieval(result: CrossValidation) -> pd.DataFrame | None:
    from causalcell.evaluate import retrieval

    if len(result.held_out) < 2:
        return None
    return pd.concat(
        [retrieval(pred, result.observed, exclude=("none", "query", "targeted")).assign(model=name)
         for name, pred in result.predictions.items()], ignore_index=True)


def _showcase(result: CrossValidation, main: str) -> tuple[str, list[str]] | None:
    """The held-out perturbation drawn in detail: the largest observed change
    outside its targets, among those whose targets are all in the network."""
    from causalcell.evaluate import align

    network = result.networks[main]
    aligned = align(result.predictions[main], result.observed)
    moved = aligned.observed.copy()
    moved[aligned.targets.nonzero()] = 0.0  # the target's own change is not the point
    size = np.linalg.norm(moved, axis=1)
    for row in np.argsort(-size, kind="stable"):
        genes = [str(g) for g in aligned.genes[aligned.targets[[row]].indices]]
        if genes and all(g in network for g in genes):
            return str(aligned.perturbations[row]), genes
    return None


def run(data: str = "papalexi", *, random_state: int = 0, verbose: bool = False) -> DemoResult:
    """Run the demo on an embedded data set: both parts, every table.

    Parameters
    ----------
    data
        ``"papalexi"`` (shown with a simulation for the target effect),
        ``"simulated"`` or ``"sachs"``.
    random_state
        Seed of the simulation and of the folds.
    verbose
        Show progress bars.

    Returns
    -------
    DemoResult

    Raises
    ------
    ParameterError
        An unknown ``data``.
    """
    if data not in DATASETS:
        raise ParameterError(f"Unknown data={data!r}; choose one of {', '.join(DATASETS)}.")
    sections = _target_sections(data, random_state, verbose)
    comparison, title = demo_comparison(data, random_state=random_state, verbose=verbose)
    main = next(m for m in comparison.predictions if m.startswith(GRN))
    return DemoResult(data=data, title=title, sections=sections, comparison=comparison,
                      retrieval=_retrieval(comparison), showcase=_showcase(comparison, main))

