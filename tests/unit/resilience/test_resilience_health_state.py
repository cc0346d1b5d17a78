"""HealthState: runs of consecutive check results flip the healthy flag."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tulle.resilience import HealthState


def record_all(state: HealthState, results: list[bool]) -> list[bool]:
    return [state.record(r) for r in results]


def test_an_endpoint_starts_healthy() -> None:
    assert HealthState(healthy_after=2, unhealthy_after=3).healthy


@pytest.mark.parametrize("unhealthy_after", [1, 2, 3, 5])
def test_unhealthy_after_exactly_that_many_consecutive_failures(unhealthy_after: int) -> None:
    state = HealthState(healthy_after=2, unhealthy_after=unhealthy_after)
    flips = record_all(state, [False] * (unhealthy_after - 1))
    assert state.healthy
    assert not any(flips)

    assert state.record(False) is True
    assert not state.healthy
    assert record_all(state, [False] * 5) == [False] * 5  # already unhealthy: no flips
    assert not state.healthy


@pytest.mark.parametrize("healthy_after", [1, 2, 4])
def test_healthy_again_after_exactly_that_many_consecutive_successes(healthy_after: int) -> None:
    state = HealthState(healthy_after=healthy_after, unhealthy_after=2)
    record_all(state, [False, False])
    assert not state.healthy

    flips = record_all(state, [True] * (healthy_after - 1))
    assert not state.healthy
    assert not any(flips)
    assert state.record(True) is True
    assert state.healthy
    assert record_all(state, [True] * 5) == [False] * 5


def test_a_success_resets_the_run_of_failures() -> None:
    state = HealthState(healthy_after=2, unhealthy_after=3)
    assert record_all(state, [False, False, True, False, False, True] * 4) == [False] * 24
    assert state.healthy


def test_a_failure_resets_the_run_of_successes() -> None:
    state = HealthState(healthy_after=3, unhealthy_after=1)
    state.record(False)
    assert record_all(state, [True, True, False, True, True, False]) == [False] * 6
    assert not state.healthy
    assert record_all(state, [True, True, True]) == [False, False, True]


def test_successes_while_healthy_do_not_bank_credit_for_later() -> None:
    state = HealthState(healthy_after=3, unhealthy_after=1)
    record_all(state, [True] * 10)
    assert state.record(False) is True
    assert record_all(state, [True, True]) == [False, False]  # needs three fresh ones
    assert not state.healthy


@given(st.lists(st.booleans(), max_size=200), st.integers(1, 5), st.integers(1, 5))
def test_matches_a_model_of_runs(results: list[bool], healthy_after: int,
                                 unhealthy_after: int) -> None:
    """The flag is decided by the length of the latest run of equal results."""
    state = HealthState(healthy_after=healthy_after, unhealthy_after=unhealthy_after)
    healthy, run_value, run = True, None, 0
    for passed in results:
        run = run + 1 if passed == run_value else 1
        run_value = passed
        before = healthy
        if passed and run >= healthy_after:
            healthy = True
        if not passed and run >= unhealthy_after:
            healthy = False
        assert state.record(passed) == (healthy != before)
        assert state.healthy == healthy
