"""Data with a known answer (`simulate`) and small real data shipped in the package."""

from causalcell.datasets.real import (
    load_collectri,
    load_papalexi2021,
    load_sachs2005,
    load_sachs2005_network,
    load_tf_names,
)
from causalcell.datasets.simulation import Simulation, simulate

__all__ = [
    "Simulation",
    "load_collectri",
    "load_papalexi2021",
    "load_sachs2005",
    "load_sachs2005_network",
    "load_tf_names",
    "simulate",
]
