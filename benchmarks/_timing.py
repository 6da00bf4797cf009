"""Timing shared by the benchmarks: the best of a few runs, and the last result."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` (the least disturbed by
    other work on a shared machine), and the result of the last call."""
    best, result = float("inf"), None
    for _ in range(max(int(repeats), 1)):
        result = None  # free the previous result before timing again
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result
