"""Argument checks shared by every module: one copy of each rule and of its wording.

Also the one way a public parameter is renamed: the old name keeps working
for one release with a :class:`FutureWarning` that names the new one
(:func:`renamed`).
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from anndata import AnnData

from causalcell.errors import CausalCellError, DataContractError, ParameterError

__all__ = [
    "DEPRECATED",
    "check_anndata",
    "check_choice",
    "check_fraction",
    "check_layer",
    "check_level_grid",
    "check_n_jobs",
    "check_path",
    "check_random_state",
    "is_int",
    "is_real",
    "naming",
    "nonfinite_rows",
    "renamed",
]


class _Deprecated:
    """Default of a renamed parameter's old name: tells "not given" from any value."""

    def __repr__(self) -> str:
        return "<deprecated>"


#: Default value of a deprecated (renamed) parameter.
DEPRECATED: Any = _Deprecated()


def renamed(where: str, old: str, old_value: Any, new: str, new_value: Any, default: Any) -> Any:
    """The value of a renamed parameter, accepting its old name for one release.

    Parameters
    ----------
    where
        The function, for the messages (``"learn_network"``).
    old, new
        The old and the new parameter name.
    old_value, new_value
        What the caller passed under each name (``old_value`` is
        :data:`DEPRECATED` when the old name was not used).
    default
        The new parameter's default, to tell whether both names were given.

    Returns
    -------
    The value to use.

    Raises
    ------
    ParameterError
        If both names were given different values.

    Warns
    -----
    FutureWarning
        When the old name is used.
    """
    if old_value is DEPRECATED:
        return new_value
    if new_value is not default and new_value != old_value:
        raise ParameterError(
            f"{where}: {old}= is the old name of {new}=; give only {new}= (got {old}="
            f"{old_value!r} and {new}={new_value!r})."
        )
    warnings.warn(
        f"{where}: the parameter {old}= is renamed {new}=; {old}= will stop working in the "
        f"next release. Write {new}={old_value!r}.",
        FutureWarning,
        stacklevel=3,
    )
    return old_value


def is_int(value: object) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_real(value: object) -> bool:
    """A finite real number that is not a bool (numpy numbers included)."""
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
        and math.isfinite(float(value))
    )


def check_fraction(name: str, value: object, *, closed_right: bool = False) -> float:
    """``value`` as a float in (0, 1) (or (0, 1] with ``closed_right``), else ParameterError."""
    right = "]" if closed_right else ")"
    if not is_real(value) or not (0 < float(value) < 1 or (closed_right and value == 1)):
        raise ParameterError(
            f"{name}={value!r} is invalid; {name} must be a number in (0, 1{right}."
        )
    return float(value)


