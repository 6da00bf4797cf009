"""`Interventions`: which genes each sample targets, how, and at what level.

An intervention is data. It is parsed once from the obs contract (see
:mod:`causalcell.data.contract`) into this object; the graph code uses it to
cut edges, the models to decide what not to fit and what to clamp, the metrics
to decide what not to score.

Parsing works per *condition* (a distinct set of targeted genes with a kind),
not per sample: a screen has ~1e5 cells but ~1e3 conditions, so the per-sample
structures are built by vectorized gathers from per-condition ones.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell.data.contract import (
    COMBINATION_SEPARATOR,
    IS_CONTROL,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    check_columns,
    check_is_control,
    parse_levels,
    split_label,
)
from causalcell.errors import DataContractError, UnmeasuredTargetWarning

__all__ = ["Interventions"]

_MAX_NAMED = 10  # genes named in a warning before "... and N more"


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


def format_levels(levels: Sequence[float]) -> str:
    """Inverse of :func:`~causalcell.data.contract.parse_levels`: ``"0.2,nan"``."""
    return COMBINATION_SEPARATOR.join("nan" if math.isnan(v) else repr(float(v)) for v in levels)


class Interventions:
    """The interventions of a set of samples, parsed from the obs contract.

    Build it with :meth:`from_adata` or :meth:`from_obs`; do not call the
    constructor directly.

    Attributes
    ----------
    genes : pandas.Index
        The measured genes (columns of :attr:`mask`).
    obs_names : pandas.Index
        The samples (rows of :attr:`mask`).
    labels : numpy.ndarray of str
        The ``perturbation`` value of each sample, as given.
    is_control : numpy.ndarray of bool
    kind : numpy.ndarray of str
        ``perturbation_type`` of each sample, lower-cased.
    mask : scipy.sparse.csr_array of bool, shape (n_samples, n_genes)
        True where a sample targets a measured gene. Column indices are
        sorted within each row.
    levels : numpy.ndarray of float
        The level T of each stored entry of :attr:`mask`, in the CSR order of
        ``mask.data``: 0 for knockouts, NaN when unknown.
    conditions : pandas.DataFrame
        One row per distinct condition (targeted gene set and kind), indexed
        by a condition key, with columns ``perturbation`` (the canonical
        label: targets in sorted order joined by ","), ``perturbation_type``,
        ``is_control``, ``targets`` (tuple of all targeted symbols, measured
        or not), ``n_targets``, ``n_measured``, ``n_samples``.
    codes : numpy.ndarray of int
        Row of :attr:`conditions` of each sample.
    unmeasured : tuple of str
        Targeted genes that are not measured, sorted.

    Notes
    -----
    Combinations are first-class: ``"A,B"`` and ``"B,A"`` are the same
    condition, and every measured target of a combination is in the mask.
    Targets that are not measured stay in the labels and in
    ``conditions.targets`` but cannot be clamped or excluded; they are
    reported once with an :class:`~causalcell.errors.UnmeasuredTargetWarning`.
    """

    def __init__(
        self,
        *,
        genes: pd.Index,
        obs_names: pd.Index,
        labels: np.ndarray,
        is_control: np.ndarray,
        kind: np.ndarray,
        mask: sp.csr_array,
        levels: np.ndarray,
        conditions: pd.DataFrame,
        codes: np.ndarray,
        unmeasured: tuple[str, ...],
    ) -> None:
        self.genes = genes
        self.obs_names = obs_names
        self.labels = labels
        self.is_control = is_control
        self.kind = kind
        self.mask = mask
        self.levels = levels
        self.conditions = conditions
        self.codes = codes
        self.unmeasured = unmeasured

    # ------------------------------------------------------------------ build
    @classmethod
    def from_adata(cls, adata: AnnData, *, warn_unmeasured: bool = True) -> Interventions:
        """Parse the interventions of ``adata`` (obs contract, var_names as genes).

        Parameters
        ----------
        adata
            Cells or pseudobulk rows following the data contract.
        warn_unmeasured
            Issue one :class:`~causalcell.errors.UnmeasuredTargetWarning`
            listing targeted genes that are not in ``var_names``.

        Returns
        -------
        Interventions

        Raises
        ------
        DataContractError
            If obs does not follow the contract (missing column, non-boolean
            ``is_control``, a perturbed sample without gene or kind, a level
            count that differs from the number of targeted genes).
        """
        if not isinstance(adata, AnnData):
            raise DataContractError(
                f"Expected an AnnData object, got {type(adata).__name__}."
            )
        return cls.from_obs(adata.obs, adata.var_names, warn_unmeasured=warn_unmeasured)

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

    # --------------------------------------------------------------- access
    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return len(self.labels)

    def __len__(self) -> int:
        return self.n_samples

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_samples, n_genes)``."""
        return self.mask.shape

    def __repr__(self) -> str:
        n_cond = int((self.conditions["n_samples"] > 0).sum())
        present = self.conditions["n_samples"] > 0
        n_combo = int(((self.conditions["n_targets"] > 1) & present).sum())
        return (
            f"Interventions({self.n_samples} samples ({int(self.is_control.sum())} controls), "
            f"{len(self.genes)} genes, {n_cond} conditions ({n_combo} combinations), "
            f"{len(self.unmeasured)} unmeasured targets)"
        )

    def targets(self, i: int) -> tuple[str, ...]:
        """All genes targeted in sample ``i`` (measured or not), sorted."""
        return self.conditions["targets"].iat[int(self.codes[i])]

    def condition_of(self) -> np.ndarray:
        """Condition key of every sample (an index of :attr:`conditions`)."""
        return self.conditions.index.to_numpy()[self.codes]

    def level_matrix(self) -> sp.csr_array:
        """Levels T as a float sparse matrix with the structure of :attr:`mask`.

        Knockout entries are stored explicit zeros: test membership with
        :attr:`mask`, not with the non-zero pattern of this matrix.
        """
        return sp.csr_array(
            (self.levels.copy(), self.mask.indices.copy(), self.mask.indptr.copy()),
            shape=self.mask.shape,
        )

    def targeted(self, gene: str) -> np.ndarray:
        """Boolean mask of the samples that target ``gene`` (alone or in a combination).

        Raises
        ------
        DataContractError
            If ``gene`` is not a measured gene.
        """
        j = self.genes.get_indexer([gene])[0]
        if j < 0:
            raise DataContractError(
                f"Gene {gene!r} is not among the {len(self.genes)} measured genes."
            )
        out = np.zeros(self.n_samples, dtype=bool)
        col = self.mask[:, [j]].tocsc()
        out[col.indices] = True
        return out

    def __getitem__(self, index: object) -> Interventions:
        """Subset samples with a slice, an integer array or a boolean mask."""
        rows = np.arange(self.n_samples)[index]  # type: ignore[index]
        rows = np.atleast_1d(rows)
        mask = self.mask[rows]
        sub_indptr, _ = _ragged_gather(self.mask.indptr, self.mask.indices, rows)
        _, sub_levels = _ragged_gather(self.mask.indptr, self.levels, rows)
        codes = self.codes[rows]
        conditions = self.conditions.copy()
        conditions["n_samples"] = np.bincount(codes, minlength=len(conditions))
        return Interventions(
            genes=self.genes,
            obs_names=self.obs_names[rows],
            labels=self.labels[rows],
            is_control=self.is_control[rows],
            kind=self.kind[rows],
            mask=sp.csr_array((mask.data, mask.indices, sub_indptr), shape=mask.shape),
            levels=sub_levels,
            conditions=conditions,
            codes=codes,
            unmeasured=self.unmeasured,
        )
