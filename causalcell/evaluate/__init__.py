"""Evaluation under the same conditioning as the models: targeted genes never score.

Every metric takes the observed data's interventions and by default excludes
each perturbation's targeted genes (``exclude="targeted"``); ``exclude=None``
reproduces the usual unconditioned numbers. Retrieval is fair pairwise by
default. This package never imports :mod:`causalcell.models`: it scores any
predictor's output.
"""

from causalcell.evaluate._align import Aligned, align
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
