"""Conversion between the causalcell contract and other perturbation layouts.

GEARS, cell-eval (the Virtual Cell Challenge layout) and scPerturb record the
same facts as the causalcell obs contract under other column names, labels and
separators. :func:`standardize` reads them into the contract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell.data.contract import (
    COMBINATION_SEPARATOR,
    IS_CONTROL,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    validate,
)
from causalcell.errors import DataContractError

__all__ = ["standardize"]

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
