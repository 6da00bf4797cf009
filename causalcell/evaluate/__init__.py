"""Evaluation under the same conditioning as the models: targeted genes never score.

One vocabulary says which genes a score leaves out, as the parameter
``exclude`` and as the ``exclude`` column of every table: ``"targeted"`` (the
default, fair: a metric ignores the perturbation's targeted genes, a retrieval
comparison those of the query or the candidate), ``"none"`` (the usual
unconditioned numbers), and for retrieval ``"query"`` and ``"all"``
(:data:`METRIC_EXCLUDES`, :data:`RETRIEVAL_EXCLUDES`).

:func:`align` is the one owner of the alignment options (reference, join,
control label, layers, aggregation); :func:`evaluate`, :func:`compare` and
:func:`retrieval` take its :class:`Aligned`, or the predicted and observed
AnnData with the same options, which they align once. This package never
imports :mod:`causalcell.models`: it scores any predictor's output.
"""

from causalcell.evaluate._align import ALIGN_OPTIONS, Aligned, AlignOptions, align
from causalcell.evaluate._ceiling import replicate_ceiling
from causalcell.evaluate._de import (
    DEResult,
    bh_qvalues,
    differential_expression,
    rank_sum_test,
    welch_ttest,
)
from causalcell.evaluate._dose import DoseBins, DoseResponseScores, dose_bins, score_dose_response
from causalcell.evaluate._edistance import (
    CellGroups,
    edistance,
    group_edistances,
    pairwise_edistances,
)
from causalcell.evaluate._exclude import METRIC_EXCLUDES, RETRIEVAL_EXCLUDES
from causalcell.evaluate._metrics import (
    higher_is_better,
    metric_names,
    no_skill,
    perturbation_metrics,
)
from causalcell.evaluate._report import compare, evaluate, summarize
from causalcell.evaluate._retrieval import pairwise_retrieval
from causalcell.evaluate._retrieval_table import retrieval
from causalcell.evaluate._target_effect import target_effect

__all__ = [
    "ALIGN_OPTIONS",
    "METRIC_EXCLUDES",
    "RETRIEVAL_EXCLUDES",
    "AlignOptions",
    "Aligned",
    "CellGroups",
    "DEResult",
    "DoseBins",
    "DoseResponseScores",
    "align",
    "bh_qvalues",
    "compare",
    "differential_expression",
    "dose_bins",
    "edistance",
    "evaluate",
    "group_edistances",
    "higher_is_better",
    "metric_names",
    "no_skill",
    "pairwise_edistances",
    "pairwise_retrieval",
    "perturbation_metrics",
    "rank_sum_test",
    "replicate_ceiling",
    "retrieval",
    "score_dose_response",
    "summarize",
    "target_effect",
    "welch_ttest",
]
