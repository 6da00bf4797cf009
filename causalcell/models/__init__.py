"""Models of P(X | T): fit each gene on its regulators where it is not targeted,
clamp the targets at T and propagate on the intervention graph."""

from causalcell.models.base import PerturbationModel
from causalcell.models.baselines import (
    ControlBaseline,
    LinearEmbeddingBaseline,
    MeanBaseline,
    TargetOnlyBaseline,
)

__all__ = [
    "ControlBaseline",
    "LinearEmbeddingBaseline",
    "MeanBaseline",
    "PerturbationModel",
    "TargetOnlyBaseline",
]
