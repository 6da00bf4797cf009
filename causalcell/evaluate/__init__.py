"""Evaluation under the same conditioning as the models: targeted genes never score.

This package never imports :mod:`causalcell.models`: it scores any predictor's
output.
"""

from causalcell.evaluate.target_effect import target_effect

__all__ = ["target_effect"]
