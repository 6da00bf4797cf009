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
import pandas as pd
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
    "standardize",
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


# --------------------------------------------------------------------------
# Conversion from other conventions
# --------------------------------------------------------------------------

# Per convention: source column, control label, combination separator, and
# tokens that mean "no gene" inside a combination (GEARS writes "A+ctrl").
_CONVENTIONS: dict[str, dict[str, object]] = {
    "gears": {"column": "condition", "control": "ctrl", "separator": "+", "filler": {"ctrl"},
              "symbols": "gene_name"},
    "cell-eval": {"column": "target_gene", "control": "non-targeting", "separator": None,
                  "filler": set(), "symbols": None},
    "scperturb": {"column": "perturbation", "control": "control", "separator": "_",
                  "filler": {"control"}, "symbols": None},
}
_ALIASES = {"cell_eval": "cell-eval", "celleval": "cell-eval", "vcc": "cell-eval",
            "virtual-cell-challenge": "cell-eval", "pereggrn": "causalcell"}

# scPerturb's perturbation_type vocabulary -> ours.
_SCPERTURB_KINDS = {
    "crispr": "knockout", "crispr-cas9": "knockout", "crispr-cas9 ko": "knockout",
    "crisprko": "knockout", "crispr ko": "knockout", "ko": "knockout",
    "crispri": "knockdown", "crispr-i": "knockdown", "shrna": "knockdown", "sirna": "knockdown",
    "crispra": "overexpression", "crispr-a": "overexpression", "orf": "overexpression",
    "overexpression": "overexpression", "drug": "chemical", "compound": "chemical",
}


def standardize(
    adata: AnnData,
    convention: str,
    *,
    perturbation_type: str | None = None,
    control_label: str | None = None,
    column: str | None = None,
    separator: str | None = None,
    gene_symbols: str | None = "auto",
    require_controls: bool = True,
) -> AnnData:
    """Convert perturbation metadata from another convention to the causalcell contract.

    Parameters
    ----------
    adata
        The data; never modified.
    convention
        ``"gears"`` (obs ``condition`` such as ``"A+B"``, ``"A+ctrl"``,
        ``"ctrl"``; symbols in var ``gene_name``), ``"cell-eval"`` (the
        Virtual Cell Challenge layout: obs ``target_gene``, control
        ``"non-targeting"``), ``"scperturb"`` (obs ``perturbation`` with
        control ``"control"``, combinations joined by ``"_"``,
        ``perturbation_type`` such as ``"CRISPRi"``), or ``"causalcell"``
        (already in the contract: validate and copy).
    perturbation_type
        Kind of every non-control sample (``"knockout"``, ``"knockdown"``,
        ``"overexpression"``, ...). Required for GEARS and cell-eval data,
        which do not record it (CRISPRi screens such as Adamson, Replogle and
        the Virtual Cell Challenge: ``"knockdown"``; CRISPRa such as Norman:
        ``"overexpression"``); for scPerturb it overrides the mapped column.
    control_label
        Label of control samples in the source column (default per
        convention).
    column
        Source obs column (default per convention).
    separator
        Combination separator in the source labels (default per convention;
        cell-eval labels are single genes unless you set it).
    gene_symbols
        var column holding gene symbols to use as ``var_names``;
        ``"auto"`` uses GEARS' ``gene_name`` when present; None keeps
        ``var_names``.
    require_controls
        Raise when no sample carries the control label (the usual sign of a
        wrong ``control_label``). Set to False for files that hold no
        controls by design, such as a model's predictions.

    Returns
    -------
    AnnData
        A new object (a copy) whose obs has the contract columns.
        Overwritten source columns are kept with the suffix ``_original``.

    Raises
    ------
    DataContractError
        Unknown convention, missing source column, control label absent,
        missing ``perturbation_type``, duplicated gene symbols.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> obs = pd.DataFrame({"condition": ["ctrl", "A+ctrl", "A+B"]}, index=["c0", "c1", "c2"])
    >>> raw = ad.AnnData(np.zeros((3, 2)), obs=obs, var=pd.DataFrame(index=["A", "B"]))
    >>> std = standardize(raw, "gears", perturbation_type="overexpression")
    >>> std.obs["perturbation"].tolist()
    ['ctrl', 'A', 'A,B']
    """
    if not isinstance(adata, AnnData):
        raise DataContractError(f"Expected an AnnData object, got {type(adata).__name__}.")
    key = _ALIASES.get(str(convention).lower(), str(convention).lower())
    if key == "causalcell":
        validate(adata, check_expression=False)
        return adata.copy()
    if key not in _CONVENTIONS:
        raise DataContractError(
            f"Unknown convention {convention!r}; choose one of "
            f"{[*_CONVENTIONS, 'causalcell']}."
        )
    spec = _CONVENTIONS[key]
    column = column or str(spec["column"])
    control = control_label if control_label is not None else str(spec["control"])
    sep = separator if separator is not None else spec["separator"]
    filler = set(spec["filler"]) | {control}  # type: ignore[arg-type]
    obs_in = adata.obs
    if column not in obs_in.columns:
        raise DataContractError(
            f"The {key} convention reads obs column {column!r}, which is missing (obs has "
            f"{list(obs_in.columns)}). Pass column='...' to name the right one."
        )
    raw = obs_in[column]
    if raw.isna().any():
        row = raw.index[raw.isna().to_numpy()][0]
        raise DataContractError(f"obs column {column!r} is missing in row {row!r}.")
    codes, uniques = pd.factorize(raw.astype(str))
    uniq_labels: list[str] = []
    uniq_control: list[bool] = []
    for value in uniques:
        parts = [value] if sep is None else str(value).split(str(sep))
        genes = [p.strip() for p in parts if p.strip() and p.strip() not in filler]
        uniq_control.append(not genes)
        uniq_labels.append(control if not genes else COMBINATION_SEPARATOR.join(genes))
    is_control = np.asarray(uniq_control, dtype=bool)[codes]
    if require_controls and not is_control.any():
        examples = list(uniques[:5])
        raise DataContractError(
            f"No sample has the control label {control!r} in obs column {column!r} (found "
            f"e.g. {examples}). Pass control_label='...' to name the controls."
        )
    labels = np.asarray(uniq_labels, dtype=object)[codes]
    kinds = _standardize_kinds(key, obs_in, perturbation_type, is_control)

    out = adata.copy()
    obs = out.obs
    for name in (PERTURBATION, IS_CONTROL, PERTURBATION_TYPE, LEVEL):
        if name in obs.columns and not (name == LEVEL and key == "causalcell"):
            obs[f"{name}_original"] = obs[name]
    obs[PERTURBATION] = labels.astype(str)
    obs[IS_CONTROL] = is_control
    obs[PERTURBATION_TYPE] = kinds
    obs[LEVEL] = np.nan
    _standardize_symbols(out, key, spec, gene_symbols)
    validate(out, check_expression=False)
    return out


