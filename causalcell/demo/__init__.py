"""The work behind ``causalcell demo``, callable from Python without parsing arguments.

:func:`run` computes both parts of the demo on an embedded data set (how far
each targeted gene moves; the cross-validated comparison of models of
P(X | T)) into a :class:`DemoResult`; :func:`render_text` writes what the
command prints; :data:`FIGURES` lists the figures as ``(name, builder)``
pairs. Every sentence about the models is computed from the numbers.
"""

from causalcell.demo._comparison import (
    BASELINE,
    FOLDS,
    GRN,
    HEADLINE_METRICS,
    NAN_FOOTNOTE,
    SELECTED,
    demo_comparison,
    demo_data,
    demo_models,
    format_comparison,
    graph_verdict,
    target_verdict,
    verdicts,
)
from causalcell.demo._figures import FIGURES, figures
from causalcell.demo._run import DATASETS, DemoResult, TargetSection, run
from causalcell.demo._text import render_text, target_summary

__all__ = [
    "BASELINE",
    "DATASETS",
    "FIGURES",
    "FOLDS",
    "GRN",
    "HEADLINE_METRICS",
    "NAN_FOOTNOTE",
    "SELECTED",
    "DemoResult",
    "TargetSection",
    "demo_comparison",
    "demo_data",
    "demo_models",
    "figures",
    "format_comparison",
    "graph_verdict",
    "render_text",
    "run",
    "target_summary",
    "target_verdict",
    "verdicts",
]
