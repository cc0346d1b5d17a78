"""Histogram slots: a latency lands in the first bucket whose bound is at or above it."""

from __future__ import annotations

import bisect
import random

from tulle.telemetry.metrics import LATENCY_BUCKETS_MS, LatencyHistogram, slot_of


def test_slots_agree_with_bisect_left_on_bounds_between_and_beyond() -> None:
    values = [0.0, -1.0, 0.5, 1.0, 1.0000001, 4.99, 5.0, 50000.0, 50000.1, 1e9]
    values += [float(bound) for bound in LATENCY_BUCKETS_MS]
    rng = random.Random(7)
    values += [rng.uniform(0, 60000) for _ in range(2000)]
    for value in values:
        assert slot_of(LATENCY_BUCKETS_MS, value) == bisect.bisect_left(LATENCY_BUCKETS_MS, value)


def test_a_latency_on_a_bound_counts_in_that_bucket_and_beyond_the_last_in_inf() -> None:
    histogram = LatencyHistogram()
    histogram.observe(10.0)  # le="10"
    histogram.observe(60000.0)  # +Inf
    assert histogram.counts[LATENCY_BUCKETS_MS.index(10)] == 1
    assert histogram.counts[-1] == 1
    assert histogram.sum_ms == 60010.0
