"""Shared test configuration."""

import os

import matplotlib
import pytest
from hypothesis import settings

matplotlib.use("Agg")

# CI runs are derandomized so a red build is reproducible; local runs explore.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def dask_cluster():
    """A LocalCluster for the whole run: two single-threaded workers in this process
    (real task scheduling and result transfer, without worker start-up costs)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture
def dask_client(dask_cluster):
    """A Client on the shared cluster, active only during the test that asks for it
    (tests without it run on Dask's threaded scheduler)."""
    import distributed

    with distributed.Client(dask_cluster) as client:
        yield client
