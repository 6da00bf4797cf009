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

import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell._validation import check_anndata, nonfinite_rows
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
    gene_name_problem,
    parse_levels,
    split_label,
)
from causalcell.data._sparse import entry_rows
from causalcell.data.lazy import (
    backed_matrix,
    check_finite_block,
    is_backed,
    is_dask_array,
    map_row_blocks,
)
from causalcell.errors import DataContractError, ExpressionScaleWarning

# The column names and the parsing of one value live in the private schema
# module (shared with Interventions); they are re-exported here, where the
# contract is documented.
__all__ = [
    "COMBINATION_SEPARATOR",
    "COUNTS_MAX",
    "IS_CONTROL",
    "KNOWN_KINDS",
    "LEVEL",
    "PERTURBATION",
    "PERTURBATION_TYPE",
    "REQUIRED_COLUMNS",
    "SCALE_FACTOR",
    "check_columns",
    "check_is_control",
    "check_samples_and_genes",
    "checked_interventions",
    "counts_maximum",
    "expression_matrix",
    "parse_levels",
    "split_label",
    "validate",
    "warn_if_counts",
    "warn_if_scales_differ",
]

# Rows of X checked per block when scanning a dense matrix for NaN / inf, so
# that validation never allocates a boolean copy of the whole matrix; also the
# rows sampled to tell raw counts from log-normalized values.
_FINITE_BLOCK_ROWS = 8192
# Log-normalized expression stays far below this (log1p of a million counts per
# million is 13.8); non-negative whole numbers reaching it are raw counts.
COUNTS_MAX = 20.0
# Predicted and observed profiles whose mean |value| differ by more than this
# factor are not on one scale.
SCALE_FACTOR = 10.0
# Values read to tell raw counts from log-normalized expression (the first rows).
_COUNTS_SAMPLE_VALUES = 1 << 20
# dtype kinds of an expression matrix: real numbers (float, signed, unsigned).
_NUMERIC_KINDS = "fiu"


def _where(layer: str | None, what: str) -> str:
    """``"X of the predicted data"`` / ``"layer 'counts' of the data"``, for messages."""
    matrix = expression_name(layer)
    return matrix if what == "the data" else f"{matrix} of {what}"


def expression_matrix(adata: AnnData, layer: str | None = None, *, what: str = "the data"):
    """The expression matrix of ``adata``: ``X``, or the named layer.

    A backed X (``read_h5ad(path, backed=True)``) is returned as a Dask array
    reading the file in row blocks (:func:`causalcell.data.lazy.backed_matrix`),
    so every computation treats it as out-of-core data.

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
        If the layer does not exist, ``X`` is None, or the matrix does not hold
        real numbers (complex, object, text, boolean).
    """
    if layer is None:
        if adata.X is None:
            raise DataContractError(f"{what} has no X: store expression in X or name a layer.")
        X = adata.X
        if is_backed(X):
            X = backed_matrix(adata, what)
    else:
        if not isinstance(layer, str):
            raise DataContractError(
                f"layer={layer!r} is not a layer name; give the name (a str) of one of the "
                f"layers of {what} {list(adata.layers.keys())}, or None to use X."
            )
        if layer not in adata.layers:
            raise DataContractError(
                f"Layer {layer!r} not found in {what}; available layers: "
                f"{list(adata.layers.keys())}. Pass layer=None to use X."
            )
        X = adata.layers[layer]
    _check_dtype(X, _where(layer, what))
    return X


