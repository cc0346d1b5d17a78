"""Outlier detection: which endpoints stand out, and how many may be out at once."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tulle.resilience import OutlierRules, Sample, ejection_cap, select_outliers

RULES = OutlierRules()  # Envoy's defaults: 20 requests, 3 endpoints, 1.9 stdev, 85%, 10%
# The failure-percentage rule switched off, to watch the success-rate rule alone.
STDEV_ONLY = OutlierRules(failure_percentage=101.0, max_ejection_percent=100)


@pytest.mark.parametrize(
    ("total", "expected"), [(0, 0), (1, 0), (2, 1), (3, 1), (10, 1), (19, 1), (20, 2), (50, 5)]
)
def test_ejection_cap_at_ten_percent(total: int, expected: int) -> None:
    # At least one may go (as Envoy allows) once there are two; otherwise floor(10%).
    assert ejection_cap(total, 10) == expected


@pytest.mark.parametrize("percent", [0, 1, 10, 50, 99, 100])
def test_ejection_cap_never_ejects_everyone(percent: int) -> None:
    for total in range(0, 200):
        cap = ejection_cap(total, percent)
        assert 0 <= cap <= max(total - 1, 0)
        if total >= 2:
            assert cap >= 1
            assert cap == min(total - 1, max(1, math.floor(total * percent / 100)))


def test_the_failure_percentage_rule_catches_one_dead_endpoint_among_three() -> None:
    samples = [
        Sample("dead", requests=100, failures=100),
        Sample("a", requests=100, failures=2),
        Sample("b", requests=100, failures=5),
        Sample("c", requests=100, failures=0),
    ]
    assert select_outliers(samples, RULES, already_ejected=0, total=4) == ["dead"]
    # One dead endpoint out of four drags the mean so far that the stdev rule alone
    # never fires (a lone outlier among n is at most √(n−1) = 1.73 stdevs < 1.9 away).
    assert select_outliers(samples, STDEV_ONLY, already_ejected=0, total=4) == []


def test_failure_percentage_is_inclusive_at_the_threshold() -> None:
    rules = OutlierRules(failure_percentage=85.0, max_ejection_percent=100)
    at = [Sample("at", 100, 85), Sample("ok", 100, 0)]
    below = [Sample("below", 100, 84), Sample("ok", 100, 0)]
    assert select_outliers(at, rules, 0, 2) == ["at"]
    assert select_outliers(below, rules, 0, 2) == []


def test_the_success_rate_rule_catches_one_bad_endpoint_among_ten() -> None:
    samples = [Sample("half", requests=100, failures=50)]
    samples += [Sample(f"ok{i}", requests=100, failures=i % 3) for i in range(9)]
    # 50% failures is below the 85% rule; only the stdev rule can see it:
    # mean ≈ 0.94, stdev ≈ 0.147, floor = mean − 1.9 × stdev ≈ 0.66 > 0.5.
    assert select_outliers(samples, RULES, already_ejected=0, total=10) == ["half"]


def test_the_success_rate_rule_needs_minimum_endpoints() -> None:
    samples = [Sample("half", requests=100, failures=50)]
    samples += [Sample(f"ok{i}", requests=100, failures=1) for i in range(9)]
    rules = OutlierRules(minimum_endpoints=11)
    assert select_outliers(samples, rules, already_ejected=0, total=10) == []


def test_endpoints_below_minimum_requests_are_not_judged() -> None:
    healthy = [Sample(f"ok{i}", requests=100, failures=0) for i in range(9)]
    few = Sample("few", requests=RULES.minimum_requests - 1, failures=RULES.minimum_requests - 1)
    assert select_outliers([*healthy, few], RULES, 0, 10) == []
    enough = Sample("enough", requests=RULES.minimum_requests, failures=RULES.minimum_requests)
    assert select_outliers([*healthy, enough], RULES, 0, 10) == ["enough"]


def test_too_few_requests_everywhere_ejects_nothing() -> None:
    samples = [Sample(f"e{i}", requests=5, failures=5) for i in range(10)]
    assert select_outliers(samples, RULES, 0, 10) == []


def test_an_idle_interval_ejects_nothing() -> None:
    # (minimumRequests is at least 1 in the manifest, so an idle endpoint is never judged.)
    samples = [Sample(f"e{i}", requests=0, failures=0) for i in range(10)]
    assert select_outliers(samples, RULES, 0, 10) == []
    assert Sample("idle", 0, 0).success_rate == 1.0


def test_a_uniformly_bad_service_is_not_an_outlier_by_success_rate() -> None:
    samples = [Sample(f"e{i}", requests=100, failures=40) for i in range(10)]
    assert select_outliers(samples, STDEV_ONLY, 0, 10) == []


def worst_six() -> list[Sample]:
    samples = [Sample(f"ok{i}", 100, 0) for i in range(44)]
    samples += [Sample("f90", 100, 90), Sample("f100", 100, 100), Sample("f95", 100, 95),
                Sample("f86", 100, 86), Sample("f99", 100, 99), Sample("f88", 100, 88)]
    return samples


def test_the_worst_go_first_within_the_cap() -> None:
    # 50 endpoints at 10%: 5 may go, and six qualify; the least successful go.
    assert select_outliers(worst_six(), RULES, 0, 50) == ["f100", "f99", "f95", "f90", "f88"]


@pytest.mark.parametrize(("already", "room"), [(0, 5), (1, 4), (3, 2), (4, 1), (5, 0), (9, 0)])
def test_endpoints_already_out_use_up_the_room(already: int, room: int) -> None:
    chosen = select_outliers(worst_six(), RULES, already_ejected=already, total=50)
    assert chosen == ["f100", "f99", "f95", "f90", "f88"][:room]


def test_a_single_endpoint_is_never_ejected() -> None:
    assert select_outliers([Sample("only", 100, 100)], RULES, 0, 1) == []


def test_two_dead_endpoints_out_of_two_leave_one_in() -> None:
    samples = [Sample("a", 100, 100), Sample("b", 100, 100)]
    assert len(select_outliers(samples, OutlierRules(max_ejection_percent=100), 0, 2)) == 1


counts = st.integers(min_value=20, max_value=500).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n))
)


@settings(max_examples=300, deadline=None)
@given(st.lists(counts, min_size=3, max_size=4))
def test_the_stdev_rule_cannot_fire_with_four_or_fewer_endpoints(
    pairs: list[tuple[int, int]],
) -> None:
    """Samuelson: no value is more than √(n−1) stdevs from the mean; √3 < 1.9."""
    samples = [Sample(i, r, f) for i, (r, f) in enumerate(pairs)]
    assert select_outliers(samples, STDEV_ONLY, 0, len(samples)) == []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(counts, min_size=1, max_size=30),
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=10),
)
def test_the_choice_is_worst_first_within_the_cap_and_qualifying(
    pairs: list[tuple[int, int]], percent: int, already: int
) -> None:
    samples = [Sample(i, r, f) for i, (r, f) in enumerate(pairs)]
    rules = OutlierRules(max_ejection_percent=percent)
    chosen = select_outliers(samples, rules, already, len(samples))

    assert len(chosen) <= max(0, ejection_cap(len(samples), percent) - already)
    assert len(chosen) < len(samples) or not samples
    assert len(set(chosen)) == len(chosen)
    rates = [samples[k].success_rate for k in chosen]  # type: ignore[index]
    assert rates == sorted(rates)
