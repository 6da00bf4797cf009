"""Exceptions and warnings raised by causalcell.

Every user-facing failure raises a subclass of :class:`CausalCellError` whose
message names the offending column, gene, file or row and says how to fix it.
The subclasses also derive from the closest built-in exception, so code that
already catches ``ValueError`` / ``KeyError`` / ``OSError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CausalCellError",
    "CausalCellWarning",
    "DataContractError",
    "DataFileError",
    "ExpressionScaleWarning",
    "NetworkError",
    "NetworkWarning",
    "NotFittedError",
    "ParameterError",
    "PredictionError",
    "UnmeasuredTargetWarning",
    "UnorientedEdgesWarning",
]


class CausalCellError(Exception):
    """Base class of every error raised on purpose by causalcell."""


class DataContractError(CausalCellError, ValueError):
    """Perturbation data does not follow the obs / expression contract.

    See ``causalcell.data.contract`` for the contract: obs columns
    ``perturbation``, ``is_control``, ``perturbation_type`` and
    ``expression_level_after_perturbation``, gene symbols as ``var_names``,
    finite expression values.
    """


class DataFileError(CausalCellError, OSError):
    """A data file is missing, unreadable or not of the expected format."""


class NetworkError(CausalCellError, ValueError):
    """A network (edge list, graph) is malformed or unsuitable for the request.

    Attributes
    ----------
    cycle : list of tuple or None
        For "a DAG is required" failures, one directed cycle as a list of
        edges ``(u, v)``; otherwise ``None``.
    """

    def __init__(self, message: str, *, cycle: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.cycle = cycle


class NotFittedError(CausalCellError, ValueError, AttributeError):
    """An estimator was used before ``fit`` was called.

    Derives from ``ValueError`` and ``AttributeError`` like
    :class:`sklearn.exceptions.NotFittedError`, so scikit-learn utilities
    that catch those keep working.
    """


class ParameterError(CausalCellError, ValueError):
    """A function argument is outside its valid range; the message names the
    argument and the range."""


class PredictionError(CausalCellError, ValueError):
    """A prediction request cannot be served: a targeted gene unknown to the
    model, a level T that is missing and cannot be estimated, or unstable
    propagation."""


class CausalCellWarning(UserWarning):
    """Base class of warnings issued by causalcell."""


class UnmeasuredTargetWarning(CausalCellWarning):
    """A perturbation targets genes that are not among the measured genes.

    Such targets are kept as labels (they are real interventions whose
    downstream effects are measured) but cannot be clamped or excluded.
    """


class NetworkWarning(CausalCellWarning):
    """Edges were dropped while reading a network (duplicates, self-loops,
    genes absent from the data); the message counts them and gives examples."""


class UnorientedEdgesWarning(CausalCellWarning):
    """:func:`~causalcell.graph.learn_network` could not orient some selected gene
    pairs from the interventions; the message counts them by reason and the pairs
    are in ``G.graph["unoriented"]`` (silence with ``warnings.filterwarnings(
    "ignore", category=UnorientedEdgesWarning)`` when that table is read instead)."""


class ExpressionScaleWarning(CausalCellWarning):
    """Expression is probably not on the log-normalized scale causalcell expects.

    Issued when a matrix looks like raw counts (non-negative whole numbers
    reaching 20, which log-normalized values never do), and by the
    evaluation when predicted and observed profiles are on clearly different
    scales. The message says how to normalize (``sc.pp.normalize_total`` then
    ``sc.pp.log1p``) or which layer to name.
    """
