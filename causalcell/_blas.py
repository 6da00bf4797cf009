"""The BLAS's threads: one thread for stacks of small systems, and the limit in force.

One :class:`threadpoolctl.ThreadpoolController` per process, made when first
needed: making one scans every library the process has loaded (6-13 ms in a
fresh process, about 1 ms after), and its libraries report their thread
counts when asked, so limits set later (``threadpool_limits``, joblib's
workers) are seen.

Stacks of per-gene systems are solved one LAPACK call per matrix. Threads do
not pay there: each call is too small to share, and a thread team started and
synchronized per matrix is 20-40x slower on a loaded 2-core machine for
stacks of 300 x 300 systems. Below 64 unknowns the BLAS runs a matrix on one
thread by itself (OpenBLAS threads a product only above 64^3 multiply-adds;
measured here: stacked solves of 50 x 50 to 80 x 80 systems take the same
time with and without a limit, on an idle and on a loaded machine), so no
limit is set for them: the first limit of a process makes the controller
(13 ms of a first fit at 20k cells x 2,000 genes, 4% of it).
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["SMALL_SYSTEMS", "blas_thread_limit", "one_blas_thread"]

#: Systems up to this many unknowns run on one BLAS thread without a limit.
SMALL_SYSTEMS = 64

_controller: Any = None


def _the_controller() -> Any:
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def one_blas_thread(largest: int) -> contextlib.AbstractContextManager:
    """Context in which stacked systems of at most ``largest`` unknowns run on one
    BLAS thread: no limit set when the BLAS would use one anyway."""
    if largest <= SMALL_SYSTEMS:
        return contextlib.nullcontext()
    return _the_controller().limit(limits=1)


def blas_thread_limit() -> int | None:
    """The fewest threads any loaded BLAS may use now (None: no BLAS found)."""
    limits = [info["num_threads"] for info in _the_controller().info()
              if info.get("user_api") == "blas" and info.get("num_threads")]
    return min(limits) if limits else None
