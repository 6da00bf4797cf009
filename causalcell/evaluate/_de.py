"""Differential expression of each perturbation against the control cells.

Two tests per (perturbation, gene), each group of perturbed cells against the
one set of control cells, vectorized across genes and perturbations on dense,
sparse or Dask cell-level data: Welch's t-test (:func:`welch_ttest`, equal to
``scipy.stats.ttest_ind(group, control, equal_var=False)``) and the Wilcoxon
rank-sum test (:func:`rank_sum_test`, equal to ``scipy.stats.mannwhitneyu``
with the asymptotic method and continuity correction). q-values are
Benjamini-Hochberg, per perturbation across genes (:func:`bh_qvalues`).

The tests themselves live in the statistics module shared with structure
learning (``causalcell.data._stats``), so that DE and
:func:`causalcell.graph.learn_network` test, correct and call "significant"
in the same way; they are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from causalcell._validation import DEPRECATED, renamed
from causalcell.data import Interventions
from causalcell.data._pseudobulk import CellGroups
from causalcell.data._stats import (
    DASK_RANK_MEMORY,
    GroupMoments,
    bh_qvalues,
    controls_last,
    group_moments,
    rank_sum_test,
    significant,
    welch_against_controls,
    welch_ttest,
)
from causalcell.data.contract import (
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    expression_matrix,
)
from causalcell.data.lazy import check_row_chunks, is_dask_array
from causalcell.errors import DataContractError, ParameterError

__all__ = [
    "DASK_RANK_MEMORY",
    "METHODS",
    "DEResult",
    "bh_qvalues",
    "control_rows",
    "differential_expression",
    "differential_expression_of",
    "rank_sum_test",
    "welch_ttest",
]

METHODS = ("t-test", "wilcoxon")


# --------------------------------------------------------------------------- AnnData


@dataclass(frozen=True, repr=False)
class DEResult:
    """Differential expression of each perturbation against the controls.

    Attributes
    ----------
    perturbations : pandas.Index
        Condition keys (canonical labels, see
        :attr:`causalcell.data.Interventions.conditions`), one per row.
    perturbation_type : numpy.ndarray of str
        Kind of each perturbation.
    genes : pandas.Index
        Columns.
    method : str
        ``"t-test"`` (Welch) or ``"wilcoxon"``.
    statistic : numpy.ndarray
        t (Welch) or U (Wilcoxon), shape (n_perturbations, n_genes).
    score : numpy.ndarray
        Signed standardized statistic used to rank genes: t, or the z of U.
    pvalue, qvalue : numpy.ndarray
        Two-sided p-values and BH q-values (per perturbation).
    mean_difference : numpy.ndarray
        Mean of the perturbed cells minus mean of the controls.
    n_cells : numpy.ndarray of int
        Perturbed cells per perturbation.
    n_control : int
        Control cells.
    """

    perturbations: pd.Index
    perturbation_type: np.ndarray
    genes: pd.Index
    method: str
    statistic: np.ndarray
    score: np.ndarray
    pvalue: np.ndarray
    qvalue: np.ndarray
    mean_difference: np.ndarray
    n_cells: np.ndarray
    n_control: int

    def __repr__(self) -> str:
        return (
            f"DEResult({self.method}, {len(self.perturbations)} perturbations x "
            f"{len(self.genes)} genes vs {self.n_control} control cells)"
        )

    def significant(self, fdr: float = 0.05, *, alpha: Any = DEPRECATED) -> np.ndarray:
        """Boolean (n_perturbations, n_genes): q-value below ``fdr``.

        ``alpha`` is the deprecated name of ``fdr`` (a ``FutureWarning``;
        removed in the next release).
        """
        fdr = renamed("DEResult.significant", "alpha", alpha, "fdr", fdr, 0.05)
        return significant(self.qvalue, fdr)

    def select(self, perturbations: pd.Index | list[str], genes: pd.Index | list[str]) -> DEResult:
        """The rows and columns named, in that order.

        Raises
        ------
        DataContractError
            If a perturbation or gene is not in the result.
        """
        rows = self.perturbations.get_indexer(pd.Index(perturbations))
        cols = self.genes.get_indexer(pd.Index(genes))
        for what, idx, names in (("perturbation", rows, perturbations),
                                 ("gene", cols, genes)):
            if (idx < 0).any():
                missing = [str(n) for n, i in zip(names, idx, strict=True) if i < 0][:10]
                raise DataContractError(
                    f"The DE result has no {what} {missing}; compute it on the same "
                    f"observed data that is evaluated."
                )
        pick = np.ix_(rows, cols)
        return DEResult(
            perturbations=self.perturbations[rows],
            perturbation_type=self.perturbation_type[rows],
            genes=self.genes[cols],
            method=self.method,
            statistic=self.statistic[pick],
            score=self.score[pick],
            pvalue=self.pvalue[pick],
            qvalue=self.qvalue[pick],
            mean_difference=self.mean_difference[pick],
            n_cells=self.n_cells[rows],
            n_control=self.n_control,
        )

    def to_frame(self) -> pd.DataFrame:
        """Long table: one row per (perturbation, gene).

        Columns ``perturbation``, ``perturbation_type``, ``gene``,
        ``statistic``, ``score``, ``mean_difference``, ``pvalue``, ``qvalue``.
        """
        n, g = self.statistic.shape
        return pd.DataFrame(
            {
                PERTURBATION: np.repeat(self.perturbations.to_numpy(), g),
                PERTURBATION_TYPE: np.repeat(self.perturbation_type, g),
                "gene": np.tile(self.genes.to_numpy(), n),
                "statistic": self.statistic.ravel(),
                "score": self.score.ravel(),
                "mean_difference": self.mean_difference.ravel(),
                "pvalue": self.pvalue.ravel(),
                "qvalue": self.qvalue.ravel(),
            }
        )


def control_rows(interventions: Interventions, control_label: str | None) -> np.ndarray:
    """Boolean mask of the control samples, optionally only those labelled ``control_label``.

    Raises
    ------
    DataContractError
        If there is no control, or ``control_label`` names no control sample.
    """
    control = interventions.is_control
    if control_label is not None:
        labelled = interventions.labels == str(control_label)
        if not (labelled & control).any():
            present = sorted(set(interventions.labels[control].tolist()))[:10]
            hint = (f"control samples are labelled {present}" if present
                    else f"no sample has {IS_CONTROL!r} True")
            extra = (" (those samples are not marked is_control=True)"
                     if labelled.any() else "")
            raise DataContractError(
                f"control_label={control_label!r} names no control sample{extra}; {hint}. "
                f"Pass one of those labels, or no control_label= to use every control."
            )
        control = control & labelled
    if not control.any():
        raise DataContractError(
            f"No control sample: column {IS_CONTROL!r} is False everywhere. Mark the "
            f"non-targeting / untreated samples with is_control=True."
        )
    return control


def differential_expression(
    adata: AnnData,
    *,
    method: str = "t-test",
    layer: str | None = None,
    control_label: str | None = None,
) -> DEResult:
    """Test every perturbation against the control cells, gene by gene.

    Parameters
    ----------
    adata
        Cells (not pseudobulk) following the data contract, with controls.
        Expression is log-normalized, dense or sparse, or a Dask array
        chunked along cells (e.g. from :func:`causalcell.data.read_lazy`):
        the t-test and the mean differences read it once in row blocks on
        the active Dask client (else Dask's threaded scheduler); the
        Wilcoxon test reads it once per block of genes (see
        :func:`rank_sum_test`). The result is in memory.
    method
        ``"t-test"`` (Welch) or ``"wilcoxon"`` (Mann-Whitney U, tie-corrected
        normal approximation).
    layer
        Layer holding the expression; ``None`` uses ``X``.
    control_label
        Use only the control cells with this ``perturbation`` label (e.g.
        ``"non-targeting"`` when several kinds of controls exist); default
        every control.

    Returns
    -------
    DEResult
        One row per perturbation (condition), in order of first appearance.

    Raises
    ------
    DataContractError
        If obs breaks the contract, ``adata`` is pseudobulk (obs has
        ``n_cells``), there are no controls or ``control_label`` is absent,
        no perturbed cell exists, or a Dask expression matrix is chunked
        along genes.
    ParameterError
        If ``method`` is unknown.

    Examples
    --------
    >>> import causalcell as cc
    >>> sim = cc.datasets.simulate(n_genes=30, n_tfs=5, random_state=0)
    >>> de = differential_expression(sim.adata)
    >>> de.statistic.shape
    (20, 30)
    """
    return differential_expression_of(adata, method=method, layer=layer,
                                      control_label=control_label)


def differential_expression_of(
    adata: AnnData,
    *,
    method: str = "t-test",
    layer: str | None = None,
    control_label: str | None = None,
    cells: CellGroups | None = None,
) -> DEResult:
    """:func:`differential_expression`, with the moments of a pass over the same cells.

    ``cells`` (from :func:`~causalcell.data._pseudobulk.pseudobulk_cells` of
    ``adata`` and ``layer``) holds the moments of groups that refine the
    test's groups (each perturbed condition; the controls pooled), so the
    test's moments are merged from them rather than read from X again: the
    Welch test then does not read X at all (it needs the squares), the
    rank-sum test reads it only for the ranks.
    """
    if method not in METHODS:
        raise ParameterError(f"method={method!r} is unknown; choose one of {list(METHODS)}.")
    if not isinstance(adata, AnnData):
        raise DataContractError(f"Expected an AnnData object, got {type(adata).__name__}.")
    if "n_cells" in adata.obs.columns:
        raise DataContractError(
            "obs has an 'n_cells' column: these are pseudobulk profiles, but differential "
            "expression needs the individual cells. Pass the cell-level data."
        )
    if layer is not None and layer not in adata.layers:
        raise DataContractError(
            f"Layer {layer!r} not found; available layers: {list(adata.layers.keys())}."
        )
    iv = Interventions.from_adata(adata, warn_unmeasured=False)
    control = control_rows(iv, control_label)
    perturbed = ~iv.is_control
    if not perturbed.any():
        raise DataContractError("No perturbed cell: every sample is a control.")
    # Rows: the perturbed conditions in order of first appearance.
    cond_codes, keys = pd.factorize(iv.codes[perturbed])
    groups = np.full(iv.n_samples, -1, dtype=np.int64)
    groups[perturbed] = cond_codes
    X = expression_matrix(adata, layer)  # a backed X is read in row blocks (Dask)
    if is_dask_array(X):
        # Before any pass: the mean differences need whole rows per block.
        check_row_chunks(X, "X" if layer is None else f"layers[{layer!r}]")
    codes = controls_last(groups, control, len(keys))
    moments = None if cells is None else _merged_moments(cells, codes, len(keys) + 1)
    if method == "t-test":
        if moments is None or moments.squares is None:
            statistic, pvalue, diff = welch_ttest(X, groups, control, n_groups=len(keys))
        else:
            statistic, pvalue, diff = welch_against_controls(moments)
        score = statistic
    else:
        statistic, score, pvalue = rank_sum_test(X, groups, control, n_groups=len(keys))
        if moments is None:
            moments = group_moments(X, codes, len(keys) + 1)
        diff = _mean_difference(moments)
    conditions = iv.conditions.iloc[np.asarray(keys)]
    return DEResult(
        perturbations=pd.Index(conditions.index.to_numpy().astype(str), name="perturbation"),
        perturbation_type=conditions[PERTURBATION_TYPE].to_numpy().astype(str),
        genes=pd.Index(adata.var_names.astype(str)),
        method=method,
        statistic=statistic,
        score=score,
        pvalue=pvalue,
        qvalue=bh_qvalues(pvalue),
        mean_difference=diff,
        n_cells=np.bincount(cond_codes, minlength=len(keys)),
        n_control=int(control.sum()),
    )


def _merged_moments(cells: CellGroups, codes: np.ndarray, n_groups: int) -> GroupMoments:
    """The moments of the test's groups (``codes`` of each cell) merged from the
    finer groups of ``cells``."""
    if len(cells.groups) != len(codes):
        raise ValueError(f"the moments are of {len(cells.groups)} cells, the test of "
                         f"{len(codes)}: they must come from the same cells.")
    into = np.full(len(cells.moments.count), -1, dtype=np.int64)
    into[cells.groups] = codes
    if (into[cells.groups] != codes).any():  # one test group per finer group
        raise ValueError("the test's groups must be unions of the moments' groups.")
    return cells.moments.merged(into, n_groups)


def _mean_difference(moments: GroupMoments) -> np.ndarray:
    """Mean of each group minus the control mean (the last group), (n_groups, n_genes)."""
    mean = moments.mean()
    return mean[:-1] - mean[-1]
