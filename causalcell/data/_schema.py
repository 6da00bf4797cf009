"""The vocabulary of the obs contract: column names, kinds, labels and levels.

One place defines how a perturbation is written down (the four obs columns,
the combination separator, the kind words) and how one value of a column is
read (:func:`split_label`, :func:`parse_levels`, :func:`normalize_kind`) or
written (:func:`format_levels`). :mod:`causalcell.data.contract` (validation,
conversion) and :class:`~causalcell.data.Interventions` (the parsed object)
both build on it, so neither imports the other's internals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from causalcell.errors import DataContractError

__all__ = [
    "COMBINATION_SEPARATOR",
    "IS_CONTROL",
    "KNOCKOUT",
    "KNOWN_KINDS",
    "LEVEL",
    "PERTURBATION",
    "PERTURBATION_TYPE",
    "REQUIRED_COLUMNS",
    "check_columns",
    "check_is_control",
    "did_you_mean",
    "format_levels",
    "gene_name_problem",
    "infinite_level_error",
    "is_missing_text",
    "normalize_kind",
    "parse_levels",
    "split_label",
]

PERTURBATION = "perturbation"
IS_CONTROL = "is_control"
PERTURBATION_TYPE = "perturbation_type"
LEVEL = "expression_level_after_perturbation"
REQUIRED_COLUMNS = (PERTURBATION, IS_CONTROL, PERTURBATION_TYPE)
COMBINATION_SEPARATOR = ","
KNOCKOUT = "knockout"
KNOWN_KINDS = (KNOCKOUT, "knockdown", "overexpression")
#: Kind given to control samples whose ``perturbation_type`` is missing.
CONTROL_KIND = "control"

# Level texts that mean "unknown" (compared lower-cased, after stripping).
_MISSING_TEXT = frozenset({"", "nan", "na", "none"})
# ... and a part of a combination's level list that means "unknown".
_MISSING_PART = frozenset({"", "nan", "na"})


def split_label(label: str) -> tuple[str, ...]:
    """Split a perturbation label into its targeted genes.

    Parameters
    ----------
    label
        A ``perturbation`` value such as ``"STAT1"`` or ``"STAT1,JAK2"``.

    Returns
    -------
    tuple of str
        The gene symbols in the order given, surrounding white space removed.
        Empty parts (``"A,,B"``, a trailing comma) are dropped.
    """
    return tuple(p for p in (s.strip() for s in str(label).split(COMBINATION_SEPARATOR)) if p)


def normalize_kind(kind: object) -> str:
    """A ``perturbation_type`` value as compared everywhere: stripped, lower-cased.

    ``"Knockout "`` and ``"knockout"`` are the same kind (and a knockout's
    level is 0 whichever way it is written).
    """
    return str(kind).strip().lower()


def is_missing_text(text: str) -> bool:
    """True for a level text that means "unknown" (``""``, ``"nan"``, ``"NA"``, ``"None"``)."""
    return text.strip().lower() in _MISSING_TEXT


def parse_levels(value: object, n_genes: int, *, row: object = None) -> tuple[float, ...]:
    """Parse one ``expression_level_after_perturbation`` value.

    Parameters
    ----------
    value
        A float, NaN, None, an empty string or a comma-separated string of
        floats (``"0.2,1.5"``; ``"nan"`` parts are allowed).
    n_genes
        Number of genes targeted in this sample.
    row
        The obs name of the sample, used in error messages.

    Returns
    -------
    tuple of float
        ``n_genes`` levels; NaN where unknown. A single NaN / empty value is
        broadcast to every gene.

    Raises
    ------
    DataContractError
        If a part is not a number, or the number of levels differs from the
        number of targeted genes.
    """
    where = f" in row {row!r}" if row is not None else ""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return (math.nan,) * n_genes
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        parts: list[str] = [str(value)]
    else:
        text = str(value)
        if is_missing_text(text):
            return (math.nan,) * n_genes
        parts = [p.strip() for p in text.strip().split(COMBINATION_SEPARATOR)]
    try:
        levels = tuple(math.nan if p.lower() in _MISSING_PART else float(p) for p in parts)
    except ValueError:
        raise DataContractError(
            f"Column {LEVEL!r}{where} holds {value!r}, which is not a number or a "
            f"comma-separated list of numbers. Write one float per targeted gene, "
            f"e.g. '0.1,2.5', or NaN when the level is unknown."
        ) from None
    if any(math.isinf(v) for v in levels):
        raise infinite_level_error(value, row)
    if len(levels) != n_genes:
        raise DataContractError(
            f"Column {LEVEL!r}{where} holds {len(levels)} level(s) ({value!r}) but the "
            f"perturbation targets {n_genes} gene(s). Give one level per targeted gene, "
            f"in the order of the {PERTURBATION!r} label, or NaN when unknown."
        )
    return levels


def infinite_level_error(value: object, row: object = None) -> DataContractError:
    """The error of a level that is infinite (``inf``, ``"-Infinity"``...)."""
    where = f" in row {row!r}" if row is not None else ""
    shown = repr(value) if isinstance(value, str) else str(value)
    return DataContractError(
        f"Column {LEVEL!r}{where} holds {shown}, which is infinite. A level T is the "
        f"observed expression of the targeted gene after the perturbation: give a finite "
        f"number, or NaN when it is unknown."
    )


def format_levels(levels: Sequence[float]) -> str:
    """Inverse of :func:`parse_levels`: ``"0.2,nan"``."""
    return COMBINATION_SEPARATOR.join("nan" if math.isnan(v) else repr(float(v)) for v in levels)


def check_columns(obs: pd.DataFrame) -> None:
    """Raise :class:`DataContractError` if a required obs column is missing."""
    missing = [c for c in REQUIRED_COLUMNS if c not in obs.columns]
    if missing:
        raise DataContractError(
            f"obs is missing the column(s) {missing}. causalcell expects "
            f"{list(REQUIRED_COLUMNS)} (and optionally {LEVEL!r}). Data in GEARS, cell-eval "
            f"or scPerturb layout can be converted with "
            f"causalcell.data.standardize(adata, convention=...)."
        )


def check_is_control(obs: pd.DataFrame) -> np.ndarray:
    """Return ``is_control`` as a numpy bool array, or raise if it is not boolean."""
    col = obs[IS_CONTROL]
    if not pd.api.types.is_bool_dtype(col.dtype):
        example = col.iloc[0] if len(col) else None
        raise DataContractError(
            f"Column {IS_CONTROL!r} has dtype {col.dtype} (first value {example!r}); it must "
            f"be boolean. Convert it, e.g. obs['is_control'] = obs['perturbation'] == "
            f"'non-targeting'."
        )
    if col.isna().any():
        row = col.index[col.isna().to_numpy()][0]
        raise DataContractError(
            f"Column {IS_CONTROL!r} is missing in row {row!r}; every sample must be marked "
            f"True (control) or False."
        )
    return col.to_numpy(dtype=bool)


def gene_name_problem(names: Sequence[object] | pd.Index) -> str | None:
    """What is wrong with a set of gene names, in words, or None when nothing is.

    Gene names are compared exactly everywhere (data, networks, requests), so
    they must be non-empty strings without surrounding white space: ``"G01 "``
    would silently never match ``"G01"``.
    """
    names = pd.Index(names)
    if not len(names):
        return None
    if pd.api.types.infer_dtype(names, skipna=False) != "string":
        odd = [n for n in names if not isinstance(n, str)][:3]  # error path only
        kinds = sorted({type(n).__name__ for n in odd})
        return (f"are not all strings (e.g. {odd!r}, of type {', '.join(kinds)}); gene "
                f"names must be symbols (str)")
    text = names.to_series().astype(str)
    stripped = text.str.strip()
    empty = (stripped == "").to_numpy()
    if empty.any():
        return f"include {int(empty.sum())} empty name(s); every gene needs a symbol"
    padded = (stripped != text).to_numpy()
    if padded.any():
        shown = text[padded].iloc[:3].tolist()
        return (f"include {int(padded.sum())} name(s) with surrounding white space (e.g. "
                f"{shown!r}), which would never match the same symbol without it")
    return None


def did_you_mean(names: Sequence[str], known: Sequence[str] | pd.Index) -> str:
    """A hint naming the known genes that ``names`` match up to case and white space.

    Returns
    -------
    str
        ``" (did you mean G01?)"``, ``" (did you mean: g01 -> G01, tf2 -> TF2)"``,
        or ``""`` when no name has such a near match.
    """
    if not len(names) or not len(known):
        return ""
    known = pd.Index(known).astype(str)
    key = known.str.strip().str.lower()
    first = pd.Series(known, index=key)[~key.duplicated()]
    names = pd.Index(names).astype(str)
    match = first.reindex(names.str.strip().str.lower()).to_numpy(dtype=object)
    pairs = [(n, m) for n, m in zip(names, match, strict=True)
             if isinstance(m, str) and m != n][:5]
    if not pairs:
        return ""
    if len(pairs) == 1:
        return f" (did you mean {pairs[0][1]}?)"
    return " (did you mean: " + ", ".join(f"{n} -> {m}" for n, m in pairs) + ")"
