"""Latency samples, summarized the one way every part reports them: milliseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_seconds: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a measured sample)."""
    if not sorted_seconds:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_seconds)))
    return sorted_seconds[rank - 1]


def summarize(seconds: Sequence[float]) -> dict[str, float | int]:
    """count, p50/p90/p99/max and mean, in milliseconds rounded to microseconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {"count": 0}

    def ms(value: float) -> float:
        return round(value * 1000, 3)

    return {
        "count": len(ordered),
        "p50_ms": ms(percentile(ordered, 0.50)),
        "p90_ms": ms(percentile(ordered, 0.90)),
        "p99_ms": ms(percentile(ordered, 0.99)),
        "max_ms": ms(ordered[-1]),
        "mean_ms": ms(sum(ordered) / len(ordered)),
    }
