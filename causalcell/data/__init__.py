"""Perturbation data: the obs contract, `Interventions`, pseudobulk, splits, files."""

from causalcell.data._conventions import CONVENTIONS, standardize, to_convention
from causalcell.data._interventions import Interventions
from causalcell.data._io import read_h5ad, write_h5ad
from causalcell.data._pseudobulk import changes, control_mean, pseudobulk
from causalcell.data._sampling import sample_cells
from causalcell.data._split import split_by_perturbation
from causalcell.data._tidy import tidy_obs
from causalcell.data.contract import (
    COMBINATION_SEPARATOR,
    IS_CONTROL,
    LEVEL,
    PERTURBATION,
    PERTURBATION_TYPE,
    validate,
)
from causalcell.data.lazy import read_lazy

__all__ = [
    "COMBINATION_SEPARATOR",
    "CONVENTIONS",
    "IS_CONTROL",
    "LEVEL",
    "PERTURBATION",
    "PERTURBATION_TYPE",
    "Interventions",
    "changes",
    "control_mean",
    "pseudobulk",
    "read_h5ad",
    "read_lazy",
    "sample_cells",
    "split_by_perturbation",
    "standardize",
    "tidy_obs",
    "to_convention",
    "validate",
    "write_h5ad",
]
