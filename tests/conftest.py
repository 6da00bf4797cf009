"""Shared test configuration."""

import os

import matplotlib
from hypothesis import settings

matplotlib.use("Agg")

# CI runs are derandomized so a red build is reproducible; local runs explore.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
