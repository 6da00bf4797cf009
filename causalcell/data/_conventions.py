"""Conversion between the causalcell contract and other perturbation layouts.

GEARS, cell-eval (the Virtual Cell Challenge layout) and scPerturb record the
same facts as the causalcell obs contract under other column names, labels and
separators. :func:`standardize` reads any of them (or any layout described by
explicit keys) into the contract; :func:`to_convention` writes the contract
back out, so that ``standardize(to_convention(adata, c), c)`` returns the
original contract columns.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell.data.contract import (
    COMBINATION_SEPARATOR,
    IS_CONTROL,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    split_label,
    validate,
)
from causalcell.data.lazy import in_memory_copy
from causalcell.errors import DataContractError, ParameterError

__all__ = ["CONVENTIONS", "standardize", "to_convention"]


# Per convention: perturbation column, control label, combination separator,
# tokens that mean "no gene" inside a combination (GEARS writes "A+ctrl"), and
# the var column of gene symbols.
_CONVENTIONS: dict[str, dict[str, object]] = {
    "gears": {"column": "condition", "control": "ctrl", "separator": "+", "filler": {"ctrl"},
              "symbols": "gene_name"},
    "cell-eval": {"column": "target_gene", "control": "non-targeting", "separator": None,
                  "filler": set(), "symbols": None},
    "scperturb": {"column": "perturbation", "control": "control", "separator": "_",
                  "filler": {"control"}, "symbols": None},
}
CONVENTIONS = tuple(_CONVENTIONS)
_ALIASES = {"cell_eval": "cell-eval", "celleval": "cell-eval", "vcc": "cell-eval",
            "virtual-cell-challenge": "cell-eval", "pereggrn": "causalcell"}

# Perturbation kinds of other vocabularies (scPerturb's perturbation_type,
# lower-cased) -> ours. Words not listed are kept as they are.
_SCPERTURB_KINDS = {
    "crispr": "knockout", "crispr-cas9": "knockout", "crispr-cas9 ko": "knockout",
    "crisprko": "knockout", "crispr ko": "knockout", "ko": "knockout",
    "crispri": "knockdown", "crispr-i": "knockdown", "shrna": "knockdown", "sirna": "knockdown",
    "crispra": "overexpression", "crispr-a": "overexpression", "orf": "overexpression",
    "overexpression": "overexpression", "drug": "chemical", "compound": "chemical",
}
# Ours -> scPerturb's words (the inverse used by to_convention).
_SCPERTURB_EXPORT = {"knockout": "CRISPR", "knockdown": "CRISPRi",
                     "overexpression": "CRISPRa", "chemical": "drug"}

# Parameters renamed in 0.2; the old names work, with a FutureWarning, until 0.3.
_RENAMED = {"column": "perturbation_key"}


def _convention_key(convention: object) -> str:
    key = _ALIASES.get(str(convention).lower(), str(convention).lower())
    if key not in (*_CONVENTIONS, "causalcell"):
        raise DataContractError(
            f"Unknown convention {convention!r}; choose one of "
            f"{[*_CONVENTIONS, 'causalcell']}, or pass convention=None with "
            f"perturbation_key= and control_label= for any other layout."
        )
    return key


def _renamed(kwargs: Mapping[str, object], values: dict[str, object]) -> dict[str, object]:
    """Apply the deprecated parameter names of :func:`standardize` (FutureWarning)."""
    unknown = set(kwargs) - set(_RENAMED)
    if unknown:
        raise TypeError(f"standardize() got unexpected keyword argument(s) {sorted(unknown)}")
    for old, value in kwargs.items():
        new = _RENAMED[old]
        warnings.warn(
            f"standardize({old}=...) is renamed {new}=...; {old}= will be removed in "
            f"causalcell 0.3.",
            FutureWarning,
            stacklevel=3,
        )
        if values[new] is not None and value is not None:
            raise ParameterError(f"Pass {new}= only (not both {new}= and {old}=).")
        if value is not None:
            values[new] = value
    return values


def standardize(
    adata: AnnData,
    convention: str | None = None,
    *,
    perturbation_key: str | None = None,
    control_label: str | None = None,
    separator: str | None = None,
    perturbation_type: str | None = None,
    perturbation_type_key: str | None = "auto",
    level_key: str | None = "auto",
    gene_symbols: str | None = "auto",
    require_controls: bool = True,
    **renamed: object,
) -> AnnData:
    """Convert perturbation metadata from another layout to the causalcell contract.

    Name a known ``convention``, or describe any layout with explicit keys
    (``perturbation_key`` and ``control_label``, as pertpy's ``pert_key`` /
    ``control`` and scanpy's ``groupby`` / ``reference``); explicit keys
    also override a convention's defaults.

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
        ``perturbation_type`` such as ``"CRISPRi"``), ``"causalcell"``
        (already in the contract: validate and copy), or None (a layout
        described by ``perturbation_key`` and ``control_label``).
    perturbation_key
        obs column naming the targeted gene(s) of each sample (default per
        convention; required when ``convention`` is None).
    control_label
        Label of the control samples in that column (default per
        convention; required when ``convention`` is None unless
        ``require_controls=False``).
    separator
        Separator of combinations in the labels (default per convention;
        None: every label is one gene, or already comma-separated).
    perturbation_type
        Kind of every non-control sample (``"knockout"``, ``"knockdown"``,
        ``"overexpression"``, ...), for layouts that do not record it
        (CRISPRi screens such as Adamson, Replogle and the Virtual Cell
        Challenge: ``"knockdown"``; CRISPRa such as Norman:
        ``"overexpression"``). Overrides ``perturbation_type_key``.
    perturbation_type_key
        obs column holding each sample's kind, in our words or scPerturb's
        (``"CRISPR"``, ``"CRISPRi"``, ``"CRISPRa"``, ``"drug"`` ...);
        ``"auto"`` uses a ``perturbation_type`` column when there is one
        (scPerturb's, or written by :func:`to_convention`).
    level_key
        obs column holding the observed level T of the targeted genes
        (see :data:`~causalcell.data.LEVEL`); ``"auto"`` uses an
        ``expression_level_after_perturbation`` column when there is one;
        otherwise levels are unknown (NaN).
    gene_symbols
        var column holding gene symbols to use as ``var_names``;
        ``"auto"`` uses GEARS' ``gene_name`` when present; None keeps
        ``var_names``.
    require_controls
        Raise when no sample carries the control label (the usual sign of a
        wrong ``control_label``). Set to False for files that hold no
        controls by design, such as a model's predictions.
    **renamed
        ``column=`` (renamed ``perturbation_key=``) still works until
        causalcell 0.3, with a :class:`FutureWarning`.

    Returns
    -------
    AnnData
        A new object (a copy) whose obs has the contract columns. A contract
        column that was the source of the labels (scPerturb's
        ``perturbation``) or that existed with other values is kept with the
        suffix ``_original``.

    Raises
    ------
    DataContractError
        Unknown convention, missing source column, control label absent,
        unknown kinds, duplicated gene symbols.
    ParameterError
        ``convention=None`` without ``perturbation_key``, or a parameter
        given under both its new and its old name.

    See Also
    --------
    to_convention : the inverse.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> obs = pd.DataFrame({"condition": ["ctrl", "A+ctrl", "A+B"]}, index=["c0", "c1", "c2"])
    >>> raw = ad.AnnData(np.zeros((3, 2)), obs=obs, var=pd.DataFrame(index=["A", "B"]))
    >>> std = standardize(raw, "gears", perturbation_type="overexpression")
    >>> std.obs["perturbation"].tolist()
    ['ctrl', 'A', 'A,B']

    Any other layout, with explicit keys:

    >>> obs = pd.DataFrame({"guide_target": ["NT", "A", "B"]}, index=["c0", "c1", "c2"])
    >>> raw = ad.AnnData(np.zeros((3, 2)), obs=obs, var=pd.DataFrame(index=["A", "B"]))
    >>> std = standardize(raw, perturbation_key="guide_target", control_label="NT",
    ...                   perturbation_type="knockout")
    >>> std.obs["is_control"].tolist()
    [True, False, False]
    """
    if not isinstance(adata, AnnData):
        raise DataContractError(f"Expected an AnnData object, got {type(adata).__name__}.")
    perturbation_key = _renamed(renamed, {"perturbation_key": perturbation_key})[
        "perturbation_key"]
    if convention is None:
        if perturbation_key is None:
            raise ParameterError(
                "Name a convention ('gears', 'cell-eval', 'scperturb') or describe the layout: "
                "perturbation_key= (the obs column of targeted genes) and control_label= "
                "(the label of control samples)."
            )
        key = "custom"
        spec: dict[str, object] = {"column": perturbation_key, "control": None,
                                   "separator": None, "filler": set(), "symbols": None}
    else:
        key = _convention_key(convention)
        if key == "causalcell":
            validate(adata, check_expression=False)
            return in_memory_copy(adata)
        spec = _CONVENTIONS[key]
    column = perturbation_key or str(spec["column"])
    control = control_label if control_label is not None else spec["control"]
    if control is None and require_controls:
        raise ParameterError(
            "Pass control_label= (the label of control samples in obs column "
            f"{column!r}), or require_controls=False for data without controls."
        )
    sep = separator if separator is not None else spec["separator"]
    filler = set(spec["filler"]) | ({control} if control is not None else set())  # type: ignore[arg-type]
    obs_in = adata.obs
    where = f"The {key} convention reads" if key != "custom" else "perturbation_key names"
    if column not in obs_in.columns:
        raise DataContractError(
            f"{where} obs column {column!r}, which is missing (obs has "
            f"{list(obs_in.columns)}). Pass perturbation_key='...' to name the right one."
        )
    raw = obs_in[column]
    if raw.isna().any():
        row = raw.index[raw.isna().to_numpy()][0]
        raise DataContractError(f"obs column {column!r} is missing in row {row!r}.")
    codes, uniques = pd.factorize(raw.astype(str))
    uniq_labels: list[str] = []
    uniq_control: list[bool] = []
    # One iteration per distinct label (perturbations, not cells).
    for value in uniques:
        parts = [value] if sep is None else str(value).split(str(sep))
        genes = [p.strip() for p in parts if p.strip() and p.strip() not in filler]
        uniq_control.append(not genes)
        uniq_labels.append(str(control) if not genes else COMBINATION_SEPARATOR.join(genes))
    is_control = np.asarray(uniq_control, dtype=bool)[codes]
    if require_controls and not is_control.any():
        examples = list(uniques[:5])
        raise DataContractError(
            f"No sample has the control label {control!r} in obs column {column!r} (found "
            f"e.g. {examples}). Pass control_label='...' to name the controls."
        )
    labels = np.asarray(uniq_labels, dtype=object)[codes]
    kinds = _standardize_kinds(key, obs_in, perturbation_type, perturbation_type_key,
                               is_control)
    levels = _standardize_levels(obs_in, level_key)

    out = in_memory_copy(adata)
    obs = out.obs
    new = {PERTURBATION: labels.astype(str), IS_CONTROL: is_control, PERTURBATION_TYPE: kinds,
           LEVEL: levels}
    for name, values in new.items():
        # The source labels are kept as given; other contract columns when they change.
        if name in obs.columns and (name == column or not _same(obs[name], values)):
            obs[f"{name}_original"] = obs[name]
        obs[name] = values
    _standardize_symbols(out, spec, gene_symbols)
    validate(out, check_expression=False)
    return out


def _same(column: pd.Series, values: np.ndarray) -> bool:
    """True when an existing obs column already holds ``values`` (nothing to keep)."""
    old = column.to_numpy()
    if len(old) != len(values):
        return False
    return bool(pd.Series(old, dtype=object).equals(pd.Series(values, dtype=object)))


def _standardize_kinds(
    key: str, obs: pd.DataFrame, perturbation_type: str | None,
    perturbation_type_key: str | None, is_control: np.ndarray,
) -> np.ndarray:
    column = perturbation_type_key
    if column == "auto":
        column = PERTURBATION_TYPE if PERTURBATION_TYPE in obs.columns else None
    elif column is not None and column not in obs.columns:
        raise DataContractError(
            f"perturbation_type_key={column!r} is not an obs column (obs has "
            f"{list(obs.columns)})."
        )
    if perturbation_type is not None:
        kinds = np.full(len(obs), str(perturbation_type).strip().lower(), dtype=object)
    elif column is not None:
        source = obs[column].astype(str).str.strip().str.lower()
        kinds = source.map(lambda v: _SCPERTURB_KINDS.get(v, v)).to_numpy(dtype=object)
        missing = obs[column].isna().to_numpy() & ~is_control
        if missing.any():
            row = obs.index[np.flatnonzero(missing)[0]]
            raise DataContractError(
                f"obs column {column!r} (the perturbation kind) is missing in row {row!r}, "
                f"a perturbed sample; fill it or pass perturbation_type='...'."
            )
    else:
        hint = {
            "gears": "CRISPRi data (Adamson, Replogle): 'knockdown'; CRISPRa (Norman): "
                     "'overexpression'",
            "cell-eval": "the Virtual Cell Challenge (CRISPRi): 'knockdown'",
            "scperturb": "e.g. 'knockout' for CRISPR-cas9",
            "custom": "e.g. 'knockout' for CRISPR-cas9, 'knockdown' for CRISPRi",
        }[key]
        layout = f"The {key} layout" if key != "custom" else "This layout"
        raise DataContractError(
            f"{layout} does not record how genes were perturbed: pass "
            f"perturbation_type= ({hint}), or perturbation_type_key= naming the obs column "
            f"that does."
        )
    kinds[is_control] = "control"
    return kinds


def _standardize_levels(obs: pd.DataFrame, level_key: str | None) -> np.ndarray:
    column = level_key
    if column == "auto":
        column = LEVEL if LEVEL in obs.columns else None
    elif column is not None and column not in obs.columns:
        raise DataContractError(
            f"level_key={column!r} is not an obs column (obs has {list(obs.columns)})."
        )
    if column is None:
        return np.full(len(obs), np.nan)
    return obs[column].to_numpy()


def _standardize_symbols(out: AnnData, spec: Mapping[str, object],
                         gene_symbols: str | None) -> None:
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
    if (symbols.to_numpy() == out.var_names.to_numpy()).all():
        return  # already the var_names: nothing to keep
    out.var["original_var_names"] = out.var_names.to_numpy()
    out.var_names = pd.Index(symbols.to_numpy(), dtype=str)


# --------------------------------------------------------------------------- export


def to_convention(
    adata: AnnData,
    convention: str,
    *,
    control_label: str | None = None,
    perturbation_key: str | None = None,
    separator: str | None = None,
) -> AnnData:
    """Write the causalcell contract in another tool's layout: the inverse of :func:`standardize`.

    Only metadata changes: ``X``, layers, ``obsm`` and the obs / var names
    are copied as they are. Formats that expect cells (cell-eval, GEARS)
    take per-perturbation predictions once they are turned into cells with
    :func:`~causalcell.data.sample_cells`.

    Parameters
    ----------
    adata
        Cells or profiles following the data contract; never modified.
    convention
        ``"cell-eval"`` (obs ``target_gene``; controls ``"non-targeting"``;
        read by ``cell-eval run`` and the Virtual Cell Challenge tools),
        ``"gears"`` (obs ``condition`` as ``"A+ctrl"`` / ``"A+B"`` /
        ``"ctrl"``, var ``gene_name``) or ``"scperturb"`` (obs
        ``perturbation`` joined by ``"_"``, controls ``"control"``,
        ``perturbation_type`` in scPerturb's words: ``"CRISPR"``,
        ``"CRISPRi"``, ``"CRISPRa"``, ``"drug"``).
    control_label
        Label written for every control sample (default: the convention's).
    perturbation_key
        obs column to write the labels to (default: the convention's).
    separator
        Combination separator to write (default: the convention's; cell-eval
        labels of combinations keep causalcell's ``","``).

    Returns
    -------
    AnnData
        A copy. obs: the label column of the convention; ``is_control`` and
        (unless the convention reads it) ``perturbation`` are dropped;
        ``perturbation_type`` and ``expression_level_after_perturbation``
        stay, as extra columns the other tools ignore, so that nothing is
        lost: ``standardize(to_convention(a, c), c)`` gives back ``a``'s
        contract columns (controls carry the convention's control label
        unless ``control_label`` is given to both). Every other obs column
        is kept; a column the export overwrites is kept with the suffix
        ``_original``.

    Raises
    ------
    DataContractError
        ``adata`` breaks the contract, a gene symbol contains the
        separator or equals the control label (the labels would be
        ambiguous), or the convention is unknown.

    See Also
    --------
    standardize : the inverse.
    sample_cells : cells from per-perturbation predictions.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> out = to_convention(sim.adata, "gears")
    >>> out.obs["condition"].iloc[[0, -1]].tolist()
    ['ctrl', 'G024+ctrl']
    >>> back = cc.data.standardize(out, "gears", control_label="control")
    >>> back.obs["perturbation"].iloc[[0, -1]].tolist()
    ['control', 'G024']
    """
    if not isinstance(adata, AnnData):
        raise DataContractError(f"Expected an AnnData object, got {type(adata).__name__}.")
    key = _convention_key(convention)
    if key == "causalcell":
        validate(adata, check_expression=False)
        return in_memory_copy(adata)
    from causalcell.data._interventions import Interventions

    spec = _CONVENTIONS[key]
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    column = perturbation_key or str(spec["column"])
    control = str(control_label if control_label is not None else spec["control"])
    sep = separator if separator is not None else spec["separator"]
    sep = COMBINATION_SEPARATOR if sep is None else str(sep)

    # One label per distinct (label, control) pair: perturbations, not cells.
    codes, uniques = pd.factorize(pd.MultiIndex.from_arrays([iv.labels, iv.is_control]))
    written = np.empty(len(uniques), dtype=object)
    for u, (label, is_ctrl) in enumerate(uniques):
        if is_ctrl:
            written[u] = control
            continue
        genes = split_label(label)
        bad = [g for g in genes if g == control or g in spec["filler"]  # type: ignore[operator]
               or (sep != COMBINATION_SEPARATOR and sep in g)]
        if bad:
            raise DataContractError(
                f"Gene symbol {bad[0]!r} (in perturbation {label!r}) cannot be written in the "
                f"{key} layout: it contains the separator {sep!r} or equals the control label "
                f"{control!r}. Pass separator= / control_label= with other characters."
            )
        if key == "gears" and len(genes) == 1:
            genes = (*genes, control)
        written[u] = sep.join(genes)
    labels = written[codes].astype(str)

    out = in_memory_copy(adata)
    obs = out.obs
    if column in obs.columns and column != PERTURBATION:
        obs[f"{column}_original"] = obs[column]
    for name in (PERTURBATION, IS_CONTROL):
        if name in obs.columns and name != column:
            del obs[name]
    obs[column] = labels
    if key == "scperturb":
        obs[PERTURBATION_TYPE] = _scperturb_kinds(iv.kind, iv.is_control)
    if spec["symbols"] is not None and spec["symbols"] not in out.var.columns:
        out.var[str(spec["symbols"])] = out.var_names.to_numpy()
    return out


def _scperturb_kinds(kind: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    """Our kinds in scPerturb's words; controls take the data set's main kind, as in
    scPerturb's files."""
    words = np.array([_SCPERTURB_EXPORT.get(k, k) for k in pd.unique(kind)], dtype=object)
    out = words[pd.Index(pd.unique(kind)).get_indexer(kind)]
    perturbed = out[~is_control]
    if len(perturbed):
        values, counts = np.unique(perturbed.astype(str), return_counts=True)
        out[is_control] = values[np.argmax(counts)]
    else:
        out[is_control] = "control"
    return out
