"""The perturbation data contract: obs column names, validation, conversion.

A sample (a cell or a pseudobulk row) describes its intervention in four obs
columns, named as in PEREGGRN (Kernfeld et al. 2025):

==========================================  ===========================================
column                                      meaning
==========================================  ===========================================
``perturbation``                            targeted gene symbol(s); combinations are
                                            comma-separated (``"STAT1,JAK2"``); controls
                                            carry their own label
``is_control``                              bool: control sample (non-targeting guide)
``perturbation_type``                       ``knockout``, ``knockdown``,
                                            ``overexpression`` (others allowed, e.g.
                                            ``chemical``)
``expression_level_after_perturbation``     observed level T of each targeted gene,
                                            comma-separated for combinations; NaN or
                                            empty when unknown (optional column)
==========================================  ===========================================

Knockouts have T = 0 whatever transcript is still measured: a cut gene's mRNA
does not code for a working protein. ``var_names`` are gene symbols and the
expression matrix (``X`` or a named layer) is log-normalized unless the caller
says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell.data.lazy import is_dask_array
from causalcell.errors import DataContractError

__all__ = [
    "COMBINATION_SEPARATOR",
    "IS_CONTROL",
    "KNOWN_KINDS",
    "LEVEL",
    "PERTURBATION",
    "PERTURBATION_TYPE",
    "REQUIRED_COLUMNS",
    "check_columns",
    "check_is_control",
    "expression_matrix",
    "parse_levels",
    "split_label",
    "validate",
]

PERTURBATION = "perturbation"
IS_CONTROL = "is_control"
PERTURBATION_TYPE = "perturbation_type"
LEVEL = "expression_level_after_perturbation"
REQUIRED_COLUMNS = (PERTURBATION, IS_CONTROL, PERTURBATION_TYPE)
COMBINATION_SEPARATOR = ","
KNOWN_KINDS = ("knockout", "knockdown", "overexpression")

# Rows of X checked per block when scanning a dense matrix for NaN / inf, so
# that validation never allocates a boolean copy of the whole matrix.
_FINITE_BLOCK_ROWS = 8192


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
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (math.nan,) * n_genes
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        parts: list[str] = [str(value)]
    else:
        text = str(value).strip()
        if text == "" or text.lower() in {"nan", "na", "none"}:
            return (math.nan,) * n_genes
        parts = [p.strip() for p in text.split(COMBINATION_SEPARATOR)]
    try:
        levels = tuple(float(p) if p.lower() not in {"", "nan", "na"} else math.nan for p in parts)
    except ValueError:
        raise DataContractError(
            f"Column {LEVEL!r}{where} holds {value!r}, which is not a number or a "
            f"comma-separated list of numbers. Write one float per targeted gene, "
            f"e.g. '0.1,2.5', or NaN when the level is unknown."
        ) from None
    if len(levels) != n_genes:
        raise DataContractError(
            f"Column {LEVEL!r}{where} holds {len(levels)} level(s) ({value!r}) but the "
            f"perturbation targets {n_genes} gene(s). Give one level per targeted gene, "
            f"in the order of the 'perturbation' label, or NaN when unknown."
        )
    return levels


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


def expression_matrix(adata: AnnData, layer: str | None = None, *, what: str = "the data"):
    """The expression matrix of ``adata``: ``X``, or the named layer.

    Parameters
    ----------
    adata
        The data.
    layer
        Layer name; ``None`` means ``X``.
    what
        How to call ``adata`` in error messages (e.g. ``"the predicted data"``).

    Raises
    ------
    DataContractError
        If the layer does not exist, or ``X`` is None.
    """
    if layer is None:
        if adata.X is None:
            raise DataContractError(f"{what} has no X: store expression in X or name a layer.")
        return adata.X
    if layer not in adata.layers:
        raise DataContractError(
            f"Layer {layer!r} not found in {what}; available layers: "
            f"{list(adata.layers.keys())}. Pass layer=None to use X."
        )
    return adata.layers[layer]


def _check_expression(adata: AnnData, layer: str | None) -> None:
    X = expression_matrix(adata, layer)
    where = "X" if layer is None else f"layer {layer!r}"
    if sp.issparse(X):
        values = X.data
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            # Locate the first offending row for the message.
            csr = sp.csr_matrix(X)
            bad = ~np.isfinite(csr.data)
            rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))[bad]
            raise _nonfinite_error(adata, where, int(rows[0]), int(bad.sum()))
        return
    if not hasattr(X, "shape") or not hasattr(X, "dtype") or is_dask_array(X):
        return  # a lazy array: checked block by block by the code that computes on it
    arr = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if arr.dtype.kind not in "fc":
        return
    for start in range(0, arr.shape[0], _FINITE_BLOCK_ROWS):
        block = arr[start : start + _FINITE_BLOCK_ROWS]
        finite = np.isfinite(block)
        if not finite.all():
            bad_rows = np.flatnonzero(~finite.all(axis=1))
            total = int((~finite).sum())
            raise _nonfinite_error(adata, where, start + int(bad_rows[0]), total)


def _nonfinite_error(adata: AnnData, where: str, row: int, count: int) -> DataContractError:
    return DataContractError(
        f"{where} contains {count}+ NaN or infinite value(s), first in row "
        f"{adata.obs_names[row]!r}. Expression must be finite: impute or drop those "
        f"cells / genes before using causalcell."
    )


def _check_var_names(adata: AnnData) -> None:
    names = adata.var_names
    if not names.is_unique:
        dup = names[names.duplicated()].unique()[:5].tolist()
        raise DataContractError(
            f"var_names are not unique (e.g. {dup}). Gene symbols must be unique: "
            f"call adata.var_names_make_unique() or aggregate duplicated genes."
        )


def validate(adata: AnnData, *, layer: str | None = None, check_expression: bool = True) -> None:
    """Check that ``adata`` follows the causalcell data contract.

    Nothing is modified. Checks: the required obs columns exist;
    ``is_control`` is boolean with no missing values; every perturbed sample
    names at least one gene and has a ``perturbation_type``; levels, when
    given, parse and match the number of targeted genes; ``var_names`` are
    unique; expression is finite. Targeted genes that are not measured are
    allowed (an :class:`~causalcell.errors.UnmeasuredTargetWarning` names
    them once).

    Parameters
    ----------
    adata
        Cells or pseudobulk rows.
    layer
        Layer holding the expression to check; ``None`` checks ``X``.
    check_expression
        Set to False to skip the scan of the expression values (it reads
        every stored value once).

    Raises
    ------
    DataContractError
        On the first violation, naming the column, row or gene and the fix.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, seed=0)
    >>> cc.data.validate(sim.adata)
    """
    if not isinstance(adata, AnnData):
        raise DataContractError(
            f"Expected an AnnData object, got {type(adata).__name__}. "
            f"Read files with causalcell.data.read_h5ad(path)."
        )
    # Labels, kinds and levels are parsed by Interventions: one copy of that logic.
    from causalcell.data.interventions import Interventions

    _check_var_names(adata)
    Interventions.from_adata(adata, warn_unmeasured=True)
    if check_expression:
        _check_expression(adata, layer)


def __getattr__(name: str):
    # standardize moved to causalcell.data._conventions; importing it from here keeps
    # working (lazily, because _conventions itself imports this module).
    if name == "standardize":
        from causalcell.data._conventions import standardize

        return standardize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
