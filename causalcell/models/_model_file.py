"""The saved-file schema of every causalcell model, in one place.

A model is saved as one ``.npz`` file: named numeric / string arrays plus a
JSON header (format name and version, the causalcell version, the class, its
parameters). Loading reads with ``allow_pickle=False``, so it never executes
code. The file is written atomically.

Array names are part of the format. Those that earlier releases wrote under
another name are read through :data:`RENAMED_ARRAYS`, so files saved before a
rename still load.

Nothing read from a file is trusted: the header must be a JSON object whose
fields have their types, the stored parameters must pass the model's own
parameter checks (:func:`model_from_header`), and every array must have its
dtype kind and its shape (:func:`check_arrays`). A damaged or tampered file is
a :class:`~causalcell.errors.DataFileError` naming the file and the field.
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
from causalcell.data._schema import PERTURBATION, PERTURBATION_TYPE, gene_name_problem
from causalcell.errors import CausalCellError, DataFileError

__all__ = [
    "BASELINE_LEVELS_N",
    "CONDITIONAL_LEVELS_N",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "RENAMED_ARRAYS",
    "check_arrays",
    "check_genes",
    "level_array_names",
    "level_arrays_spec",
    "levels_from_arrays",
    "levels_to_arrays",
    "load_arrays",
    "model_from_header",
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
    if dest.is_dir():
        raise DataFileError(
            f"{str(dest)!r} is a directory; save() writes one file. Give a file path, e.g. "
            f"{str(dest / 'model.npz')!r}."
        )
    if dest.suffix != ".npz":
        dest = dest.with_name(dest.name + ".npz")
    if not dest.parent.is_dir():
        raise DataFileError(f"Directory {str(dest.parent)!r} does not exist; create it first.")
    if dest.is_dir():
        raise DataFileError(
            f"{str(dest)!r} is a directory; save() writes one file. Give a file path, e.g. "
            f"{str(dest / 'model.npz')!r}."
        )
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
    meta = arrays.pop(_META)
    if meta.dtype.kind != "U" or meta.ndim != 0:
        raise DataFileError(f"{str(p)!r}: the model header is not a JSON text; the file is "
                            f"damaged or was not written by save().")
    try:
        header = json.loads(str(meta))
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{str(p)!r}: the model header is corrupt ({exc}).") from exc
    _check_header(header, p)
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


# Header field -> the JSON type it must have.
_HEADER_FIELDS: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "format_version": (int,),
    "causalcell_version": (str,),
    "class": (str,),
    "params": (dict,),
    "meta": (dict,),
}


def _check_header(header: Any, path: Path) -> None:
    """The header is a JSON object and each field has its type (DataFileError otherwise)."""
    if not isinstance(header, dict):
        raise DataFileError(
            f"{str(path)!r}: the model header is a JSON {type(header).__name__}, not an object "
            f"with the fields {sorted(_HEADER_FIELDS)}; the file is damaged or was not "
            f"written by save()."
        )
    for field, types in _HEADER_FIELDS.items():
        value = header.get(field)
        if not isinstance(value, types) or isinstance(value, bool):
            raise DataFileError(
                f"{str(path)!r}: the model header's field {field!r} is {value!r}, not a JSON "
                f"{'object' if dict in types else types[0].__name__}; the file is damaged or "
                f"was not written by save()."
            )


def model_from_header(cls: type, header: dict[str, Any], path: object,
                      convert: dict[str, Any] | None = None) -> Any:
    """A model of class ``cls`` with the parameters stored in a file, checked.

    The parameters go through the model's own checks (its ``_check_params``),
    so a file cannot give a model a parameter its constructor would refuse.

    Parameters
    ----------
    cls
        The model class.
    header
        The header read by :func:`load_arrays`.
    path
        The file, for messages.
    convert
        Parameter name -> function turning its JSON value into the parameter
        (e.g. a list into a tuple).

    Raises
    ------
    DataFileError
        A parameter the class does not have, or one its checks refuse.
    """
    params = dict(header["params"])
    valid = set(cls().get_params(deep=False))
    unknown = sorted(set(params) - valid)
    if unknown:
        raise DataFileError(
            f"{str(path)!r}: the stored parameters {unknown} are not parameters of "
            f"{cls.__name__} (it has {sorted(valid)}); the file is damaged or was written by "
            f"another version. Refit the model."
        )
    for name, function in (convert or {}).items():
        if isinstance(params.get(name), list):
            params[name] = function(params[name])
    model = cls(**params)
    check = getattr(model, "_check_params", None)
    if check is not None:
        try:
            check()
        except CausalCellError as exc:
            raise DataFileError(
                f"{str(path)!r}: a stored parameter is invalid ({exc}); the file is damaged or "
                f"was edited. Refit the model, or save it again."
            ) from exc
    return model


#: An array's expected dtype kinds (numpy ``dtype.kind`` letters) and shape,
#: whose entries are sizes or names of sizes shared between arrays.
ArraySpec = tuple[str, tuple[int | str, ...]]
#: Human words for dtype kinds, for messages.
_KIND_WORDS = {"f": "float", "i": "integer", "u": "integer", "U": "string"}


def check_arrays(arrays: dict[str, np.ndarray], spec: dict[str, ArraySpec], path: object,
                 sizes: dict[str, int]) -> dict[str, int]:
    """Check the dtype kind and shape of every array of a model file.

    Parameters
    ----------
    arrays
        The arrays read by :func:`load_arrays`.
    spec
        Array name -> (dtype kinds, shape). A named size that is not in
        ``sizes`` yet takes the size of the first array that has it; every
        other array must then agree.
    path
        The file, for messages.
    sizes
        Known sizes (e.g. ``{"genes": 30}``); completed and returned.

    Raises
    ------
    DataFileError
        A missing array, or one of another dtype or shape, named with what
        was expected.
    """
    sizes = dict(sizes)
    missing = [name for name in spec if name not in arrays]
    if missing:
        raise DataFileError(
            f"{str(path)!r} lacks the array(s) {missing} of a fitted model: the file is "
            f"damaged or was not written by save()."
        )
    for name, (kinds, shape) in spec.items():
        arr = arrays[name]
        ok = arr.dtype.kind in kinds and arr.ndim == len(shape)
        if ok:
            for dim, size in zip(shape, arr.shape, strict=True):
                if isinstance(dim, str):
                    dim = sizes.setdefault(dim, size)
                ok = ok and size == dim
        if not ok:
            words = " or ".join(dict.fromkeys(_KIND_WORDS.get(k, k) for k in kinds))
            expected = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in shape)
            raise DataFileError(
                f"{str(path)!r}: array {name!r} is {arr.dtype} of shape {arr.shape}, expected "
                f"{words} of shape {expected}; the file is damaged or was edited."
            )
    return sizes


def check_genes(genes: np.ndarray, path: object) -> np.ndarray:
    """The gene names of a model file: unique symbols (DataFileError otherwise)."""
    names = pd.Index(genes.astype(str))
    problem = gene_name_problem(names)
    if problem is None and not names.is_unique:
        problem = f"are not unique (e.g. {names[names.duplicated()][:3].tolist()})"
    if problem is not None:
        raise DataFileError(f"{str(path)!r}: the model's gene names {problem}; the file is "
                            f"damaged or was edited.")
    return genes


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


def level_arrays_spec(n_samples_key: str) -> dict[str, ArraySpec]:
    """The :func:`check_arrays` spec of the arrays :func:`levels_to_arrays` writes."""
    return {
        **{name: ("U", ("levels",)) for name in _LEVEL_LABELS},
        "levels_level": ("fiu", ("levels",)),
        n_samples_key: ("iu", ("levels",)),
    }


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
