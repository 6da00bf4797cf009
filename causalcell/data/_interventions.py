"""`Interventions`: which genes each sample targets, how, and at what level.

An intervention is data. It is parsed once from the obs contract (see
:mod:`causalcell.data.contract`) into this object, and the object travels:
the graph code uses it to cut edges, the models to decide what not to fit and
what to clamp, the metrics to decide what not to score.

Parsing works on integer codes: each obs column is factorized once (a
categorical column is read through its codes), the codes of label, kind and
control flag are combined into one integer per sample, and only the distinct
*conditions* (a screen has ~1e5 cells but ~1e3 conditions) are parsed as
text. The per-sample structures are then vectorized gathers from
per-condition ones.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from causalcell.data._schema import (
    COMBINATION_SEPARATOR,
    CONTROL_KIND,
    IS_CONTROL,
    KNOCKOUT,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    check_columns,
    check_is_control,
    did_you_mean,
    infinite_level_error,
    is_missing_text,
    normalize_kind,
    parse_levels,
    split_label,
)
from causalcell.data._sparse import entry_rows, ragged_gather
from causalcell.errors import DataContractError, ParameterError, UnmeasuredTargetWarning

__all__ = ["Interventions"]

_MAX_NAMED = 10  # genes named in a warning before "... and N more"


def _factorize(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1: missing) and distinct values of an obs column.

    A categorical column is read through its own codes (no pass over its
    values); its unused categories are harmless extra uniques.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy().astype(np.int64)
        return codes, np.asarray(column.cat.categories.astype(object))
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


@dataclass(frozen=True)
class _Columns:
    """The contract columns of obs as integer codes, after the per-row checks."""

    labels: np.ndarray  # (n,) str objects, as given
    label_codes: np.ndarray  # (n,) into label_values
    label_values: np.ndarray  # distinct labels, str
    kind_codes: np.ndarray  # (n,) into kind_values
    kind_values: np.ndarray  # distinct normalized kinds
    is_control: np.ndarray  # (n,) bool


@dataclass(frozen=True)
class _RawConditions:
    """Distinct (label as given, kind, control flag) of the samples, first appearance order."""

    codes: np.ndarray  # (n,) sample -> raw condition
    label: list[str]
    kind: list[str]
    control: list[bool]
    targets: list[tuple[str, ...]]  # genes in label order; () for controls


@dataclass(frozen=True)
class _Conditions:
    """Canonical conditions (sorted targets and kind) and their measured targets."""

    codes: np.ndarray  # (n,) sample -> condition
    frame: pd.DataFrame  # the public ``conditions`` table
    indptr: np.ndarray  # measured target columns of each condition, CSR layout
    indices: np.ndarray
    unmeasured: tuple[str, ...]


class Interventions:
    """The interventions of a set of samples, parsed from the obs contract.

    Build it with :meth:`from_adata` or :meth:`from_obs`; do not call the
    constructor directly. Treat it as immutable: :meth:`take` and
    :meth:`with_levels` return new objects.

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
        ``perturbation_type`` of each sample, stripped and lower-cased.
    mask : scipy.sparse.csr_array of bool, shape (n_samples, n_genes)
        True where a sample targets a measured gene. Column indices are
        sorted within each row.
    levels : numpy.ndarray of float
        The level T of each stored entry of :attr:`mask`, in the CSR order of
        ``mask.data``: 0 for knockouts, NaN when unknown.
    entry_rows : numpy.ndarray of int
        The sample (row) of each stored entry of :attr:`mask`: entry ``i``
        is ``(entry_rows[i], mask.indices[i])`` with level ``levels[i]``.
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
        if not len(obs):
            raise DataContractError(
                "obs has 0 rows (no samples): there is nothing to parse. Check the filter or "
                "subset that produced it."
            )
        genes = _gene_index(genes)
        columns = _read_columns(obs)
        raw = _raw_conditions(columns, obs.index)
        cond = _canonical_conditions(raw, genes)
        indptr, indices, rows = _sample_entries(cond)
        mask = sp.csr_array(
            (np.ones(len(indices), dtype=bool), indices, indptr), shape=(len(obs), len(genes))
        )
        levels = _LevelParser(obs, raw, genes, rows).parse()
        # Knockouts: T = 0 whatever transcript is still measured.
        is_knockout = np.asarray(columns.kind_values == KNOCKOUT)[columns.kind_codes]
        levels[is_knockout[rows]] = 0.0
        if cond.unmeasured and warn_unmeasured:
            _warn_unmeasured(cond.unmeasured, genes)
        return cls(
            genes=genes,
            obs_names=_obs_names(obs.index),
            labels=columns.labels,
            is_control=columns.is_control,
            kind=columns.kind_values[columns.kind_codes],
            mask=mask,
            levels=levels,
            conditions=cond.frame,
            codes=cond.codes,
            unmeasured=cond.unmeasured,
        )

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

    @cached_property
    def entry_rows(self) -> np.ndarray:
        """The sample of each stored entry of :attr:`mask` (aligned with :attr:`levels`)."""
        return entry_rows(self.mask.indptr)

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
                f"Gene {gene!r} is not among the {len(self.genes)} measured genes"
                f"{did_you_mean([str(gene)], self.genes)}."
            )
        out = np.zeros(self.n_samples, dtype=bool)
        out[self.entry_rows[self.mask.indices == j]] = True
        return out

    # --------------------------------------------------------------- derive
    def take(self, rows: object) -> Interventions:
        """The samples ``rows``: a slice, an integer array (repeats allowed) or a boolean mask.

        Conditions keep their rows (``n_samples`` is recounted), so condition
        codes mean the same in the subset.
        """
        try:
            rows = np.atleast_1d(np.arange(self.n_samples)[rows])  # type: ignore[index]
        except (IndexError, TypeError, ValueError) as exc:
            raise ParameterError(
                f"take(): rows={rows!r} does not select samples of these {self.n_samples} "
                f"({exc}); give a slice, integer positions or a boolean mask."
            ) from None
        indptr, indices = ragged_gather(self.mask.indptr, self.mask.indices, rows)
        _, levels = ragged_gather(self.mask.indptr, self.levels, rows)
        codes = self.codes[rows]
        conditions = self.conditions.copy()
        conditions["n_samples"] = np.bincount(codes, minlength=len(conditions))
        return Interventions(
            genes=self.genes,
            obs_names=self.obs_names[rows],
            labels=self.labels[rows],
            is_control=self.is_control[rows],
            kind=self.kind[rows],
            mask=sp.csr_array(
                (np.ones(len(indices), dtype=bool), indices, indptr),
                shape=(len(rows), self.mask.shape[1]),
            ),
            levels=levels,
            conditions=conditions,
            codes=codes,
            unmeasured=self.unmeasured,
        )

    __getitem__ = take

    def with_levels(self, levels: np.ndarray) -> Interventions:
        """The same interventions with the levels of the mask entries replaced.

        Parameters
        ----------
        levels
            One value per stored entry of :attr:`mask`, in CSR order (e.g.
            levels with the unknown ones resolved by a model).

        Raises
        ------
        ValueError
            If ``levels`` does not have one value per entry.
        """
        levels = np.asarray(levels, dtype=np.float64)
        if levels.shape != self.levels.shape:
            raise ValueError(
                f"with_levels needs {self.levels.shape[0]} levels (one per targeted entry), "
                f"got shape {levels.shape}."
            )
        other = copy.copy(self)  # shares everything but the levels (and keeps entry_rows)
        other.levels = levels
        return other


