"""Put predicted and observed perturbations side by side, as changes against one reference.

Every score in :mod:`causalcell.evaluate` compares row i of a prediction with
row i of the observations. :func:`align` builds those rows from two AnnData
objects of any provenance (a causalcell model, another tool's output read
from disk) and checks what would silently corrupt a score: gene sets that
differ, perturbations predicted twice or never observed, NaN predictions, a
control label that does not exist.

Rows are matched by condition (the canonical label, ``"A,B"`` == ``"B,A"``,
and the perturbation type). Both sides become changes against the same
reference, computed from the observations:

- ``reference="control"``: the mean control profile (the usual delta);
- ``reference="perturbed_mean"``: the mean of all observed perturbation
  means, as Systema does to remove the systematic variation that every
  perturbation shares (Viñas Torné et al. 2025).

The targets of each row come from the observed data's
:class:`~causalcell.data.Interventions`: what was done, not what a predictor
claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell._validation import naming, nonfinite_rows
from causalcell.data import Interventions, pseudobulk
from causalcell.data._pseudobulk import CellGroups, pseudobulk_cells, row_weights
from causalcell.data._schema import did_you_mean
from causalcell.data._stats import weighted_mean
from causalcell.data.contract import (
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    check_samples_and_genes,
    checked_interventions,
    expression_matrix,
    warn_if_scales_differ,
)
from causalcell.data.lazy import is_dask_array
from causalcell.errors import DataContractError, ParameterError
from causalcell.evaluate._de import control_rows

__all__ = [
    "ALIGN_DOC",
    "ALIGN_OPTIONS",
    "JOINS",
    "REFERENCES",
    "AlignOptions",
    "Aligned",
    "ObservedCells",
    "align",
    "align_cells",
    "aligned_cells_input",
    "aligned_input",
    "is_pseudobulk",
]

REFERENCES = ("control", "perturbed_mean")
JOINS = ("exact", "inner")
_SHOWN = 10  # names listed in an error message before "... and N more"


class AlignOptions(TypedDict, total=False):
    """The options of :func:`align`, the one list every scoring function takes
    (as keywords, when it is given AnnData rather than an :class:`Aligned`)."""

    reference: str
    join: str
    control_label: str | None
    layer: str | None
    predicted_layer: str | None
    aggregate_predicted: bool


ALIGN_OPTIONS = tuple(AlignOptions.__annotations__)

#: The documentation of the alignment options of every scoring function,
#: inserted with ``{align}`` (see :func:`~causalcell.evaluate._exclude.fill_doc`).
ALIGN_DOC = """\
**align_options
    ``reference``, ``join``, ``control_label``, ``layer``,
    ``predicted_layer``, ``aggregate_predicted``: the options of
    :func:`~causalcell.evaluate.align`, used to align ``predicted`` and
    ``observed`` once. Not with an :class:`~causalcell.evaluate.Aligned`,
    which was aligned with its own options
    (:attr:`Aligned.options <causalcell.evaluate.Aligned>`)."""


def _names(values, limit: int = _SHOWN) -> str:
    values = [str(v) for v in values]
    more = len(values) - limit
    return ", ".join(values[:limit]) + (f" ... and {more} more" if more > 0 else "")


def is_pseudobulk(adata: AnnData) -> bool:
    """True when ``adata`` holds per-perturbation profiles (obs has ``n_cells``)."""
    return "n_cells" in adata.obs.columns


@dataclass(frozen=True, repr=False)
class Aligned:
    """Predicted and observed changes, row by row.

    Attributes
    ----------
    perturbations : pandas.Index
        Condition key of each row (the observed data's canonical label).
    labels : numpy.ndarray of str
        Canonical ``perturbation`` label of each row.
    perturbation_type : numpy.ndarray of str
    genes : pandas.Index
        The compared genes, in the observed data's order.
    predicted, observed : numpy.ndarray, shape (n, n_genes)
        Changes against :attr:`reference` (float64).
    targets : scipy.sparse.csr_array of bool, shape (n, n_genes)
        The measured genes targeted in each row (from the observed data).
    reference : numpy.ndarray, shape (n_genes,)
        The reference profile subtracted from both sides.
    reference_kind : str
        ``"control"`` or ``"perturbed_mean"``.
    n_cells : numpy.ndarray of int
        Observed cells behind each row.
    unpredicted : tuple of str
        Observed perturbations without a prediction (left out).
    options : dict
        The options of :func:`align` that made these rows (every one of
        :data:`ALIGN_OPTIONS`); the scores that need the observed cells
        again (differential expression) read ``layer`` and
        ``control_label`` from here.
    """

    perturbations: pd.Index
    labels: np.ndarray
    perturbation_type: np.ndarray
    genes: pd.Index
    predicted: np.ndarray
    observed: np.ndarray
    targets: sp.csr_array
    reference: np.ndarray
    reference_kind: str
    n_cells: np.ndarray
    unpredicted: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.perturbations)

    def __repr__(self) -> str:
        return (
            f"Aligned({len(self)} perturbations x {len(self.genes)} genes, "
            f"reference={self.reference_kind!r}, {len(self.unpredicted)} observed "
            f"perturbations not predicted)"
        )

    def subset(self, rows: np.ndarray) -> Aligned:
        """The rows ``rows`` (integer indices or boolean mask)."""
        rows = np.arange(len(self))[rows]
        return Aligned(
            perturbations=self.perturbations[rows],
            labels=self.labels[rows],
            perturbation_type=self.perturbation_type[rows],
            genes=self.genes,
            predicted=self.predicted[rows],
            observed=self.observed[rows],
            targets=sp.csr_array(self.targets[rows]),
            reference=self.reference,
            reference_kind=self.reference_kind,
            n_cells=self.n_cells[rows],
            unpredicted=self.unpredicted,
            options=self.options,
        )


def _expression(adata: AnnData, layer: str | None, side: str):
    return expression_matrix(adata, layer, what=f"the {side} data")


def _dense_rows(X, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    if is_dask_array(X):  # out of core (e.g. a backed file): read these rows only
        X = X[rows].compute()
        rows = np.arange(len(rows))
    sub = X[rows][:, cols] if sp.issparse(X) else np.asarray(X)[np.ix_(rows, cols)]
    return sub.toarray() if sp.issparse(sub) else np.asarray(sub, dtype=np.float64)


def _genes(predicted: AnnData, observed: AnnData, join: str) -> tuple[pd.Index, np.ndarray]:
    """The compared genes (observed order) and their columns in ``predicted``."""
    obs_genes = pd.Index(observed.var_names.astype(str))
    pred_genes = pd.Index(predicted.var_names.astype(str))
    for side, genes in (("predicted", pred_genes), ("observed", obs_genes)):
        if not genes.is_unique:
            dup = genes[genes.duplicated()].unique()
            raise DataContractError(
                f"The {side} var_names are not unique ({_names(dup)}); make them unique "
                f"(adata.var_names_make_unique()) or aggregate duplicated genes."
            )
    not_predicted = obs_genes.difference(pred_genes, sort=False)
    not_observed = pred_genes.difference(obs_genes, sort=False)
    if join == "exact" and (len(not_predicted) or len(not_observed)):
        parts = []
        if len(not_predicted):
            parts.append(f"{len(not_predicted)} observed gene(s) have no prediction: "
                         f"{_names(not_predicted)}")
        if len(not_observed):
            parts.append(f"{len(not_observed)} predicted gene(s) are not observed: "
                         f"{_names(not_observed)}")
        raise DataContractError(
            "The predicted and observed gene sets differ: " + "; ".join(parts)
            + did_you_mean(not_predicted, not_observed) + ". "
            "Predict the observed genes, or pass join='inner' to score only the genes both "
            "sides have."
        )
    genes = obs_genes[obs_genes.isin(pred_genes)]
    if not len(genes):
        raise DataContractError(
            f"The predicted and observed data share no gene (predicted e.g. "
            f"{_names(pred_genes, 5)}; observed e.g. {_names(obs_genes, 5)}). Are both "
            f"indexed by gene symbols?"
        )
    return genes, pred_genes.get_indexer(genes)


def _keys(iv: Interventions) -> pd.MultiIndex:
    """(canonical label, kind) of each sample: what two data sets share."""
    cond = iv.conditions
    return pd.MultiIndex.from_arrays(
        [cond[PERTURBATION].to_numpy()[iv.codes], cond[PERTURBATION_TYPE].to_numpy()[iv.codes]]
    )


def _check_unique(keys: pd.MultiIndex, obs_names: pd.Index, side: str, fix: str) -> None:
    codes, uniques = pd.factorize(keys)
    counts = np.bincount(codes, minlength=len(uniques))
    if (counts > 1).any():
        repeated = np.flatnonzero(counts > 1)
        first = uniques[repeated[0]]
        rows = obs_names[np.flatnonzero(codes == repeated[0])]
        n_labels = len(repeated)
        raise DataContractError(
            f"The {side} data has {n_labels} perturbation(s) on more than one row, e.g. "
            f"{first[0]!r} ({first[1]}) in rows {_names(rows, 5)}. Each perturbation must "
            f"have one profile: {fix}"
        )


@dataclass(frozen=True)
class ObservedCells:
    """The one pass over the observed cells: their profiles and the moments they
    were averaged from, which the DE test of the same cells merges instead of
    reading the cells again (see :func:`align_cells`)."""

    observed: AnnData  # the cells (identity: reused only for these)
    layer: str | None
    profiles: AnnData
    cells: CellGroups

    def serves(self, observed: AnnData, layer: str | None, squares: bool = False) -> bool:
        """True when these are ``observed``'s cells, read from ``layer`` (with the
        squares, when asked)."""
        return (self.observed is observed and self.layer == layer
                and (not squares or self.cells.moments.squares is not None))


def _observed_profiles(
    observed: AnnData, layer: str | None, control_label: str | None, *,
    keep_cells: bool = False, squares: bool = False, reuse: ObservedCells | None = None,
) -> tuple[AnnData, str | None, np.ndarray, ObservedCells | None]:
    """Observed per-perturbation profiles, the layer to read them from, the mask
    of their control rows, and (cells only, ``keep_cells``) the pass they came from."""
    cells = None
    if is_pseudobulk(observed):
        profiles, profile_layer = observed, layer
        _expression(profiles, profile_layer, "observed")
    else:
        _expression(observed, layer, "observed")
        if reuse is not None and reuse.serves(observed, layer, squares):
            cells = reuse
        else:
            profiles, groups = pseudobulk_cells(observed, layer=layer, squares=squares)
            cells = ObservedCells(observed, layer, profiles, groups)
        profiles, profile_layer = cells.profiles, None
        if not keep_cells:
            cells = None
    iv = Interventions.from_adata(profiles, warn_unmeasured=False)
    return profiles, profile_layer, control_rows(iv, control_label), cells


def _reference(
    profiles: AnnData, layer: str | None, control: np.ndarray, kind: str
) -> np.ndarray:
    X = _expression(profiles, layer, "observed")
    if kind == "control":
        # The control rows, each weighing its n_cells: the shared control mean.
        return weighted_mean(X, np.where(control, row_weights(profiles), 0.0))
    perturbed = ~profiles.obs[IS_CONTROL].to_numpy(dtype=bool)
    if not perturbed.any():
        raise DataContractError(
            "reference='perturbed_mean' needs perturbed samples in the observed data; "
            "it has only controls."
        )
    return weighted_mean(X, perturbed.astype(np.float64))  # each perturbation once (Systema)


def align(
    predicted: AnnData,
    observed: AnnData,
    *,
    reference: str = "control",
    join: str = "exact",
    control_label: str | None = None,
    layer: str | None = None,
    predicted_layer: str | None = None,
    aggregate_predicted: bool = False,
) -> Aligned:
    """Match predicted and observed perturbations and express both as changes.

    Parameters
    ----------
    predicted
        Predicted expression profiles, one row per perturbation, with the obs
        contract (``perturbation``, ``is_control``, ``perturbation_type``).
        Control rows are ignored. On the same scale as ``observed``.
    observed
        Observed cells, or pseudobulk profiles (obs has ``n_cells``), with
        controls when ``reference="control"``.
    reference
        ``"control"`` (the mean control profile) or ``"perturbed_mean"`` (the
        mean of all observed perturbation means), subtracted from both sides.
    join
        ``"exact"``: the gene sets must be equal (order may differ), every
        predicted perturbation must be observed. ``"inner"``: score the genes
        both have, and drop predicted perturbations that are not observed.
        Observed perturbations without prediction are left out either way
        (listed in :attr:`Aligned.unpredicted`).
    control_label
        Use only the observed controls with this ``perturbation`` label;
        default every control.
    layer, predicted_layer
        Layers holding the observed / predicted expression (``None``: X).
    aggregate_predicted
        Average predicted rows of the same perturbation first (for
        cell-level predictions, such as the Virtual Cell Challenge's). By
        default a perturbation predicted twice is an error.

    Returns
    -------
    Aligned
        Rows in the order of ``predicted``.

    Raises
    ------
    DataContractError
        The gene sets differ (the message names the missing genes) with
        ``join="exact"``; a perturbation is on several predicted (or
        observed pseudobulk) rows; a prediction is NaN or infinite (the
        message names the rows); a predicted perturbation is not observed
        with ``join="exact"``; no perturbation is in common;
        ``control_label`` names no observed control; the observed data has
        no control with ``reference="control"``; either side breaks the obs
        contract.
    ParameterError
        Unknown ``reference`` or ``join``.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> aligned = align(sim.truth, sim.adata)
    >>> aligned.predicted.shape
    (20, 30)
    """
    return align_cells(predicted, observed, reference=reference, join=join,
                       control_label=control_label, layer=layer,
                       predicted_layer=predicted_layer,
                       aggregate_predicted=aggregate_predicted)[0]


def align_cells(
    predicted: AnnData,
    observed: AnnData,
    *,
    reference: str = "control",
    join: str = "exact",
    control_label: str | None = None,
    layer: str | None = None,
    predicted_layer: str | None = None,
    aggregate_predicted: bool = False,
    keep_cells: bool = False,
    squares: bool = False,
    reuse: ObservedCells | None = None,
) -> tuple[Aligned, ObservedCells | None]:
    """:func:`align`, and the pass over the observed cells it averaged.

    With ``keep_cells`` and observed cells (not pseudobulk), also returns the
    :class:`ObservedCells` of that pass (with the sums of squares when
    ``squares``), so that a DE test of the same cells needs no second read;
    else None. ``reuse``: such a pass, used instead of reading ``observed``
    again when it is of the same cells and layer (several predictions scored
    against one set of cells).
    """
    if reference not in REFERENCES:
        raise ParameterError(f"reference={reference!r} is unknown; choose one of "
                             f"{list(REFERENCES)}.")
    if join not in JOINS:
        raise ParameterError(f"join={join!r} is unknown; choose one of {list(JOINS)}.")
    for side, data in (("predicted", predicted), ("observed", observed)):
        if not isinstance(data, AnnData):
            raise DataContractError(
                f"The {side} data must be an AnnData object, got {type(data).__name__}. "
                f"Read files with causalcell.data.read_h5ad(path)."
            )
    for side, data in (("observed", observed), ("predicted", predicted)):
        with naming(f"the {side} data"):
            check_samples_and_genes(data, f"the {side} data")
    genes, pred_cols = _genes(predicted, observed, join)
    # --- observed rows: perturbations, one profile each. Errors of either side
    # say which side they are about.
    with naming("the observed data"):
        checked_interventions(observed, layer=layer, what="the observed data")
        profiles, profile_layer, control, cells = _observed_profiles(
            observed, layer, control_label, keep_cells=keep_cells or reuse is not None,
            squares=squares, reuse=reuse)
        obs_iv = Interventions.from_adata(profiles, warn_unmeasured=False)
    obs_perturbed = np.flatnonzero(~obs_iv.is_control)
    obs_keys = _keys(obs_iv)[obs_perturbed]
    _check_unique(obs_keys, profiles.obs_names[obs_perturbed], "observed",
                  "pass the cells, or pseudobulk profiles without replicate splits.")

    # --- predicted rows
    with naming("the predicted data"):
        if aggregate_predicted:
            _expression(predicted, predicted_layer, "predicted")
            pred_data = pseudobulk(predicted, layer=predicted_layer)
            pred_layer = None
        else:
            pred_data, pred_layer = predicted, predicted_layer
            _expression(pred_data, pred_layer, "predicted")
        pred_iv = Interventions.from_adata(pred_data, warn_unmeasured=False)
    pred_perturbed = np.flatnonzero(~pred_iv.is_control)
    pred_keys = _keys(pred_iv)[pred_perturbed]
    _check_unique(pred_keys, pred_data.obs_names[pred_perturbed], "predicted",
                  "average the predicted cells (aggregate_predicted=True) or drop the "
                  "duplicates.")

    where = obs_keys.get_indexer(pred_keys)
    missing = where < 0
    if missing.any() and join == "exact":
        observed_labels = set(obs_keys.get_level_values(0))
        shown = [f"{lab} ({kind})" + (" [observed with another perturbation_type]"
                                      if lab in observed_labels else "")
                 for lab, kind in pred_keys[missing]]
        raise DataContractError(
            f"{int(missing.sum())} predicted perturbation(s) are not in the observed data: "
            f"{_names(shown)}. Drop them, or pass join='inner' to score only the "
            f"perturbations both sides have."
        )
    pred_rows = pred_perturbed[~missing]
    obs_rows = obs_perturbed[where[~missing]]
    if not len(pred_rows):
        raise DataContractError(
            f"No predicted perturbation is in the observed data (predicted e.g. "
            f"{_names(pred_keys.get_level_values(0), 5)}; observed e.g. "
            f"{_names(obs_keys.get_level_values(0), 5)})."
        )

    obs_cols = pd.Index(profiles.var_names.astype(str)).get_indexer(genes)
    pred_values = _dense_rows(_expression(pred_data, pred_layer, "predicted"), pred_rows,
                              pred_cols)
    bad = nonfinite_rows(pred_values)
    if len(bad):
        rows = [f"{name} ({label})" for name, label in zip(
            pred_data.obs_names[pred_rows[bad]], pred_iv.labels[pred_rows[bad]], strict=True)]
        raise DataContractError(
            f"{len(bad)} predicted row(s) contain NaN or infinite values: "
            f"{_names(rows)}. Every scored gene needs a finite prediction; fix the predictor "
            f"or drop those rows."
        )
    ref = _reference(profiles, profile_layer, control, reference)[obs_cols]
    obs_values = _dense_rows(_expression(profiles, profile_layer, "observed"), obs_rows,
                             obs_cols)
    warn_if_scales_differ(pred_values, obs_values)
    targets = sp.csr_array(obs_iv.mask[obs_rows][:, obs_cols], dtype=bool)
    cond = obs_iv.conditions.iloc[obs_iv.codes[obs_rows]]
    n_cells = (profiles.obs["n_cells"].to_numpy()[obs_rows].astype(np.int64)
               if "n_cells" in profiles.obs.columns else np.ones(len(obs_rows), np.int64))
    matched = np.zeros(len(obs_perturbed), dtype=bool)
    matched[where[~missing]] = True
    unpredicted = tuple(obs_iv.condition_of()[obs_perturbed[~matched]].astype(str))
    aligned = Aligned(
        perturbations=pd.Index(cond.index.to_numpy().astype(str), name="perturbation"),
        labels=cond[PERTURBATION].to_numpy().astype(str),
        perturbation_type=cond[PERTURBATION_TYPE].to_numpy().astype(str),
        genes=genes,
        predicted=pred_values - ref,
        observed=obs_values - ref,
        targets=targets,
        reference=ref,
        reference_kind=reference,
        n_cells=n_cells,
        unpredicted=unpredicted,
        options={"reference": reference, "join": join, "control_label": control_label,
                 "layer": layer, "predicted_layer": predicted_layer,
                 "aggregate_predicted": aggregate_predicted},
    )
    return aligned, cells


def aligned_input(where: str, predicted: AnnData | Aligned, observed: AnnData | None,
                  options: Mapping[str, Any]) -> Aligned:
    """The aligned rows a scoring function works on: ``predicted`` itself when it is
    an :class:`Aligned`, else :func:`align` of ``predicted`` and ``observed`` with
    ``options`` (the function's ``**align_options``).

    Raises
    ------
    ParameterError
        An option that is not one of :data:`ALIGN_OPTIONS`, or options given
        with an :class:`Aligned` (it was aligned with its own).
    DataContractError
        No observed data with AnnData predictions, and every error of
        :func:`align`.
    """
    return aligned_cells_input(where, predicted, observed, options)[0]


def aligned_cells_input(
    where: str, predicted: AnnData | Aligned, observed: AnnData | None,
    options: Mapping[str, Any], *, keep_cells: bool = False, squares: bool = False,
    reuse: ObservedCells | None = None,
) -> tuple[Aligned, ObservedCells | None]:
    """:func:`aligned_input`, and the pass over the observed cells when it read them
    (see :func:`align_cells`; None for an :class:`Aligned` or pseudobulk rows)."""
    unknown = [name for name in options if name not in ALIGN_OPTIONS]
    if unknown:
        raise ParameterError(
            f"{where}() got unknown option(s) {unknown}; the options of align() are "
            f"{list(ALIGN_OPTIONS)}."
        )
    if isinstance(predicted, Aligned):
        if options:
            raise ParameterError(
                f"{where}(): {sorted(options)} are options of align(), and the Aligned given "
                f"was aligned with its own ({predicted.options or 'the defaults'}). Pass them "
                f"to align(), or pass the predicted AnnData instead."
            )
        return predicted, None
    if observed is None:
        raise DataContractError(
            f"{where}(): the observed data must be an AnnData object, got None. Pass "
            f"observed= with AnnData predictions, or an Aligned from "
            f"causalcell.evaluate.align(predicted, observed)."
        )
    return align_cells(predicted, observed, **options, keep_cells=keep_cells,
                       squares=squares, reuse=reuse)
