"""The earlier obs parser, kept as the reference of ``bench_parse.py``.

A faithful copy of ``Interventions.from_obs`` and the contract helpers it used as they
were before commit bdedc29 ("data: one schema module and an Interventions that
travels"): ``causalcell/data/_interventions.py`` (``from_obs``, ``_ragged_gather``,
``_condition_keys``, ``_parse_level_column``, ``_parse_combination_levels``) and
``causalcell/data/contract.py`` (the column names, ``split_label``, ``parse_levels``,
``check_columns``, ``check_is_control``) at ``bdedc29^``. Only this module's imports
and the class's constructor and access methods (left out) differ; the parsing code is
unchanged, so the benchmark times what the project's parser cost then (a pandas
MultiIndex of Python tuples per cell, kinds normalized cell by cell with ``np.char``).
Not part of the package: nothing imports it but the benchmark.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from causalcell.errors import DataContractError, UnmeasuredTargetWarning

_MAX_NAMED = 10  # genes named in a warning before "... and N more"

# ---------------------------------------------------------------- contract.py at bdedc29^
PERTURBATION = "perturbation"
IS_CONTROL = "is_control"
PERTURBATION_TYPE = "perturbation_type"
LEVEL = "expression_level_after_perturbation"
REQUIRED_COLUMNS = (PERTURBATION, IS_CONTROL, PERTURBATION_TYPE)
COMBINATION_SEPARATOR = ","
KNOWN_KINDS = ("knockout", "knockdown", "overexpression")

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


# ------------------------------------------------------------ _interventions.py at bdedc29^

def _ragged_gather(
    indptr: np.ndarray, values: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the ragged rows ``codes`` of a CSR-like (indptr, values).

    Returns the new indptr and the gathered values, without a Python loop.
    """
    lengths = np.diff(indptr)[codes]
    new_indptr = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    total = int(new_indptr[-1])
    if total == 0:
        return new_indptr, values[:0]
    offsets = np.arange(total, dtype=np.int64) - np.repeat(new_indptr[:-1], lengths)
    return new_indptr, values[np.repeat(indptr[:-1][codes], lengths) + offsets]


