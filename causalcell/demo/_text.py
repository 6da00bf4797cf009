"""What ``causalcell demo`` prints: the main comparison first and short; the long
tables only when asked for (every table is also in the CSVs)."""

from __future__ import annotations

import numpy as np

from causalcell.demo._comparison import (
    EXCLUDE_TITLES,
    FOLDS,
    SELECTED,
    format_comparison,
    graph_verdict,
    target_verdict,
    verdicts,
)
from causalcell.demo._run import DemoResult, TargetSection

__all__ = ["render_text", "target_summary"]

_TARGET_COLUMNS = ["perturbation", "perturbation_type", "target", "n_cells", "target_change",
                   "rank", "max_other_change", "ratio"]
_RATIO_FOOTNOTE = ("   n/a: no ratio: no other gene of the profile changes (the largest other "
                   "change is 0).")


def target_summary(section: TargetSection) -> str:
    """One line on the target effect of a data set: how often the targeted gene
    ranks first, in the top 5, and the median ratio to the largest other change."""
    table = section.table
    n = len(table)
    first = int((table["rank"] == 1).sum())
    top5 = int((table["rank"] <= 5).sum())
    ratios = table["ratio"].to_numpy(dtype=float)
    finite = ratios[np.isfinite(ratios)]
    median = f"{float(np.median(finite)):.1f}x" if len(finite) else "n/a"
    return (f"{section.key}: the targeted gene's own change ranks first among "
            f"{int(table['n_genes'].iloc[0])} genes in {first} of {n} perturbed targets "
            f"({100 * first / max(n, 1):.0f}%), in the top 5 in {top5}; median |target change| "
            f"/ largest other |change| = {median}.")


def _target_table(section: TargetSection) -> str:
    shown = section.table.sort_values(["rank", "ratio"], ascending=[True, False])[_TARGET_COLUMNS]
    text = shown.to_string(index=False, na_rep="n/a",
                           float_format=lambda v: f"{v:.3f}" if np.isfinite(v) else "n/a")
    if shown[["target_change", "max_other_change", "ratio"]].isna().any(axis=None) or \
            not np.isfinite(shown["ratio"].to_numpy(dtype=float)).all():
        text += "\n" + _RATIO_FOOTNOTE
    return (f"== {section.title}: {section.adata.n_obs} cells x {section.adata.n_vars} genes\n"
            + text)


def _unmeasured(section: TargetSection, verbose: bool) -> str | None:
    if not section.unmeasured:
        return None
    n = len(section.unmeasured)
    head = (f"  ({section.key}: {n} further target{'s are' if n > 1 else ' is'} not among the "
            f"measured genes")
    if verbose:
        return f"{head}, so {'their' if n > 1 else 'its'} own change cannot be seen: " \
               f"{', '.join(section.unmeasured)}.)"
    return f"{head}; --verbose lists {'them' if n > 1 else 'it'}.)"


def _is_summary(line: str) -> bool:
    """A verdict over all metrics (the per-metric lines start with a conditioning)."""
    return line.startswith("=>") or not line.startswith(tuple(EXCLUDE_TITLES.values()))


def render_text(result: DemoResult, *, verbose: bool = False, quiet: bool = False) -> str:
    """The demo's text.

    Default: the model comparison (mean [95% interval] per conditioning, with
    ``n``), the verdicts over all metrics, and one line per data set on the
    target effect. ``verbose`` adds the fit times, the calibrated scores, the
    per-metric verdicts and the per-perturbation target-effect tables;
    ``quiet`` keeps only the verdict sentences. Every sentence is computed
    from the result's numbers.

    Parameters
    ----------
    result
        From :func:`causalcell.demo.run`.
    verbose, quiet
        More, or less (``quiet`` wins).

    Returns
    -------
    str
    """
    cv = result.comparison
    lines = verdicts(cv)
    if SELECTED in cv.fitted:
        lines.append(graph_verdict(cv))
    if not verbose or quiet:
        lines = [line for line in lines if _is_summary(line)]
    lines += [target_verdict(s.key, s.table) for s in result.sections]
    if quiet:
        return "\n".join(lines)
    held = cv.held_out
    out = [f"Models of P(X | T) on {result.title}: all {len(held)} perturbations whose "
           f"targets are measured, each predicted once ({FOLDS}-fold cross-validation) by "
           f"models fitted without it and told the observed level T of its targeted genes. "
           f"retrieval_rank: 0 = the true perturbation is found first, 0.5 = chance."]
    if verbose:
        out.append(f"   perturbations: {', '.join(held)}; fit + predict over the folds: "
                   + ", ".join(f"{k} {v:.1f} s" for k, v in cv.fit_seconds.items()))
    out.append(format_comparison(cv, calibrated=verbose))
    out += ["", "What the numbers show:", *lines]
    for section in result.sections:
        note = _unmeasured(section, verbose)
        if note:
            out.append(note)
    if verbose:
        for section in result.sections:
            out += ["", _target_table(section), target_summary(section)]
    else:
        out += ["", "--verbose adds the calibrated scores, the verdict per metric and the "
                "per-perturbation target-effect tables; --out DIR writes every table (CSV) "
                "and figure (PNG)."]
    return "\n".join(out)

