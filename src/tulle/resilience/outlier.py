"""Outlier detection: eject endpoints whose failure rate stands out from their peers'.

Every ``interval`` the detector looks at how many requests each endpoint served
and how many failed since the last look (read from the per-endpoint counters
the request path already keeps — no extra work per request), and ejects:

- by *success rate* (Envoy's ``success_rate`` detection): endpoints with at
  least ``minimum_requests`` whose success rate is below
  mean − ``stdev_factor`` × stdev of the eligible endpoints' rates (Envoy's
  default factor 1.9), when at least ``minimum_endpoints`` are eligible;
- by *failure percentage* (Envoy's ``failure_percentage``): endpoints with at
  least ``minimum_requests`` whose failure share is at or above
  ``failure_percentage`` — the rule that still works with three endpoints,
  where one bad endpoint moves the mean too much for the first.

An ejected endpoint comes back after ``base_ejection_time`` × the number of
times it has been ejected. At most ``max_ejection_percent`` of the endpoints
are out at once, and never all of them (one may always be ejected, as Envoy
allows, when there are at least two).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    """What one endpoint did during the last interval."""

    key: object  # the endpoint
    requests: int
    failures: int

    @property
    def success_rate(self) -> float:
        return 1.0 - self.failures / self.requests if self.requests else 1.0


@dataclass(frozen=True, slots=True)
class OutlierRules:
    minimum_requests: int = 20
    minimum_endpoints: int = 3
    stdev_factor: float = 1.9
    failure_percentage: float = 85.0
    max_ejection_percent: int = 10


def ejection_cap(total: int, max_percent: int) -> int:
    """How many of ``total`` endpoints may be ejected at once."""
    if total < 2:
        return 0
    return min(total - 1, max(1, math.floor(total * max_percent / 100)))


def select_outliers(
    samples: Sequence[Sample], rules: OutlierRules, already_ejected: int, total: int
) -> list[object]:
    """The endpoints to eject now, worst first, within the cap."""
    room = ejection_cap(total, rules.max_ejection_percent) - already_ejected
    if room <= 0:
        return []
    eligible = [s for s in samples if s.requests >= rules.minimum_requests]
    chosen: dict[int, Sample] = {}
    for sample in eligible:
        if 100.0 * sample.failures / sample.requests >= rules.failure_percentage:
            chosen[id(sample)] = sample
    if len(eligible) >= rules.minimum_endpoints:
        rates = [s.success_rate for s in eligible]
        mean = sum(rates) / len(rates)
        stdev = math.sqrt(sum((r - mean) ** 2 for r in rates) / len(rates))
        floor = mean - rules.stdev_factor * stdev
        for sample in eligible:
            if sample.success_rate < floor:
                chosen[id(sample)] = sample
    worst_first = sorted(chosen.values(), key=lambda s: s.success_rate)
    return [s.key for s in worst_first[:room]]
