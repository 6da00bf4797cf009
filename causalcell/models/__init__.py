"""Models of P(X | T): fit each gene on its regulators where it is not targeted,
clamp the targets at T and propagate on the intervention graph."""

from causalcell.models._base import PerturbationModel
from causalcell.models._baselines import (
    ControlBaseline,
    LinearEmbeddingBaseline,
    MeanBaseline,
    TargetOnlyBaseline,
)
from causalcell.models._conditional import ConditionalGRNRegressor

__all__ = [
    "ConditionalGRNRegressor",
    "ControlBaseline",
    "LinearEmbeddingBaseline",
    "MeanBaseline",
    "PerturbationModel",
    "TargetOnlyBaseline",
]
