"""The one vocabulary of gene exclusion: parameter values, table labels, their documentation.

Every score of :mod:`causalcell.evaluate` (and of the layers above it) says
which genes it leaves out with one parameter, ``exclude``, whose values are
also the values of the ``exclude`` column of every output table:

- ``"targeted"``: the fair rule. A metric of perturbation i ignores the genes
  targeted in i; a retrieval comparison of query i with candidate j ignores
  the genes targeted in i *or* j (the same idea: no score sees a targeted
  gene of the perturbations it compares).
- ``"none"``: every gene is scored (the usual, unconditioned numbers).
- retrieval only: ``"query"`` ignores the genes targeted in the query
  (cell-eval, the Virtual Cell Challenge), ``"all"`` every gene targeted in
  any perturbation.

The spellings of earlier releases (``exclusion=``; ``None``, ``"pair"`` and
the label ``"targeted excluded"``) keep working for one release with a
:class:`FutureWarning` naming the new spelling.
"""

from __future__ import annotations

import re
import textwrap
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pandas as pd

from causalcell.errors import ParameterError

__all__ = [
    "EXCLUDE_COLUMN",
    "EXCLUDE_DOC",
    "METRIC_EXCLUDES",
    "RETRIEVAL_EXCLUDES",
    "current_table",
    "exclude_rule",
    "exclude_rules",
    "fill_doc",
]

#: The column of every output table that holds the rule a row was scored under.
EXCLUDE_COLUMN = "exclude"
#: The rules of a per-perturbation metric (first: the default).
METRIC_EXCLUDES = ("targeted", "none")
#: The rules of a retrieval comparison (first: the default).
RETRIEVAL_EXCLUDES = ("targeted", "query", "none", "all")
# Old spelling -> new one (one release of FutureWarning).
_OLD_VALUES = {None: "none", "pair": "targeted", "targeted excluded": "targeted"}

#: The documentation of the vocabulary, inserted into every docstring with
#: ``{exclude}`` (see :func:`fill_doc`).
EXCLUDE_DOC = """\
Genes left out of each score, in one vocabulary across
:mod:`causalcell.evaluate` (also the values of the ``exclude`` column of
its tables): ``"targeted"`` (fair) the genes targeted in the scored
perturbation, and in a retrieval comparison of query i with candidate j
those targeted in i or j; ``"none"`` none (the usual numbers); retrieval
only: ``"query"`` those targeted in the query (cell-eval, Virtual Cell
Challenge), ``"all"`` those targeted in any perturbation."""

_Documented = TypeVar("_Documented", bound=Callable[..., Any])


def fill_doc(**fragments: str) -> Callable[[_Documented], _Documented]:
    """Put shared docstring fragments in place of ``{name}`` lines, at their indentation.

    One text per idea (the exclusion vocabulary, the alignment options), so
    that every function documents it in the same words.
    """

    def decorate(function: _Documented) -> _Documented:
        doc = function.__doc__ or ""
        for name, text in fragments.items():
            pattern = re.compile(rf"^( *)\{{{name}\}}$", flags=re.MULTILINE)
            if not pattern.search(doc):
                raise AssertionError(f"{function.__qualname__}: no {{{name}}} line to fill")
            doc = pattern.sub(lambda m, t=text: textwrap.indent(t, m.group(1)), doc)
        function.__doc__ = doc
        return function

    return decorate


def exclude_rule(where: str, value: object, allowed: Sequence[str] = METRIC_EXCLUDES,
                 *, parameter: str = "exclude", stacklevel: int = 3) -> str:
    """``value`` as one rule of ``allowed``, an old spelling translated with a FutureWarning.

    Parameters
    ----------
    where
        The function, for the messages (``"evaluate"``).
    value
        What the caller passed.
    allowed
        The rules the function knows (:data:`METRIC_EXCLUDES` or
        :data:`RETRIEVAL_EXCLUDES`).
    parameter
        The parameter's name, for the messages.
    stacklevel
        Frames from here to the user's call, for the warning (3: the caller of
        the public function that called this).

    Raises
    ------
    ParameterError
        An unknown rule (the message lists the known ones).
    """
    hashable = value is None or isinstance(value, str)
    if hashable and value not in allowed and value in _OLD_VALUES:
        new = _OLD_VALUES[value]
        warnings.warn(
            f"{where}: {parameter}={value!r} is now spelled {parameter}={new!r}; the old "
            f"value will stop working in the next release.",
            FutureWarning,
            stacklevel=stacklevel,
        )
        value = new
    if not hashable or value not in allowed:
        raise ParameterError(
            f"{where}: {parameter}={value!r} is unknown; use one of "
            f"{', '.join(map(repr, allowed))}."
        )
    return value


def exclude_rules(where: str, value: object, allowed: Sequence[str] = METRIC_EXCLUDES,
                  *, parameter: str = "exclude") -> tuple[str, ...]:
    """One rule or several (a non-empty sequence without repeats), each checked by
    :func:`exclude_rule`."""
    if value is None or isinstance(value, str):
        values: tuple[object, ...] = (value,)
    elif isinstance(value, Sequence):
        values = tuple(value)
    else:
        values = ()
    # A loop, not a generator: the warning's stack level counts frames.
    rules = []
    for v in values:
        rules.append(exclude_rule(where, v, allowed, parameter=parameter, stacklevel=4))
    rules = tuple(rules)
    if not rules or len(set(rules)) != len(rules):
        raise ParameterError(
            f"{where}: {parameter}={value!r} is invalid; give one of "
            f"{', '.join(map(repr, allowed))} or several of them as a sequence without "
            f"repeats."
        )
    return rules



def current_table(where: str, table: object) -> object:
    """A table of the previous release in the current vocabulary, with a FutureWarning.

    Tables written before the vocabulary was one (a ``conditioning`` column
    labelled ``"targeted excluded"``, a retrieval ``exclusion`` column
    labelled ``"pair"``) are renamed in a copy; anything else is returned as
    it is (the caller checks its columns).
    """
    if not isinstance(table, pd.DataFrame) or EXCLUDE_COLUMN in table.columns:
        return table
    old = [c for c in ("conditioning", "exclusion") if c in table.columns]
    if not old:
        return table
    warnings.warn(
        f"{where}: the table's column {old[0]!r} is now {EXCLUDE_COLUMN!r} (values "
        f"{', '.join(map(repr, RETRIEVAL_EXCLUDES))}); recompute the table, tables of the "
        f"previous release will stop being read in the next release.",
        FutureWarning,
        stacklevel=3,
    )
    out = table.rename(columns={old[0]: EXCLUDE_COLUMN})
    out[EXCLUDE_COLUMN] = out[EXCLUDE_COLUMN].map(lambda v: _OLD_VALUES.get(v, v))
    return out


def means_by_exclude(summary: pd.DataFrame) -> pd.DataFrame:
    """A :func:`~causalcell.evaluate.summarize` table as metrics (rows) x exclusion
    rules (columns) of the mean, both in their order of appearance."""
    table = summary.pivot(index="metric", columns=EXCLUDE_COLUMN, values="mean")
    return table.reindex(index=list(dict.fromkeys(summary["metric"])),
                         columns=list(dict.fromkeys(summary[EXCLUDE_COLUMN])))
