"""Latency figures as the benchmarks print them: p50, p99 and max in milliseconds."""

from __future__ import annotations

import math
import statistics


def p50_p99(values: list[float]) -> tuple[float, float]:
    """The median and the 99th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[
        min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)
    ]


def percentiles(values: list[float]) -> str:
    """``p50 … ms  p99 … ms  max … ms  (n=N)`` for latencies given in seconds."""
    if not values:
        return "no samples"
    p50, p99 = p50_p99(values)
    return (
        f"p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
        f"max {max(values) * 1000:7.1f} ms  (n={len(values)})"
    )