# ---------------------------------------------------------------------- parsing phases
def _gene_index(genes: Sequence[str] | pd.Index) -> pd.Index:
    genes = pd.Index(genes).astype(str)
    if not genes.is_unique:
        dup = genes[genes.duplicated()].unique()[:5].tolist()
        raise DataContractError(
            f"Gene names are not unique (e.g. {dup}); make them unique first "
            f"(adata.var_names_make_unique())."
        )
    return genes


def _obs_names(index: pd.Index) -> pd.Index:
    """The sample names as strings. An index that holds strings already (pandas caches
    that finding) is not converted again, which would cost a pass over 1e5 Python
    objects per parse; a shallow copy shares its values but not its name."""
    if index.dtype == object and index.inferred_type == "string":
        return index.copy()
    return pd.Index(index).astype(str)


def _read_columns(obs: pd.DataFrame) -> _Columns:
    """Check the contract columns row by row and encode them as integer codes."""
    check_columns(obs)
    is_control = check_is_control(obs)
    label_codes, label_raw = _factorize(obs[PERTURBATION])
    missing_label = label_codes < 0
    if missing_label.any():
        row = obs.index[np.flatnonzero(missing_label)[0]]
        raise DataContractError(
            f"Column {PERTURBATION!r} is missing in row {row!r} "
            f"({int(missing_label.sum())} rows in all). Every sample needs a label: the "
            f"targeted gene(s), or a control label."
        )
    label_values = np.array([str(v) for v in label_raw], dtype=object)
    kind_codes, kind_raw = _factorize(obs[PERTURBATION_TYPE])
    missing_kind = kind_codes < 0
    if (missing_kind & ~is_control).any():
        row = obs.index[np.flatnonzero(missing_kind & ~is_control)[0]]
        raise DataContractError(
            f"Column {PERTURBATION_TYPE!r} is missing in row {row!r}, a perturbed sample. "
            f"Use 'knockout', 'knockdown' or 'overexpression' (or another word such as "
            f"'chemical')."
        )
    # Normalize the distinct kinds only, then merge those that became equal
    # ("Knockout" and "knockout"); a control without a kind is "control".
    spelled = [normalize_kind(v) for v in kind_raw] + [CONTROL_KIND]
    merged, kind_values = pd.factorize(np.array(spelled, dtype=object))
    kind_codes = merged[np.where(missing_kind, len(kind_raw), kind_codes)].astype(np.int64)
    return _Columns(
        labels=label_values[label_codes],
        label_codes=label_codes,
        label_values=label_values,
        kind_codes=kind_codes,
        kind_values=np.asarray(kind_values, dtype=object),
        is_control=is_control,
    )


