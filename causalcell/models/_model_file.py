"""The saved-file schema of every causalcell model, in one place.

A model is saved as one ``.npz`` file: named numeric / string arrays plus a
JSON header (format name and version, the causalcell version, the class, its
parameters). Loading reads with ``allow_pickle=False``, so it never executes
code. The file is written atomically.

Array names are part of the format. Those that earlier releases wrote under
another name are read through :data:`RENAMED_ARRAYS`, so files saved before a
rename still load.
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

from causalcell._version import __version__
from causalcell.data._schema import PERTURBATION, PERTURBATION_TYPE
from causalcell.errors import DataFileError

__all__ = [
    "BASELINE_LEVELS_N",
    "CONDITIONAL_LEVELS_N",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "RENAMED_ARRAYS",
    "level_array_names",
    "levels_from_arrays",
    "levels_to_arrays",
    "load_arrays",
    "save_arrays",
]

MODEL_FORMAT = "causalcell-model"
MODEL_FORMAT_VERSION = 1
_META = "__meta__"

#: Array names written by earlier releases -> the name they are read under now.
RENAMED_ARRAYS = {"control_": "control_mean_"}

#: Array name of the ``n_samples`` column of the saved target levels. The two
#: model families wrote it under different names before the schema lived
#: here; each keeps its own so that files already saved still load.
CONDITIONAL_LEVELS_N = "levels_n"
BASELINE_LEVELS_N = "levels_n_samples"


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
    for old, new in RENAMED_ARRAYS.items():
        if old in arrays and new not in arrays:
            arrays[new] = arrays.pop(old)
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