class Interventions:
    """The earlier ``Interventions``: its parsing methods, a constructor that only stores."""

    def __init__(self, **attributes: object) -> None:
        self.__dict__.update(attributes)

    @classmethod
    def from_obs(
        cls,
        obs: pd.DataFrame,
        genes: Sequence[str] | pd.Index,
        *,
        warn_unmeasured: bool = True,
    ) -> Interventions:
        """Parse the interventions described by an obs table.

        Parameters
        ----------
        obs
            A DataFrame with the contract columns (``perturbation``,
            ``is_control``, ``perturbation_type``, optionally
            ``expression_level_after_perturbation``).
        genes
            The measured gene symbols (columns of the expression matrix).
        warn_unmeasured
            See :meth:`from_adata`.

        Returns
        -------
        Interventions

        Raises
        ------
        DataContractError
            See :meth:`from_adata`.
        """
        if not isinstance(obs, pd.DataFrame):
            raise DataContractError(f"obs must be a pandas DataFrame, got {type(obs).__name__}.")
        genes = pd.Index(genes).astype(str)
        if not genes.is_unique:
            dup = genes[genes.duplicated()].unique()[:5].tolist()
            raise DataContractError(
                f"Gene names are not unique (e.g. {dup}); make them unique first "
                f"(adata.var_names_make_unique())."
            )
        check_columns(obs)
        is_control = check_is_control(obs)
        n = len(obs)
        labels = np.asarray(obs[PERTURBATION].astype(object).to_numpy(), dtype=object)
        missing_label = pd.isna(labels)
        if missing_label.any():
            row = obs.index[np.flatnonzero(missing_label)[0]]
            raise DataContractError(
                f"Column {PERTURBATION!r} is missing in row {row!r} "
                f"({int(missing_label.sum())} rows in all). Every sample needs a label: the "
                f"targeted gene(s), or a control label."
            )
        labels = labels.astype(str).astype(object)
        kinds_raw = obs[PERTURBATION_TYPE].astype(object).to_numpy()
        missing_kind = pd.isna(kinds_raw)
        if (missing_kind & ~is_control).any():
            row = obs.index[np.flatnonzero(missing_kind & ~is_control)[0]]
            raise DataContractError(
                f"Column {PERTURBATION_TYPE!r} is missing in row {row!r}, a perturbed sample. "
                f"Use 'knockout', 'knockdown' or 'overexpression' (or another word such as "
                f"'chemical')."
            )
        kind = np.where(missing_kind, "control", kinds_raw).astype(str)
        kind = np.char.lower(np.char.strip(kind)).astype(object)

        # --- conditions: one parse per distinct (label, kind, is_control)
        raw_key = pd.MultiIndex.from_arrays([labels, kind, is_control])
        raw_codes, raw_uniques = pd.factorize(raw_key)
        cond_rows: list[tuple[str, str, bool, tuple[str, ...]]] = []
        for label, k, ctrl in raw_uniques:
            if ctrl:
                cond_rows.append((label, k, True, ()))
                continue
            targets = split_label(label)
            if not targets:
                row = obs.index[np.flatnonzero(labels == label)[0]]
                raise DataContractError(
                    f"Row {row!r} is not a control but its {PERTURBATION!r} label {label!r} "
                    f"names no gene. Set {IS_CONTROL!r} to True for controls, or name the "
                    f"targeted gene(s)."
                )
            if len(set(targets)) != len(targets):
                row = obs.index[np.flatnonzero(labels == label)[0]]
                raise DataContractError(
                    f"Row {row!r}: the label {label!r} names a gene twice; list each "
                    f"targeted gene once."
                )
            cond_rows.append((label, k, False, targets))
        # Canonical condition: sorted targets ("A,B" == "B,A") and kind.
        canon = [
            (lab if ctrl else COMBINATION_SEPARATOR.join(sorted(t)), k, ctrl)
            for lab, k, ctrl, t in cond_rows
        ]
        canon_codes, canon_uniques = pd.factorize(pd.MultiIndex.from_tuples(canon))
        codes = canon_codes[raw_codes].astype(np.int64)

        cond_targets: list[tuple[str, ...]] = []
        for canon_label, _k, ctrl in canon_uniques:
            cond_targets.append(() if ctrl else tuple(canon_label.split(COMBINATION_SEPARATOR)))
        # Measured targets of each canonical condition, as sorted column indices.
        flat_targets = [g for t in cond_targets for g in t]
        flat_idx = genes.get_indexer(flat_targets) if flat_targets else np.zeros(0, np.int64)
        unmeasured = tuple(sorted({g for g, i in zip(flat_targets, flat_idx, strict=True)
                                   if i < 0}))
        cond_indptr = np.zeros(len(cond_targets) + 1, dtype=np.int64)
        cond_indices_parts = []
        start = 0
        for c, t in enumerate(cond_targets):
            idx = flat_idx[start : start + len(t)]
            start += len(t)
            idx = np.sort(idx[idx >= 0])
            cond_indices_parts.append(idx)
            cond_indptr[c + 1] = cond_indptr[c] + len(idx)
        cond_indices = (
            np.concatenate(cond_indices_parts).astype(np.int64)
            if cond_indices_parts else np.zeros(0, np.int64)
        )
        indptr, indices = _ragged_gather(cond_indptr, cond_indices, codes)
        mask = sp.csr_array(
            (np.ones(len(indices), dtype=bool), indices, indptr), shape=(n, len(genes))
        )
        levels = cls._parse_level_column(
            obs, labels, kind, is_control, raw_codes, cond_rows, genes, indptr, indices
        )

        n_samples = np.bincount(codes, minlength=len(canon_uniques))
        conditions = pd.DataFrame(
            {
                PERTURBATION: [c[0] for c in canon_uniques],
                PERTURBATION_TYPE: [c[1] for c in canon_uniques],
                IS_CONTROL: np.array([c[2] for c in canon_uniques], dtype=bool),
                "targets": cond_targets,
                "n_targets": np.array([len(t) for t in cond_targets], dtype=np.int64),
                "n_measured": np.diff(cond_indptr),
                "n_samples": n_samples,
            }
        )
        conditions.index = pd.Index(
            cls._condition_keys(conditions), name="condition"
        )
        if unmeasured and warn_unmeasured:
            named = ", ".join(unmeasured[:_MAX_NAMED])
            n_more = len(unmeasured) - _MAX_NAMED
            more = f" and {n_more} more" if n_more > 0 else ""
            warnings.warn(
                f"{len(unmeasured)} targeted gene(s) are not among the measured genes: "
                f"{named}{more}. They are kept as interventions (their downstream effects are "
                f"measured) but cannot be clamped or excluded from scores.",
                UnmeasuredTargetWarning,
                stacklevel=3,
            )
        return cls(
            genes=genes,
            obs_names=pd.Index(obs.index).astype(str),
            labels=labels,
            is_control=is_control,
            kind=kind,
            mask=mask,
            levels=levels,
            conditions=conditions,
            codes=codes,
            unmeasured=unmeasured,
        )

    @staticmethod
    def _condition_keys(conditions: pd.DataFrame) -> list[str]:
        """Readable unique keys: the canonical label, plus the kind when a label
        occurs with several kinds (e.g. a gene both knocked down and activated)."""
        labels = conditions[PERTURBATION]
        ambiguous = labels.duplicated(keep=False).to_numpy()
        return [
            f"{lab} [{k}]" if amb else lab
            for lab, k, amb in zip(labels, conditions[PERTURBATION_TYPE], ambiguous, strict=True)
        ]

    @staticmethod
    def _parse_level_column(
        obs: pd.DataFrame,
        labels: np.ndarray,
        kind: np.ndarray,
        is_control: np.ndarray,
        raw_codes: np.ndarray,
        cond_rows: list[tuple[str, str, bool, tuple[str, ...]]],
        genes: pd.Index,
        indptr: np.ndarray,
        indices: np.ndarray,
    ) -> np.ndarray:
        """Levels T aligned with the CSR entries of the mask.

        Single-gene rows (the bulk of any screen) are converted in one
        vectorized pass; each distinct (combination, level string) pair is
        parsed once.
        """
        n_rows = len(labels)
        n_entries = len(indices)
        levels = np.full(n_entries, np.nan)
        entry_rows = np.repeat(np.arange(n_rows), np.diff(indptr))
        if LEVEL in obs.columns and n_entries:
            col = obs[LEVEL]
            cond_n_targets = np.array([len(r[3]) for r in cond_rows], dtype=np.int64)
            n_targets = cond_n_targets[raw_codes]
            single = (~is_control) & (n_targets == 1)
            multi = (~is_control) & (n_targets > 1)
            numeric = pd.api.types.is_numeric_dtype(col.dtype) and not (
                pd.api.types.is_bool_dtype(col.dtype)
            )
            if numeric:
                values = col.to_numpy(dtype=float)
                bad = multi & ~np.isnan(values)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    parse_levels(values[i], int(n_targets[i]), row=obs.index[i])  # raises
                levels = values[entry_rows].astype(float)
            else:
                raw = col.astype(object).to_numpy()
                text = pd.Series(raw, dtype=object).astype(str).str.strip()
                as_float = pd.to_numeric(
                    text.where(~text.str.lower().isin(["", "nan", "na", "none"]), "nan"),
                    errors="coerce",
                ).to_numpy(dtype=float)
                # A single-gene row whose text did not convert is an error: let
                # parse_levels word it (bad number, or several levels).
                failed = single & np.isnan(as_float) & ~text.str.lower().isin(
                    ["", "nan", "na", "none"]
                ).to_numpy()
                if failed.any():
                    i = int(np.flatnonzero(failed)[0])
                    parse_levels(raw[i], 1, row=obs.index[i])  # raises
                entry_single = single[entry_rows]
                levels[entry_single] = as_float[entry_rows[entry_single]]
                if multi.any():
                    levels = Interventions._parse_combination_levels(
                        obs, raw, text.to_numpy(), raw_codes, cond_rows, genes, multi,
                        indptr, entry_rows, levels,
                    )
        # Knockouts: T = 0 whatever transcript is still measured.
        knockout_rows = np.asarray(kind == "knockout")
        if n_entries and knockout_rows.any():
            levels[knockout_rows[entry_rows]] = 0.0
        return levels

    @staticmethod
    def _parse_combination_levels(
        obs: pd.DataFrame,
        raw: np.ndarray,
        text: np.ndarray,
        raw_codes: np.ndarray,
        cond_rows: list[tuple[str, str, bool, tuple[str, ...]]],
        genes: pd.Index,
        multi: np.ndarray,
        indptr: np.ndarray,
        entry_rows: np.ndarray,
        levels: np.ndarray,
    ) -> np.ndarray:
        """Fill the entries of combination rows; one parse per distinct pair."""
        rows = np.flatnonzero(multi)
        pair_codes, pair_uniques = pd.factorize(
            pd.MultiIndex.from_arrays([raw_codes[rows], text[rows]])
        )
        first = np.full(len(pair_uniques), -1, dtype=np.int64)
        first[pair_codes[::-1]] = rows[::-1]
        # Per raw condition: which parsed positions are measured, in column order.
        selectors: dict[int, np.ndarray] = {}
        pair_indptr = np.zeros(len(pair_uniques) + 1, dtype=np.int64)
        pair_vals: list[np.ndarray] = []
        for p, i in enumerate(first):
            c = int(raw_codes[i])
            targets = cond_rows[c][3]
            if c not in selectors:
                idx = genes.get_indexer(list(targets))
                measured = np.flatnonzero(idx >= 0)
                selectors[c] = measured[np.argsort(idx[measured], kind="stable")]
            parsed = np.asarray(parse_levels(raw[i], len(targets), row=obs.index[i]))
            vals = parsed[selectors[c]]
            pair_vals.append(vals)
            pair_indptr[p + 1] = pair_indptr[p] + len(vals)
        flat = np.concatenate(pair_vals) if pair_vals else np.zeros(0)
        _, gathered = _ragged_gather(pair_indptr, flat, pair_codes)
        out = levels.copy()
        out[multi[entry_rows]] = gathered
        return out