def check_level_grid(
    levels: object, n_targets: int, label: str, where: str,
    upper: np.ndarray | None = None, why: str = "",
) -> np.ndarray:
    """Levels T of a perturbation as an (n, n_targets) float array, else ParameterError.

    Shape ``(n,)`` for one target or ``(n, n_targets)``, in the label's order;
    finite and >= 0 (log-normalized expression), and at most ``upper`` (one
    bound per target, explained by ``why`` in the message) when given.
    """
    try:
        values = np.asarray(levels, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(
            f"{where}: levels must be numbers (levels T of {label!r}); got {levels!r:.80}."
        ) from None
    if values.ndim == 1 and n_targets == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[1] != n_targets or values.shape[0] == 0:
        raise ParameterError(
            f"{where}: levels must have shape (n,) for one target or (n, {n_targets}) for the "
            f"{n_targets} targets of {label!r}; got shape {np.shape(levels)}."
        )
    if not np.isfinite(values).all():
        raise ParameterError(f"{where}: levels must be finite numbers.")
    top = np.full(n_targets, np.inf) if upper is None else np.asarray(upper, dtype=np.float64)
    bad = (values < 0) | (values > top[None, :])
    if bad.any():
        i, j = np.argwhere(bad)[0]
        bound = "" if upper is None else f", {top[j]:.4g}"
        raise ParameterError(
            f"{where}: level T = {float(values[i, j])!r} of target {j + 1} of {label!r} is outside "
            f"[0{bound}]; levels must be >= 0 (log-normalized expression){why}."
        )
    return values


def nonfinite_rows(values: np.ndarray) -> np.ndarray:
    """Indices of the rows of a 2-d array that hold a NaN or an infinite value.

    The one test behind every "finite values" check: the data contract's scan
    of ``X`` (:func:`causalcell.data.validate`, block by block), the metrics,
    :func:`~causalcell.evaluate.pairwise_retrieval` and
    :func:`~causalcell.evaluate.align`; each caller words its own error.
    """
    # A finite row sum proves the row finite (NaN and inf propagate through +)
    # without a boolean temporary of the whole array; only the other rows are
    # looked at value by value (a sum can also overflow, silently: not the user's concern).
    with np.errstate(over="ignore", invalid="ignore"):
        suspect = np.flatnonzero(~np.isfinite(values.sum(axis=1)))
    return suspect[~np.isfinite(values[suspect]).all(axis=1)]


def check_n_jobs(n_jobs: object) -> int:
    """A joblib ``n_jobs``: a positive number of processes, or -1 (all cores)."""
    if not is_int(n_jobs) or n_jobs == 0:
        raise ParameterError(
            f"n_jobs={n_jobs!r} is invalid; use a positive number of processes, or -1 for all "
            f"cores."
        )
    return int(n_jobs)


def check_random_state(value: object, name: str = "random_state") -> Any:
    """A seed for :func:`numpy.random.default_rng`: a non-negative integer, None, or a
    :class:`numpy.random.Generator`."""
    if value is None or isinstance(value, np.random.Generator):
        return value
    if not is_int(value) or value < 0:
        raise ParameterError(
            f"{name}={value!r} is invalid; use a non-negative integer, None or a "
            f"numpy.random.Generator."
        )
    return int(value)


def check_choice(name: str, value: object, choices: Sequence[str], owner: str = "") -> str:
    """``value`` if it is one of ``choices``, else a ParameterError listing them."""
    if not isinstance(value, str) or value not in choices:
        prefix = f"{owner}: " if owner else ""
        raise ParameterError(
            f"{prefix}{name}={value!r} is invalid; choose one of "
            f"{', '.join(repr(c) for c in choices)}."
        )
    return value


def check_layer(layer: object, owner: str = "") -> None:
    """ParameterError unless ``layer`` is a layer name (str) or None."""
    if layer is not None and not isinstance(layer, str):
        prefix = f"{owner}: " if owner else ""
        raise ParameterError(f"{prefix}layer={layer!r} must be a layer name (str) or None.")


def check_path(path: object, where: str) -> Path:
    """``path`` as a Path, or a ParameterError (naming ``where``) when it is not a file path."""
    if not isinstance(path, str | os.PathLike):
        raise ParameterError(
            f"{where}: path={path!r} is a {type(path).__name__}, not a file path; give a str "
            f"or a pathlib.Path."
        )
    return Path(path)


def check_anndata(adata: object, what: str = "") -> None:
    """DataContractError unless ``adata`` is an AnnData (the message says how to read one)."""
    if not isinstance(adata, AnnData):
        side = (f"{what[:1].upper()}{what[1:]} must be an AnnData object" if what
                else "Expected an AnnData object")
        raise DataContractError(
            f"{side}, got {type(adata).__name__}. Read files with "
            f"causalcell.data.read_h5ad(path)."
        )


@contextmanager
def naming(what: str) -> Iterator[None]:
    """Say which input a :class:`CausalCellError` raised inside is about.

    Checks deep down (the obs contract, a layer, the expression) word their
    message for "the data"; a function with several inputs wraps the checks
    of each in ``naming("the observed data")`` so that the message starts
    with the input at fault. The error keeps its class; a message that
    already names the input is left as it is.

    Examples
    --------
    >>> from causalcell.errors import DataContractError
    >>> try:
    ...     with naming("the predicted data"):
    ...         raise DataContractError("obs is missing the column(s) ['perturbation'].")
    ... except DataContractError as exc:
    ...     print(exc)
    The predicted data: obs is missing the column(s) ['perturbation'].
    """
    try:
        yield
    except CausalCellError as exc:
        text = str(exc)
        if what.lower() in text.lower():
            raise
        named = copy.copy(exc)
        named.args = (f"{what[:1].upper()}{what[1:]}: {text}",)
        raise named.with_traceback(exc.__traceback__) from None
