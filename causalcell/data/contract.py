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

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from causalcell.data._interventions import Interventions
from causalcell.data._schema import (
    COMBINATION_SEPARATOR,
    IS_CONTROL,
    KNOWN_KINDS,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    REQUIRED_COLUMNS,
    check_columns,
    check_is_control,
    parse_levels,
    split_label,
)
from causalcell.data._sparse import entry_rows
from causalcell.data.lazy import is_dask_array
from causalcell.errors import DataContractError

# The column names and the parsing of one value live in the private schema
# module (shared with Interventions); they are re-exported here, where the
# contract is documented.
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
    "checked_interventions",
    "expression_matrix",
    "parse_levels",
    "split_label",
    "validate",
]

# Rows of X checked per block when scanning a dense matrix for NaN / inf, so
# that validation never allocates a boolean copy of the whole matrix.
_FINITE_BLOCK_ROWS = 8192


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
            rows = entry_rows(csr.indptr)[bad]
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
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> cc.data.validate(sim.adata)
    """
    checked_interventions(adata, layer=layer, check_expression=check_expression)


def checked_interventions(
    adata: AnnData, *, layer: str | None = None, check_expression: bool = True
) -> Interventions:
    """:func:`validate` ``adata`` and return its :class:`Interventions`, parsed once.

    The entry point of every function that takes contract data: the
    checks of :func:`validate`, and the parse they need, in one pass.
    Unmeasured targets are reported once (an
    :class:`~causalcell.errors.UnmeasuredTargetWarning`).

    Raises
    ------
    DataContractError
        As :func:`validate`.
    """
    if not isinstance(adata, AnnData):
        raise DataContractError(
            f"Expected an AnnData object, got {type(adata).__name__}. "
            f"Read files with causalcell.data.read_h5ad(path)."
        )
    _check_var_names(adata)
    # Labels, kinds and levels are parsed by Interventions: one copy of that logic.
    interventions = Interventions.from_adata(adata, warn_unmeasured=True)
    if check_expression:
        _check_expression(adata, layer)
    return interventions

