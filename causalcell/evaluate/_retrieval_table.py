"""Pairwise retrieval on AnnData: which observed perturbation does each prediction match?

:func:`retrieval` turns two AnnData objects into the arrays of
:func:`causalcell.evaluate.pairwise_retrieval` (changes against one
reference, rows aligned by perturbation, targets from the observed data's
:class:`~causalcell.data.Interventions`) and returns a tidy table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell._validation import DEPRECATED, renamed
from causalcell.data.contract import PERTURBATION, PERTURBATION_TYPE
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate._align import ALIGN_DOC, Aligned, AlignOptions, aligned_input
from causalcell.evaluate._edistance import EDISTANCES, CellGroups, cell_groups, edistance_ranks
from causalcell.evaluate._exclude import (
    EXCLUDE_COLUMN,
    EXCLUDE_DOC,
    RETRIEVAL_EXCLUDES,
    exclude_rules,
    fill_doc,
)

__all__ = ["RETRIEVAL_COLUMNS", "cell_eval_score", "retrieval", "retrieval_ranks"]

RETRIEVAL_COLUMNS = (
    PERTURBATION, PERTURBATION_TYPE, "distance", EXCLUDE_COLUMN, "orientation", "rank", "score",
    "n_perturbations",
)


def cell_eval_score(rank: np.ndarray, n: int) -> np.ndarray:
    """A normalized rank on cell-eval's discrimination-score scale.

    cell-eval (the Virtual Cell Challenge) reports ``1 - r / n`` with r the
    number of candidates closer than the true match among n; our rank is
    ``r / (n - 1)``, so the score is ``1 - rank * (n - 1) / n``: 1 is a
    perfect match, about 0.5 is chance.
    """
    return 1.0 - np.asarray(rank, dtype=np.float64) * (n - 1) / n


def _as_tuple(name: str, value: str | Sequence[str]) -> tuple[str, ...]:
    values = (value,) if isinstance(value, str) else tuple(value)
    if not values or not all(isinstance(v, str) for v in values):
        raise ParameterError(f"{name} must be a string or a non-empty sequence of strings, "
                             f"got {value!r}.")
    return values


def retrieval_ranks(
    aligned: Aligned,
    *,
    distance: str | Sequence[str] = "euclidean",
    exclude: str | Sequence[str] = "targeted",
    orientation: str | Sequence[str] = "prediction",
    dask: bool | None = None,
    cells: tuple[CellGroups, CellGroups] | None = None,
) -> pd.DataFrame:
    """Retrieval ranks of aligned changes, one row per (perturbation, variant).

    Parameters
    ----------
    aligned
        The output of :func:`~causalcell.evaluate.align`.
    distance, exclude, orientation
        One value or several (every combination is computed); see
        :func:`~causalcell.evaluate.pairwise_retrieval`. The
        E-distances (``"edistance"``, ``"edistance_sqeuclidean"``) compare
        ``cells`` instead of the aligned profiles.
    dask
        Map the query blocks of every variant over the active Dask client
        (else Dask's threaded scheduler); see
        :func:`~causalcell.evaluate.pairwise_retrieval`. ``None``:
        only when the aligned changes are Dask arrays.
    cells
        Predicted and observed cells of each aligned row
        (:func:`~causalcell.evaluate.cell_groups`), needed by the
        E-distances.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RETRIEVAL_COLUMNS`.

    Raises
    ------
    DataContractError
        Fewer than 2 perturbations (retrieval needs a candidate besides the
        true match).
    """
    from causalcell.evaluate._retrieval import pairwise_retrieval

    distances = _as_tuple("distance", distance)
    rules = exclude_rules("retrieval", exclude, RETRIEVAL_EXCLUDES)
    orientations = _as_tuple("orientation", orientation)
    n = len(aligned)
    if n < 2:
        shown = f": {aligned.perturbations[0]!r}" if n else ""
        raise DataContractError(
            f"Retrieval needs at least 2 perturbations (the true match and a candidate); "
            f"{n} perturbation(s) are both predicted and observed{shown}. Predict more "
            f"perturbations."
        )
    frames = []
    for dist in distances:
        for rule in rules:
            for orient in orientations:
                if dist in EDISTANCES:
                    if cells is None:
                        raise ParameterError(f"distance={dist!r} compares cells: pass cells= "
                                             f"(or use retrieval(), which builds them).")
                    query, candidates = cells if orient == "prediction" else cells[::-1]
                    ranks = edistance_ranks(query, candidates, aligned.targets, rule,
                                            cell_distance=EDISTANCES[dist])
                else:
                    ranks = pairwise_retrieval(aligned.predicted, aligned.observed,
                                               aligned.targets, distance=dist, exclude=rule,
                                               orientation=orient, dask=dask)
                frames.append(pd.DataFrame({
                    PERTURBATION: aligned.perturbations.to_numpy(),
                    PERTURBATION_TYPE: aligned.perturbation_type,
                    "distance": dist,
                    EXCLUDE_COLUMN: rule,
                    "orientation": orient,
                    "rank": np.asarray(ranks, dtype=np.float64),
                    "score": cell_eval_score(ranks, n),
                    "n_perturbations": n,
                }))
    return pd.concat(frames, ignore_index=True)


@fill_doc(exclude=EXCLUDE_DOC, align=ALIGN_DOC)
def retrieval(
    predicted: AnnData | Aligned,
    observed: AnnData | None = None,
    *,
    distance: str | Sequence[str] = "euclidean",
    exclude: str | Sequence[str] = "targeted",
    orientation: str | Sequence[str] = "prediction",
    dask: bool | None = None,
    max_cells: int | None = None,
    random_state: int | None = 0,
    exclusion: Any = DEPRECATED,
    **align_options: Unpack[AlignOptions],
) -> pd.DataFrame:
    """How well each prediction retrieves its own observed perturbation among all others.

    Both sides become changes against one reference (see
    :func:`~causalcell.evaluate.align`); query i is compared with
    every candidate j on the genes the chosen ``exclude`` rule leaves in.

    Parameters
    ----------
    predicted
        Predicted profiles, one row per perturbation (obs contract), or an
        :class:`~causalcell.evaluate.Aligned` (profile distances only: the
        E-distances need the cells).
    observed
        Observed cells or pseudobulk profiles, with controls for
        ``reference="control"``. Cells whose X is a Dask array chunked
        along cells are averaged in one pass over the row blocks on the
        active Dask client (see :func:`causalcell.data.pseudobulk`).
    distance
        ``"euclidean"``, ``"sqeuclidean"``, ``"manhattan"``, ``"cosine"`` or
        ``"pearson"`` between profiles, or an E-distance between the cells
        of each perturbation: ``"edistance"`` (pertpy's, Euclidean) or
        ``"edistance_sqeuclidean"`` (scPerturb's); see
        :func:`~causalcell.evaluate.edistance`. Several values give several
        variants.
    exclude
        ``"targeted"`` (default), ``"query"``, ``"none"``, ``"all"``, or
        several (one block of rows each, labelled in the ``exclude`` column).
        {exclude}
    orientation
        ``"prediction"`` (prediction i against every observed j) or
        ``"observed"`` (observation i against every prediction j); or both.
    dask
        Map the retrieval's query blocks over the active Dask client (else
        Dask's threaded scheduler): ``True`` / ``False``; ``None`` (default)
        runs them serially, as the aligned changes are in memory. See
        :func:`~causalcell.evaluate.pairwise_retrieval`.
    max_cells, random_state
        E-distances only: use at most ``max_cells`` random cells per
        perturbation and side (seeded); the cost grows with the product of
        the predicted and observed cell counts.
    exclusion
        Deprecated name of ``exclude`` (FutureWarning; ``"pair"`` is now
        ``"targeted"``).
    {align}

    Returns
    -------
    pandas.DataFrame
        One row per perturbation and variant: ``perturbation``,
        ``perturbation_type``, ``distance``, ``exclude``, ``orientation``,
        ``rank`` (0: the true match comes first, 0.5: chance), ``score``
        (cell-eval's scale, ``1 - rank * (n - 1) / n``) and
        ``n_perturbations``.

    Raises
    ------
    DataContractError
        Fewer than 2 perturbations in common, and every error of
        :func:`~causalcell.evaluate.align`.
    ParameterError
        An unknown distance, ``exclude`` rule, orientation, reference or join;
        alignment options or an E-distance with an ``Aligned``.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> table = retrieval(sim.truth, sim.adata, exclude=["targeted", "query"])
    >>> sorted(table["exclude"].unique())
    ['query', 'targeted']
    """
    exclude = renamed("retrieval", "exclusion", exclusion, "exclude", exclude, "targeted")
    exclude = exclude_rules("retrieval", exclude, RETRIEVAL_EXCLUDES)
    aligned = aligned_input("retrieval", predicted, observed, align_options)
    cells = None
    if any(d in EDISTANCES for d in _as_tuple("distance", distance)):
        if isinstance(predicted, Aligned):
            raise ParameterError(
                "retrieval(): the E-distances compare the cells of each perturbation, which "
                "an Aligned does not hold; pass the predicted and observed AnnData."
            )
        cells = cell_groups(aligned, predicted, observed,
                            layer=aligned.options.get("layer"),
                            predicted_layer=aligned.options.get("predicted_layer"),
                            max_cells=max_cells, random_state=random_state)
    table = retrieval_ranks(aligned, distance=distance, exclude=exclude,
                            orientation=orientation, dask=dask, cells=cells)
    table.attrs["reference"] = aligned.reference_kind
    table.attrs["unpredicted"] = list(aligned.unpredicted)
    return table
