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
for that perturbation), where requests are checked against the model's genes,
and where models are saved and loaded without executing code.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.base import BaseEstimator

from causalcell._version import __version__
from causalcell.data._interventions import Interventions
from causalcell.data._sparse import gather_entries
from causalcell.data.contract import (
    PERTURBATION,
    PERTURBATION_TYPE,
    checked_interventions,
    expression_matrix,
)
from causalcell.errors import DataFileError, NotFittedError, PredictionError

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "PerturbationModel",
    "check_fitted",
    "level_array_names",
    "levels_from_arrays",
    "levels_to_arrays",
    "load_arrays",
    "make_prediction",
    "observed_target_levels",
    "prediction_request",
    "resolve_levels",
    "save_arrays",
    "training_data",
]

MODEL_FORMAT = "causalcell-model"
MODEL_FORMAT_VERSION = 1
_META = "__meta__"


class PerturbationModel(BaseEstimator):
    """Base class of causalcell models (see the module docstring for the protocol).

    Subclasses implement ``fit`` and ``predict``; this class only provides
    scikit-learn's parameter handling and a uniform not-fitted check.
    """

    def _check_fitted(self) -> None:
        check_fitted(self, "genes_")

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


def training_data(adata: AnnData, layer: str | None = None) -> tuple[Any, Interventions]:
    """Validate training data and return its expression matrix and interventions.

    Parameters
    ----------
    adata
        Cells or pseudobulk rows following the data contract.
    layer
        Layer with log-normalized expression; ``None`` uses ``X``.

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
    interventions = checked_interventions(adata, layer=layer)
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
            f"model: {shown}. The model was fitted on {len(genes)} genes and can only clamp "
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
    obs = obs.copy()
    obs.index = obs.index.astype(str)  # AnnData requires string names
    return AnnData(X=values, obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=str)))


# ---------------------------------------------------------------- persistence
def save_arrays(
    path: str | os.PathLike[str], model: object, arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
) -> Path:
    """Save a model as one ``.npz`` file: numeric / string arrays plus JSON metadata.

    No pickle is involved: :func:`load_arrays` reads with
    ``allow_pickle=False``, so loading a model never executes code. The file
    is written atomically.

    Parameters
    ----------
    path
        Destination (``.npz`` is appended by numpy if missing; the returned
        path is the real one).
    model
        The estimator (its class name and ``get_params()`` are stored).
    arrays
        Named arrays; object arrays must hold strings only.
    meta
        JSON-serializable extra metadata.

    Returns
    -------
    pathlib.Path
    """
    dest = Path(path)
    if dest.suffix != ".npz":
        dest = dest.with_name(dest.name + ".npz")
    if not dest.parent.is_dir():
        raise DataFileError(f"Directory {str(dest.parent)!r} does not exist; create it first.")
    params = model.get_params(deep=False) if hasattr(model, "get_params") else {}
    header = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "causalcell_version": __version__,
        "class": type(model).__name__,
        "params": {k: v for k, v in params.items() if _jsonable(v)},
        "meta": meta,
    }
    payload: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.dtype == object:
            arr = arr.astype(str)
        payload[name] = arr
    payload[_META] = np.array(json.dumps(header))
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **payload)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def load_arrays(
    path: str | os.PathLike[str], expected_class: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_arrays`; never executes code.

    Returns
    -------
    arrays : dict of numpy.ndarray
    header : dict
        ``format``, ``format_version``, ``causalcell_version``, ``class``,
        ``params``, ``meta``.

    Raises
    ------
    DataFileError
        Missing file, not a causalcell model (or truncated / corrupt), a
        model of another class, or a format version this release cannot read.
    """
    p = Path(path)
    if not p.exists():
        raise DataFileError(f"Model file not found: {str(p)!r}.")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataFileError(
            f"{str(p)!r} is not a readable causalcell model file (truncated or not an "
            f".npz written by save()): {exc}"
        ) from exc
    if _META not in arrays:
        raise DataFileError(f"{str(p)!r} is an .npz file but not a causalcell model.")
    try:
        header = json.loads(str(arrays.pop(_META)))
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{str(p)!r}: the model header is corrupt ({exc}).") from exc
    if header.get("format") != MODEL_FORMAT:
        raise DataFileError(f"{str(p)!r} is not a causalcell model file.")
    if header.get("format_version") != MODEL_FORMAT_VERSION:
        raise DataFileError(
            f"{str(p)!r} was written in model format {header.get('format_version')} by "
            f"causalcell {header.get('causalcell_version')}; this causalcell "
            f"({__version__}) reads format {MODEL_FORMAT_VERSION}. Refit the model, or load "
            f"it with the causalcell version that wrote it."
        )
    if header.get("class") != expected_class:
        raise DataFileError(
            f"{str(p)!r} holds a {header.get('class')}, not a {expected_class}; load it with "
            f"{header.get('class')}.load()."
        )
    return arrays, header


# Array name -> string column of the table of observed target levels. The
# levels go to "levels_level"; the n_samples column's array name is chosen by
# each model (see levels_to_arrays).
_LEVEL_LABELS = {
    "levels_perturbation": PERTURBATION,
    "levels_type": PERTURBATION_TYPE,
    "levels_gene": "gene",
}


def level_array_names(n_samples_key: str) -> tuple[str, ...]:
    """Names of the arrays :func:`levels_to_arrays` writes (to check a file for them)."""
    return (*_LEVEL_LABELS, "levels_level", n_samples_key)


def levels_to_arrays(table: pd.DataFrame, n_samples_key: str) -> dict[str, np.ndarray]:
    """A table of observed target levels as named arrays for :func:`save_arrays`.

    Parameters
    ----------
    table
        As returned by :func:`observed_target_levels`.
    n_samples_key
        Array name of the ``n_samples`` column. Models wrote it under
        different names before this helper existed; each keeps its own so
        that files already saved still load.

    Returns
    -------
    dict of numpy.ndarray
        String arrays for the labels and genes, float64 levels, int64
        counts, named by :func:`level_array_names`.
    """
    arrays = {name: table[col].to_numpy(dtype=str) for name, col in _LEVEL_LABELS.items()}
    arrays["levels_level"] = table["level"].to_numpy(dtype=np.float64)
    arrays[n_samples_key] = table["n_samples"].to_numpy(dtype=np.int64)
    return arrays


def levels_from_arrays(arrays: dict[str, np.ndarray], n_samples_key: str) -> pd.DataFrame:
    """Inverse of :func:`levels_to_arrays`.

    Raises
    ------
    KeyError
        If an array is missing (callers turn it into a
        :class:`~causalcell.errors.DataFileError` naming the file).
    """
    table = pd.DataFrame(
        {col: arrays[name].astype(str).astype(object) for name, col in _LEVEL_LABELS.items()}
    )
    table["level"] = arrays["levels_level"].astype(np.float64)
    table["n_samples"] = arrays[n_samples_key].astype(np.int64)
    return table


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
