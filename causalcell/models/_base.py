"""The estimator protocol shared by every causalcell model, and its helpers.

A model follows scikit-learn's conventions (parameters in ``__init__``,
learned state in attributes ending in ``_``, ``fit`` returns ``self``,
:func:`sklearn.base.clone` works) with perturbation-shaped data:

- ``fit(adata, network=None)`` takes cells or pseudobulk rows following the
  data contract (:mod:`causalcell.data.contract`);
- ``predict(perturbations)`` takes an AnnData or a DataFrame carrying the obs
  contract (which genes, which kind, the level T) and returns an AnnData with
  the request's obs and the model's genes as var, rows aligned with the
  request.

The helpers here are the one place where a request's levels T are resolved
(knockout: 0; given: as given; missing: the mean level observed in training
for that perturbation), and where requests are checked against the model's genes. How models are
saved and loaded without executing code is in :mod:`causalcell.models._model_file`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.base import BaseEstimator

from causalcell.data import tidy_obs
from causalcell.data._interventions import Interventions
from causalcell.data._schema import did_you_mean
from causalcell.data._sparse import gather_entries
from causalcell.data.contract import (
    PERTURBATION,
    PERTURBATION_TYPE,
    checked_interventions,
    expression_matrix,
)
from causalcell.errors import NotFittedError, PredictionError

__all__ = [
    "PerturbationModel",
    "check_fitted",
    "make_prediction",
    "observed_target_levels",
    "prediction_request",
    "resolve_levels",
    "training_data",
]


class PerturbationModel(BaseEstimator):
    """Base class of causalcell models (see the module docstring for the protocol).

    Subclasses implement ``fit`` and ``predict``; this class only provides
    scikit-learn's parameter handling, a uniform not-fitted check and the
    names of the fitted genes.

    Attributes
    ----------
    genes_ : pandas.Index
        The genes the model was fitted on (training ``var_names``), in the
        order of its predictions' columns.
    n_features_in_ : int
        Number of genes (scikit-learn's name).
    feature_names_in_ : numpy.ndarray of str
        The genes (scikit-learn's name).
    control_mean_ : numpy.ndarray
        The training control mean, which every model predicts for control
        rows (NaN where the training data had no controls).
    """

    def _check_fitted(self) -> None:
        check_fitted(self, "genes_")

    def _set_genes(self, genes: pd.Index) -> None:
        """The fitted genes under every name scikit-learn's conventions expect."""
        self.genes_ = pd.Index(genes, dtype=str)
        self.n_features_in_ = len(self.genes_)
        self.feature_names_in_ = self.genes_.to_numpy(dtype=object)

    def fit(self, adata: AnnData, network: Any = None) -> PerturbationModel:  # pragma: no cover
        raise NotImplementedError

    def predict(self, perturbations: AnnData | pd.DataFrame) -> AnnData:  # pragma: no cover
        raise NotImplementedError


def check_fitted(model: object, attribute: str = "genes_") -> None:
    """Raise :class:`~causalcell.errors.NotFittedError` unless ``model`` has ``attribute``.

    Raises
    ------
    NotFittedError
        Naming the model class and what to call first.
    """
    if not hasattr(model, attribute):
        raise NotFittedError(
            f"This {type(model).__name__} is not fitted yet: call fit(adata, network) "
            f"before using it."
        )


def training_data(
    adata: AnnData, layer: str | None = None, *, scan_values: bool = True
) -> tuple[Any, Interventions]:
    """Validate training data and return its expression matrix and interventions.

    Parameters
    ----------
    adata
        Cells or pseudobulk rows following the data contract.
    layer
        Layer with log-normalized expression; ``None`` uses ``X``.
    scan_values
        Scan the expression for NaN and infinite values. ``False`` only for a
        fit whose pass over the samples checks them itself
        (:func:`causalcell.models._solve.fit_linear`): X is then read once.

    Returns
    -------
    X : numpy.ndarray or scipy sparse matrix
        The expression matrix as stored (not copied, not densified).
    interventions : Interventions

    Raises
    ------
    DataContractError
        If ``adata`` breaks the contract.
    """
    interventions = checked_interventions(adata, layer=layer, check_expression=scan_values)
    return expression_matrix(adata, layer), interventions


def prediction_request(
    perturbations: AnnData | pd.DataFrame, genes: pd.Index
) -> tuple[pd.DataFrame, Interventions]:
    """Parse a prediction request against the model's genes.

    Parameters
    ----------
    perturbations
        An AnnData (its obs is used) or a DataFrame with the obs contract
        columns. ``expression_level_after_perturbation`` is optional.
    genes
        The genes the model was fitted on.

    Returns
    -------
    obs : pandas.DataFrame
        A copy of the request's obs.
    interventions : Interventions
        Parsed against ``genes``.

    Raises
    ------
    PredictionError
        If the request is not an AnnData / DataFrame, or names a targeted
        gene the model does not know (it cannot be clamped).
    DataContractError
        If the request breaks the obs contract.
    """
    if isinstance(perturbations, AnnData):
        obs = perturbations.obs.copy()
    elif isinstance(perturbations, pd.DataFrame):
        obs = perturbations.copy()
    else:
        raise PredictionError(
            f"predict() takes an AnnData or a DataFrame with the columns "
            f"'{PERTURBATION}', 'is_control', '{PERTURBATION_TYPE}'; got "
            f"{type(perturbations).__name__}."
        )
    iv = Interventions.from_obs(obs, genes, warn_unmeasured=False)
    if iv.unmeasured:
        shown = ", ".join(iv.unmeasured[:10])
        raise PredictionError(
            f"Cannot predict perturbations of {len(iv.unmeasured)} gene(s) unknown to the "
            f"model: {shown}{did_you_mean(iv.unmeasured, genes)}. The model was fitted on "
            f"{len(genes)} genes and can only clamp "
            f"those; drop these perturbations from the request or refit on data measuring "
            f"the genes."
        )
    return obs, iv


def observed_target_levels(X: Any, interventions: Interventions) -> pd.DataFrame:
    """Mean level of each measured target per training condition.

    For each entry of ``interventions.mask`` the level is T when known
    (knockouts: 0) and otherwise the measured expression of the targeted gene
    in that sample; entries are averaged per (condition, gene).

    Parameters
    ----------
    X
        Expression matrix (dense or sparse) aligned with ``interventions``.
    interventions
        The training interventions.

    Returns
    -------
    pandas.DataFrame
        Columns ``perturbation`` (canonical label), ``perturbation_type``,
        ``gene``, ``level``, ``n_samples``.
    """
    mask = interventions.mask
    rows, cols = interventions.entry_rows, mask.indices
    measured = gather_entries(X, rows, cols)
    level = np.where(np.isnan(interventions.levels), measured, interventions.levels)
    cond = interventions.conditions
    frame = pd.DataFrame(
        {
            PERTURBATION: cond[PERTURBATION].to_numpy()[interventions.codes[rows]],
            PERTURBATION_TYPE: cond[PERTURBATION_TYPE].to_numpy()[interventions.codes[rows]],
            "gene": interventions.genes.to_numpy()[cols],
            "level": level,
        }
    )
    out = frame.groupby([PERTURBATION, PERTURBATION_TYPE, "gene"], sort=True)["level"].agg(
        ["mean", "size"]
    )
    out = out.rename(columns={"mean": "level", "size": "n_samples"}).reset_index()
    return out


def resolve_levels(interventions: Interventions, known: pd.DataFrame) -> np.ndarray:
    """Levels T for every entry of a request's mask, filling unknown ones.

    Given levels are kept (knockouts are already 0). A missing level takes
    the mean level observed in training for the same perturbation and gene
    (``known``, from :func:`observed_target_levels`).

    Parameters
    ----------
    interventions
        The request, parsed against the model's genes.
    known
        The model's table of observed training levels.

    Returns
    -------
    numpy.ndarray
        Levels aligned with ``interventions.mask`` entries, all finite.

    Raises
    ------
    PredictionError
        If a level is missing and the perturbation was not seen in training,
        naming the perturbation and how to give T.
    """
    levels = interventions.levels.astype(float).copy()
    missing = np.flatnonzero(np.isnan(levels))
    if len(missing) == 0:
        return levels
    mask = interventions.mask
    rows = interventions.entry_rows[missing]
    cond = interventions.conditions
    query = pd.DataFrame(
        {
            PERTURBATION: cond[PERTURBATION].to_numpy()[interventions.codes[rows]],
            PERTURBATION_TYPE: cond[PERTURBATION_TYPE].to_numpy()[interventions.codes[rows]],
            "gene": interventions.genes.to_numpy()[mask.indices[missing]],
        }
    )
    merged = query.merge(known, how="left", on=[PERTURBATION, PERTURBATION_TYPE, "gene"])
    values = merged["level"].to_numpy(dtype=float)
    if np.isnan(values).any():
        i = int(np.flatnonzero(np.isnan(values))[0])
        label, kind, gene = query.iloc[i]
        raise PredictionError(
            f"The level T of {gene} in the {kind} {label!r} is unknown and the model saw no "
            f"training sample of that perturbation to estimate it from. Give it in the "
            f"request's 'expression_level_after_perturbation' column (e.g. the knockdown "
            f"level on the log-normalized scale), or use perturbation_type='knockout' "
            f"(T = 0)."
        )
    levels[missing] = values
    return levels


def make_prediction(obs: pd.DataFrame, genes: pd.Index, values: np.ndarray) -> AnnData:
    """Wrap predicted profiles as an AnnData with the request's obs and the model's genes."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(obs), len(genes)):
        raise PredictionError(
            f"internal: prediction has shape {values.shape}, expected {(len(obs), len(genes))}"
        )
    obs = tidy_obs(obs.copy())  # categorical labels: scanpy can group by them
    obs.index = obs.index.astype(str)  # AnnData requires string names
    return AnnData(X=values, obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