def _standardize_kinds(
    key: str, obs: pd.DataFrame, perturbation_type: str | None, is_control: np.ndarray
) -> np.ndarray:
    if perturbation_type is not None:
        kinds = np.full(len(obs), str(perturbation_type).strip().lower(), dtype=object)
    elif key == "scperturb" and PERTURBATION_TYPE in obs.columns:
        source = obs[PERTURBATION_TYPE].astype(str).str.strip().str.lower()
        kinds = source.map(lambda v: _SCPERTURB_KINDS.get(v, v)).to_numpy(dtype=object)
    else:
        hint = {
            "gears": "CRISPRi data (Adamson, Replogle): 'knockdown'; CRISPRa (Norman): "
                     "'overexpression'",
            "cell-eval": "the Virtual Cell Challenge (CRISPRi): 'knockdown'",
            "scperturb": "e.g. 'knockout' for CRISPR-cas9",
        }[key]
        raise DataContractError(
            f"The {key} layout does not record how genes were perturbed: pass "
            f"perturbation_type= ({hint})."
        )
    kinds[is_control] = "control"
    return kinds


def _standardize_symbols(
    out: AnnData, key: str, spec: dict[str, object], gene_symbols: str | None
) -> None:
    column = spec["symbols"] if gene_symbols == "auto" else gene_symbols
    if column is None or (gene_symbols == "auto" and column not in out.var.columns):
        return
    if column not in out.var.columns:
        raise DataContractError(
            f"var column {column!r} (gene symbols) is missing; var has "
            f"{list(out.var.columns)}. Pass gene_symbols=None to keep var_names."
        )
    symbols = out.var[column].astype(str)
    if not symbols.is_unique:
        dup = symbols[symbols.duplicated()].unique()[:5].tolist()
        raise DataContractError(
            f"var column {column!r} has duplicated gene symbols (e.g. {dup}); aggregate or "
            f"drop them, or pass gene_symbols=None to keep var_names."
        )
    out.var["original_var_names"] = out.var_names.to_numpy()
    out.var_names = pd.Index(symbols.to_numpy(), dtype=str)
