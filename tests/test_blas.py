"""One BLAS thread for stacks of systems: a limit only where the BLAS would thread."""

from __future__ import annotations

import contextlib

import pytest
from threadpoolctl import threadpool_info

from causalcell import _blas


def _blas_threads() -> list[int]:
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_small_systems_set_no_limit():
    # No library scan, no change of the thread count: the BLAS uses one thread
    # for such systems by itself.
    assert isinstance(_blas.one_blas_thread(_blas.SMALL_SYSTEMS), contextlib.nullcontext)


@pytest.mark.skipif(not _blas_threads(), reason="no BLAS found by threadpoolctl")
def test_large_systems_run_on_one_thread_and_the_limit_is_lifted():
    before = _blas_threads()
    with _blas.one_blas_thread(_blas.SMALL_SYSTEMS + 1):
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before
    # The controller is made once per process and reused.
    controller = _blas._controller
    with _blas.one_blas_thread(500):
        assert set(_blas_threads()) == {1}
    assert _blas._controller is controller


@pytest.mark.skipif(not _blas_threads(), reason="no BLAS found by threadpoolctl")
def test_the_limit_in_force_is_read_when_asked():
    # A limit set after the controller was made (as joblib's workers do) is seen.
    _blas.blas_thread_limit()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        assert _blas.blas_thread_limit() == 1
    assert _blas.blas_thread_limit() == min(_blas_threads())