def _check_dtype(X: Any, where: str) -> None:
    dtype = getattr(X, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind in _NUMERIC_KINDS:
        return
    name = "no dtype" if dtype is None else f"dtype {dtype}"
    fix = {
        "c": "keep the real part only if that is what you mean (X.real)",
        "b": "store expression values, not a yes / no pattern",
    }.get(getattr(dtype, "kind", ""), "convert it, e.g. adata.X = adata.X.astype(np.float32), "
          "if it holds numbers")
    raise DataContractError(
        f"{where} has {name}; expression must be real numbers (float or integer, "
        f"log-normalized): {fix}."
    )


def expression_name(layer: str | None) -> str:
    """How messages name the expression matrix: ``X`` or ``layer 'name'``."""
    return "X" if layer is None else f"layer {layer!r}"


def _check_expression(adata: AnnData, layer: str | None, *, scan_lazy: bool = False) -> None:
    """NaN / inf in the expression matrix: a DataContractError naming the first row.

    A Dask (or backed) matrix is scanned only with ``scan_lazy`` (a pass over
    its blocks): the computations that read it check every block anyway.
    """
    X = expression_matrix(adata, layer)
    where = expression_name(layer)
    if is_dask_array(X):
        if scan_lazy:
            map_row_blocks(_finite_rows, X, block_args=lambda a, b: (where,))
        return
    check_finite_expression(X, adata.obs_names, where)


def check_finite_expression(X: Any, obs_names: pd.Index, where: str = "X",
                            rows: np.ndarray | None = None) -> None:
    """Refuse in-memory expression (dense or sparse) holding NaN or infinite values.

    The data contract's scan (:func:`validate`), also run by passes over X that
    skip it beforehand and find their sums not finite
    (:func:`causalcell.data._moments.moments`).

    Parameters
    ----------
    X
        Samples x genes, a NumPy array or SciPy sparse matrix.
    obs_names
        The samples' names, for the message.
    where
        The matrix's name, for the message (:func:`expression_name`).
    rows
        Scan only these (sorted) samples.

    Raises
    ------
    DataContractError
        Naming the first sample at fault and counting the values there.
    """
    if sp.issparse(X):
        if X.dtype.kind != "f" or (rows is None and np.isfinite(X.data).all()):
            return
        csr = sp.csr_array(X) if rows is None else sp.csr_array(X)[rows]
        bad = ~np.isfinite(csr.data)
        if bad.any():  # locate the first offending row for the message
            at = entry_rows(csr.indptr)[bad]
            row = int(at[0]) if rows is None else int(rows[at[0]])
            raise _nonfinite_error(obs_names, where, row, int(bad.sum()))
        return
    arr = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if arr.dtype.kind not in "fc":
        return
    count = arr.shape[0] if rows is None else len(rows)
    for start in range(0, count, _FINITE_BLOCK_ROWS):
        if rows is None:
            block, index = arr[start : start + _FINITE_BLOCK_ROWS], None
        else:
            index = rows[start : start + _FINITE_BLOCK_ROWS]
            block = arr[index]
        bad_rows = nonfinite_rows(block)
        if len(bad_rows):
            total = int((~np.isfinite(block[bad_rows])).sum())
            first = start + int(bad_rows[0]) if index is None else int(index[bad_rows[0]])
            raise _nonfinite_error(obs_names, where, first, total)


def _finite_rows(block: Any, start: int, stop: int, where: str) -> None:
    """:func:`check_finite_block` as a task of :func:`map_row_blocks`."""
    check_finite_block(block, start, where)


def _nonfinite_error(obs_names: pd.Index, where: str, row: int, count: int
                     ) -> DataContractError:
    return DataContractError(
        f"{where} contains {count}+ NaN or infinite value(s), first in row "
        f"{obs_names[row]!r}. Expression must be finite: impute or drop those "
        f"cells / genes before using causalcell."
    )


def counts_maximum(X: Any) -> float | None:
    """The largest value of X when X looks like raw counts, else None.

    Raw counts: non-negative whole numbers reaching :data:`COUNTS_MAX`, which
    log-normalized expression never does. Only the first rows are read (about
    a million values; a block of a Dask or backed matrix), so the check costs
    little at any size.
    """
    n = min(X.shape[0], max(1, _COUNTS_SAMPLE_VALUES // max(1, X.shape[1])))
    if X.shape[0] == 0 or X.shape[1] == 0:
        return None
    sample = X[:n]
    if is_dask_array(sample):
        sample = sample.compute()
    values = np.asarray(sample.data if sp.issparse(sample) else sample)
    if values.size == 0:
        return None
    largest, smallest = float(values.max()), float(values.min())
    # NaN or inf fail these comparisons: such X is refused elsewhere, not called counts.
    if not (COUNTS_MAX <= largest < np.inf and smallest >= 0):
        return None
    if values.dtype.kind == "f" and np.any(np.mod(values, 1)):
        return None
    return largest


def warn_if_counts(X: Any, where: str, *, layer_hint: bool = True) -> None:
    """Warn when X looks like raw counts (see :func:`counts_maximum`), naming the fix."""
    largest = counts_maximum(X)
    if largest is None:
        return
    other = " or name the layer holding log-normalized values (layer=...)" if layer_hint else ""
    warnings.warn(
        f"{where} looks like raw counts (non-negative whole numbers up to {largest:g}); "
        f"causalcell expects log-normalized expression. Normalize first, e.g. "
        f"sc.pp.normalize_total(adata) then sc.pp.log1p(adata) (scanpy){other}.",
        ExpressionScaleWarning,
        stacklevel=4,
    )


def warn_if_scales_differ(predicted: np.ndarray, observed: np.ndarray, *,
                          what: tuple[str, str] = ("the predicted data", "the observed data")
                          ) -> None:
    """Warn when predicted and observed profiles are on clearly different scales.

    The mean absolute values of the two (same rows and genes) differing by
    more than :data:`SCALE_FACTOR` means one side is not on the other's scale
    (raw counts against log-normalized values, changes against levels), and
    every score comparing them is meaningless.
    """
    scales = [float(np.abs(np.asarray(m, dtype=np.float64)).mean()) if np.size(m) else 0.0
              for m in (predicted, observed)]
    low, high = sorted(scales)
    if high == 0.0 or (low > 0.0 and high / low <= SCALE_FACTOR):
        return
    factor = "infinitely" if low == 0.0 else f"{high / low:.0f}x"
    warnings.warn(
        f"{what[0][:1].upper()}{what[0][1:]} and {what[1]} are on clearly different scales: "
        f"mean |value| {scales[0]:.3g} against {scales[1]:.3g} ({factor} apart). Both must "
        f"be log-normalized expression levels (not raw counts, not changes); normalize the "
        f"other side (sc.pp.normalize_total then sc.pp.log1p) or name the right layer.",
        ExpressionScaleWarning,
        stacklevel=4,
    )


def check_samples_and_genes(adata: AnnData, what: str = "the data") -> None:
    """``adata`` is an AnnData with samples, and genes named by unique symbols.

    Raises
    ------
    DataContractError
        Not an AnnData, no sample, no gene, or ``var_names`` that are not
        unique strings without surrounding white space.
    """
    check_anndata(adata, what if what != "the data" else "")
    _check_shape(adata, what[0].upper() + what[1:])
    _check_var_names(adata)


def _check_shape(adata: AnnData, what: str) -> None:
    if adata.n_obs == 0:
        raise DataContractError(
            f"{what} has no samples (0 rows): there is nothing to fit or score. Check the "
            f"filter or subset that produced it."
        )
    if adata.n_vars == 0:
        raise DataContractError(
            f"{what} has no genes (0 columns in var): there is no expression to model. Check "
            f"the filter or subset that produced it."
        )


def _check_var_names(adata: AnnData) -> None:
    names = adata.var_names
    problem = gene_name_problem(names)
    if problem is not None:
        raise DataContractError(
            f"var_names {problem}. Fix them before using causalcell, e.g. "
            f"adata.var_names = adata.var_names.astype(str).str.strip()."
        )
    if not names.is_unique:
        dup = names[names.duplicated()].unique()[:5].tolist()
        raise DataContractError(
            f"var_names are not unique (e.g. {dup}). Gene symbols must be unique: "
            f"call adata.var_names_make_unique() or aggregate duplicated genes."
        )


def validate(adata: AnnData, *, layer: str | None = None, check_expression: bool = True) -> None:
    """Check that ``adata`` follows the causalcell data contract.

    Nothing is modified. Checks: there are samples and genes; the required
    obs columns exist; ``is_control`` is boolean with no missing values;
    every perturbed sample names at least one gene and has a
    ``perturbation_type``; levels, when given, parse, are finite (or NaN:
    unknown) and match the number of targeted genes; ``var_names`` are
    unique strings without surrounding white space; expression is real
    numbers and finite. Targeted genes that are not measured are allowed (an
    :class:`~causalcell.errors.UnmeasuredTargetWarning` names them once, with
    the measured gene a label matches up to case, if any). Expression that
    looks like raw counts gets an
    :class:`~causalcell.errors.ExpressionScaleWarning` naming the fix.

    Parameters
    ----------
    adata
        Cells or pseudobulk rows.
    layer
        Layer holding the expression to check; ``None`` checks ``X``.
    check_expression
        Set to False to skip the scan of the expression values (it reads
        every stored value once; for a Dask or backed X, one pass over its
        row blocks).

    Raises
    ------
    DataContractError
        On the first violation, naming the column, row or gene and the fix.

    Warns
    -----
    ExpressionScaleWarning
        The expression looks like raw counts (non-negative whole numbers
        reaching 20).

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> cc.data.validate(sim.adata)
    """
    interventions = checked_interventions(adata, layer=layer, check_expression=False)
    if check_expression:
        _check_expression(adata, layer, scan_lazy=True)
    del interventions


def checked_interventions(
    adata: AnnData, *, layer: str | None = None, check_expression: bool = True,
    what: str = "the data",
) -> Interventions:
    """:func:`validate` ``adata`` and return its :class:`Interventions`, parsed once.

    The entry point of every function that takes contract data: the
    checks of :func:`validate`, and the parse they need, in one pass.
    Unmeasured targets are reported once (an
    :class:`~causalcell.errors.UnmeasuredTargetWarning`), and so is
    expression that looks like raw counts (an
    :class:`~causalcell.errors.ExpressionScaleWarning`). A Dask or backed X
    is not scanned here: the passes that read it check every block.

    Parameters
    ----------
    adata, layer, check_expression
        As :func:`validate`.
    what
        How to call ``adata`` in messages (e.g. ``"the training data"``).

    Raises
    ------
    DataContractError
        As :func:`validate`.
    """
    check_samples_and_genes(adata, what)
    # Labels, kinds and levels are parsed by Interventions: one copy of that logic.
    interventions = Interventions.from_adata(adata, warn_unmeasured=True)
    X = expression_matrix(adata, layer, what=what)
    if check_expression:
        _check_expression(adata, layer)
    warn_if_counts(X, _where(layer, what), layer_hint=layer is None)
    return interventions

