"""Percentiles and medians, computed here rather than trusted to each load tool.

Percentiles use the nearest-rank definition: the p-th percentile of n sorted samples
is the sample at rank ceil(p/100 × n). It never interpolates, so every reported
latency is one a request actually saw, and p99.9 of fewer than 1,000 samples is
simply the maximum.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# The percentiles every latency table reports.
REPORTED_PERCENTILES: tuple[float, ...] = (50.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank ``p``-th percentile (0 < p <= 100) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    # Rounded first so float error (0.999 × 1000 = 999.0000000000001) cannot add a rank.
    rank = math.ceil(round(p / 100 * len(sorted_values), 9))
    return sorted_values[max(rank, 1) - 1]


def median(values: Sequence[float]) -> float:
    """Median of ``values`` (the mean of the middle two for an even count)."""
    if not values:
        raise ValueError("median of no values")
    return statistics.median(values)


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles of one set of samples, in seconds."""

    count: int
    p50: float
    p99: float
    p999: float
    maximum: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> LatencySummary:
        ordered = sorted(samples)
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 50),
            p99=percentile(ordered, 99),
            p999=percentile(ordered, 99.9),
            maximum=ordered[-1],
        )

    @classmethod
    def median_of(cls, rounds: Sequence[LatencySummary]) -> LatencySummary:
        """Each percentile's median over rounds (``count`` is the total).

        On a shared machine one disturbed round can own the whole tail of the pooled
        samples; the median over rounds reports what a typical round saw instead.
        """
        return cls(
            count=sum(r.count for r in rounds),
            p50=median([r.p50 for r in rounds]),
            p99=median([r.p99 for r in rounds]),
            p999=median([r.p999 for r in rounds]),
            maximum=max(r.maximum for r in rounds),
        )
