"""Percentile math: nearest rank, no interpolation."""

from __future__ import annotations

import pytest

from bench.stats import LatencySummary, median, percentile


def test_nearest_rank_on_one_to_a_hundred() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 99.9) == 100.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0.5) == 1.0


def test_p999_needs_a_thousand_samples_to_differ_from_the_maximum() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert percentile(values, 99.9) == 999.0
    assert percentile(values[:999], 99.9) == 999.0


def test_single_sample_is_every_percentile() -> None:
    assert percentile([0.25], 50) == percentile([0.25], 99.9) == 0.25


def test_percentile_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_sorts_its_samples() -> None:
    summary = LatencySummary.of([0.003, 0.001, 0.002, 0.010])
    assert (summary.count, summary.p50, summary.p99, summary.maximum) == (
        4, 0.002, 0.010, 0.010,
    )  # fmt: skip


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5


def test_median_of_rounds_ignores_one_disturbed_round() -> None:
    calm = LatencySummary.of([0.001] * 99 + [0.002])
    disturbed = LatencySummary.of([0.001] * 90 + [0.050] * 10)
    combined = LatencySummary.median_of([calm, calm, disturbed])
    assert disturbed.p99 == 0.050
    assert combined.p99 == calm.p99 == 0.001
    assert combined.count == 300
    assert combined.maximum == 0.050
