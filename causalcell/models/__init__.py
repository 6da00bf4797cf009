"""Models of P(X | T): fit each gene on its regulators where it is not targeted,
clamp the targets at T and propagate on the intervention graph."""

from causalcell.models.base import PerturbationModel

__all__ = ["PerturbationModel"]
