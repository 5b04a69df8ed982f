"""Latency figures as the benchmarks print them: p50, p99 and max in milliseconds."""

from __future__ import annotations

import math
import statistics


def percentiles(values: list[float]) -> str:
    """``p50 … ms  p99 … ms  max … ms  (n=N)`` for latencies given in seconds."""
    if not values:
        return "no samples"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return (
        f"p50 {statistics.median(ordered) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
        f"max {ordered[-1] * 1000:7.1f} ms  (n={len(ordered)})"
    )
