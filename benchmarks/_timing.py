"""The one timing helper the benchmarks share: a median over repeated calls, after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_us(fn: Callable[[], object], repeats: int, warmup: int = 50) -> float:
    """Median wall time of ``fn()`` in microseconds over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(min(warmup, repeats)):
        fn()
    samples_ns = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        samples_ns.append(time.perf_counter_ns() - start)
    return statistics.median(samples_ns) / 1000.0