def _raw_conditions(columns: _Columns, index: pd.Index) -> _RawConditions:
    """The distinct (label, kind, control) combinations; each label is split once."""
    n_kinds = len(columns.kind_values)
    key = (columns.label_codes * n_kinds + columns.kind_codes) * 2 + columns.is_control
    codes, uniques = pd.factorize(key)
    codes = codes.astype(np.int64)
    control = (uniques % 2).astype(bool)
    label_code, kind_code = np.divmod(uniques // 2, n_kinds)
    labels = columns.label_values[label_code].tolist()
    targets: list[tuple[str, ...]] = []
    for r, (label, ctrl) in enumerate(zip(labels, control, strict=True)):
        genes = () if ctrl else split_label(label)
        if not ctrl and not genes:
            raise DataContractError(
                f"Row {_first_row(index, codes, r)!r} is not a control but its "
                f"{PERTURBATION!r} label {label!r} names no gene. Set {IS_CONTROL!r} to True "
                f"for controls, or name the targeted gene(s)."
            )
        if len(set(genes)) != len(genes):
            raise DataContractError(
                f"Row {_first_row(index, codes, r)!r}: the label {label!r} names a gene "
                f"twice; list each targeted gene once."
            )
        targets.append(genes)
    return _RawConditions(
        codes=codes,
        label=labels,
        kind=columns.kind_values[kind_code].tolist(),
        control=control.tolist(),
        targets=targets,
    )


def _first_row(index: pd.Index, codes: np.ndarray, code: int) -> object:
    """The obs name of the first sample with this code (for error messages)."""
    return index[int(np.flatnonzero(codes == code)[0])]


def _canonical_conditions(raw: _RawConditions, genes: pd.Index) -> _Conditions:
    """Merge raw conditions into canonical ones ("A,B" == "B,A") and find their columns."""
    canonical = [
        label if ctrl else COMBINATION_SEPARATOR.join(sorted(targets))
        for label, ctrl, targets in zip(raw.label, raw.control, raw.targets, strict=True)
    ]
    # First-appearance factorization of the (label, kind, control) triples of the
    # ~1e3 raw conditions: a dict does it without pandas' per-call overhead,
    # which a MultiIndex costs several times over at this size.
    first_of: dict[tuple[str, str, bool], int] = {}
    raw_to_cond = np.fromiter(
        (first_of.setdefault(key, len(first_of))
         for key in zip(canonical, raw.kind, raw.control, strict=True)),
        dtype=np.int64, count=len(canonical),
    )
    codes = raw_to_cond[raw.codes]
    cond_label = np.array([key[0] for key in first_of], dtype=object)
    cond_kind = np.array([key[1] for key in first_of], dtype=object)
    cond_control = np.array([key[2] for key in first_of], dtype=bool)
    targets = [() if ctrl else tuple(lab.split(COMBINATION_SEPARATOR))
               for lab, ctrl in zip(cond_label, cond_control, strict=True)]
    n_targets = np.fromiter(map(len, targets), dtype=np.int64, count=len(targets))
    # Measured targets of every condition as sorted column indices (CSR layout).
    flat = [g for t in targets for g in t]
    column = genes.get_indexer(flat) if flat else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(targets)), n_targets)
    measured = column >= 0
    order = np.lexsort((column[measured], owner[measured]))
    indices = column[measured][order].astype(np.int64)
    n_measured = np.bincount(owner[measured], minlength=len(targets)).astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(n_measured)]).astype(np.int64)
    unmeasured = tuple(sorted({g for g, m in zip(flat, measured, strict=True) if not m}))
    frame = pd.DataFrame(
        {
            PERTURBATION: cond_label,
            PERTURBATION_TYPE: cond_kind,
            IS_CONTROL: cond_control,
            "targets": targets,
            "n_targets": n_targets,
            "n_measured": n_measured,
            "n_samples": np.bincount(codes, minlength=len(targets)),
        }
    )
    frame.index = pd.Index(_condition_keys(frame), name="condition")
    return _Conditions(codes, frame, indptr, indices, unmeasured)


