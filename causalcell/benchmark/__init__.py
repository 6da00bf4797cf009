"""Benchmarks that hold: cross-validation over perturbations and nested selection.

The top layer of causalcell: it fits :mod:`causalcell.models` (or any
estimator with ``fit`` / ``predict``) and scores them with
:mod:`causalcell.evaluate`. Every perturbation is predicted once, by models
fitted without it; hyper-parameters and graphs are chosen inside training
folds only (:func:`select`); every score carries its coverage, interval and
place between the mean baseline and the data's replicate ceiling.
"""

from causalcell.benchmark._cross_validate import (
    CrossPrediction,
    CrossValidation,
    cross_predict,
    cross_validate,
    perturbation_folds,
)
from causalcell.benchmark._dose import (
    MAX_LEVEL_FACTOR,
    DoseResponse,
    cross_validate_dose_response,
    predict_dose_response,
)
from causalcell.benchmark._request import observed_request
from causalcell.benchmark._select import Selection, select

__all__ = [
    "MAX_LEVEL_FACTOR",
    "CrossPrediction",
    "CrossValidation",
    "DoseResponse",
    "Selection",
    "cross_predict",
    "cross_validate",
    "cross_validate_dose_response",
    "observed_request",
    "perturbation_folds",
    "predict_dose_response",
    "select",
]