def _sample_entries(cond: _Conditions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mask's indptr and indices (each sample gets its condition's measured
    targets) and the sample of each entry."""
    per_condition = np.diff(cond.indptr)
    if per_condition.max(initial=0) > 1:  # combinations: a ragged gather
        indptr, indices = ragged_gather(cond.indptr, cond.indices, cond.codes)
        return indptr, indices, entry_rows(indptr)
    # At most one measured target per condition (most screens): one lookup per
    # sample, without the ragged gather's offsets.
    targeted = (per_condition > 0)[cond.codes]
    rows = np.flatnonzero(targeted)
    column = np.full(len(per_condition), -1, dtype=np.int64)
    column[per_condition > 0] = cond.indices
    indptr = np.zeros(len(targeted) + 1, dtype=np.int64)
    np.cumsum(targeted, out=indptr[1:])
    return indptr, column[cond.codes[rows]], rows


def _condition_keys(conditions: pd.DataFrame) -> list[str]:
    """Readable unique keys: the canonical label, plus the kind when a label
    occurs with several kinds (e.g. a gene both knocked down and activated)."""
    labels = conditions[PERTURBATION]
    ambiguous = labels.duplicated(keep=False).to_numpy()
    return [
        f"{lab} [{k}]" if amb else lab
        for lab, k, amb in zip(labels, conditions[PERTURBATION_TYPE], ambiguous, strict=True)
    ]


def _warn_unmeasured(unmeasured: tuple[str, ...], genes: pd.Index) -> None:
    named = ", ".join(unmeasured[:_MAX_NAMED])
    n_more = len(unmeasured) - _MAX_NAMED
    more = f" and {n_more} more" if n_more > 0 else ""
    warnings.warn(
        f"{len(unmeasured)} targeted gene(s) are not among the measured genes: "
        f"{named}{more}{did_you_mean(unmeasured, genes)}. They are kept as interventions "
        f"(their downstream effects are measured) but cannot be clamped or excluded from "
        f"scores.",
        UnmeasuredTargetWarning,
        stacklevel=4,
    )


class _LevelParser:
    """Levels T aligned with the CSR entries of the mask, from the level column.

    A numeric column is gathered directly. A text column is factorized: each
    distinct text is converted once for the single-gene samples (the bulk of
    any screen), and each distinct (combination, text) pair is parsed once.
    """

    def __init__(
        self, obs: pd.DataFrame, raw: _RawConditions, genes: pd.Index, rows: np.ndarray
    ) -> None:
        self.obs = obs
        self.raw = raw
        self.genes = genes
        self.rows = rows  # the sample of each mask entry
        n_targets = np.fromiter(map(len, raw.targets), dtype=np.int64, count=len(raw.targets))
        self.n_targets = n_targets[raw.codes]
        control = np.asarray(raw.control, dtype=bool)[raw.codes]
        self.single = ~control & (self.n_targets == 1)
        self.multi = ~control & (self.n_targets > 1)

    def parse(self) -> np.ndarray:
        levels = np.full(len(self.rows), np.nan)
        if LEVEL not in self.obs.columns or not len(self.rows):
            return levels
        levels = self._parse(levels)
        infinite = np.isinf(levels)
        if infinite.any():  # "inf" parses as a number: a level must be finite (or NaN)
            i = int(self.rows[np.flatnonzero(infinite)[0]])
            raise infinite_level_error(self.obs[LEVEL].iloc[i], self.obs.index[i])
        return levels

    def _parse(self, levels: np.ndarray) -> np.ndarray:
        column = self.obs[LEVEL]
        numeric = pd.api.types.is_numeric_dtype(column.dtype) and not (
            pd.api.types.is_bool_dtype(column.dtype)
        )
        if numeric:
            return self._numeric(column.to_numpy(dtype=float))
        codes, values = _factorize(column)
        # One extra slot (last) for missing cells: codes -1 point there.
        values = np.append(values, np.nan).astype(object)
        codes = np.where(codes < 0, len(values) - 1, codes)
        as_float = self._single_values(values, codes)
        single = self.single[self.rows]
        levels[single] = as_float[codes[self.rows[single]]]
        if self.multi.any():
            levels[self.multi[self.rows]] = self._combination_values(values, codes)
        return levels

    def _numeric(self, values: np.ndarray) -> np.ndarray:
        bad = self.multi & ~np.isnan(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            parse_levels(values[i], int(self.n_targets[i]), row=self.obs.index[i])  # raises
        return values[self.rows].astype(float)

    def _single_values(self, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Each distinct text as one float (NaN when missing or not one number)."""
        text = [str(v) for v in values]
        missing = np.array([is_missing_text(t) for t in text], dtype=bool)
        as_float = pd.to_numeric(
            pd.Series([t.strip() for t in text], dtype=object).where(~missing, "nan"),
            errors="coerce",
        ).to_numpy(dtype=float)
        # A single-gene row whose text did not convert is an error: let
        # parse_levels word it (bad number, or several levels).
        failed = self.single & (np.isnan(as_float) & ~missing)[codes]
        if failed.any():
            i = int(np.flatnonzero(failed)[0])
            parse_levels(values[codes[i]], 1, row=self.obs.index[i])  # raises
        return as_float

    def _combination_values(self, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Levels of the entries of combination rows; one parse per distinct pair."""
        rows = np.flatnonzero(self.multi)
        raw_codes = self.raw.codes[rows]
        pair_codes, pair_uniques = pd.factorize(raw_codes * len(values) + codes[rows])
        first = np.full(len(pair_uniques), -1, dtype=np.int64)
        first[pair_codes[::-1]] = rows[::-1]
        # Per raw condition: the positions (in label order) of its measured
        # targets, in column order; one lookup for all conditions.
        targets = self.raw.targets
        n_targets = np.fromiter(map(len, targets), dtype=np.int64, count=len(targets))
        column = self.genes.get_indexer([g for t in targets for g in t])
        owner = np.repeat(np.arange(len(targets)), n_targets)
        position = np.arange(len(column)) - np.repeat(np.cumsum(n_targets) - n_targets, n_targets)
        measured = np.flatnonzero(column >= 0)
        order = measured[np.lexsort((column[measured], owner[measured]))]
        sel_indptr = np.concatenate([[0], np.cumsum(np.bincount(owner[measured],
                                                                 minlength=len(targets)))])
        sel_position = position[order]
        pair_indptr = np.zeros(len(pair_uniques) + 1, dtype=np.int64)
        pair_values: list[np.ndarray] = []
        for p, i in enumerate(first):  # one iteration per distinct (combination, text)
            c = int(self.raw.codes[i])
            parsed = np.asarray(parse_levels(values[codes[i]], int(n_targets[c]),
                                             row=self.obs.index[i]))
            chosen = parsed[sel_position[sel_indptr[c] : sel_indptr[c + 1]]]
            pair_values.append(chosen)
            pair_indptr[p + 1] = pair_indptr[p] + len(chosen)
        flat = np.concatenate(pair_values) if pair_values else np.zeros(0)
        return ragged_gather(pair_indptr, flat, pair_codes)[1]
