"""RetryBudget: retries add at most ``ratio`` of the load, plus a floor per second.

All on a fake clock: time moves only when a test says so.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tulle.resilience import RetryBudget

# Linkerd's defaults (and the module's): 20% of requests, 10 retries/s, 10 s window.
RATIO = 0.2
MIN_PER_SECOND = 10.0
WINDOW = 10.0
FLOOR = int(MIN_PER_SECOND * WINDOW)  # 100 retries with no traffic at all


class FakeClock:
    """A clock that stands still until advanced."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def new_budget(clock: FakeClock, ratio: float = RATIO, min_per_second: float = MIN_PER_SECOND,
               window: float = WINDOW) -> RetryBudget:
    return RetryBudget(ratio=ratio, min_per_second=min_per_second, window=window, clock=clock)


def withdraw_until_refused(budget: RetryBudget, limit: int = 100_000) -> int:
    """How many retries the budget grants in a row before its first refusal."""
    granted = 0
    while budget.try_withdraw():
        granted += 1
        assert granted < limit, "budget never ran out"
    return granted


def test_with_no_traffic_exactly_the_floor_is_allowed_then_refusals_are_counted() -> None:
    budget = new_budget(FakeClock())

    assert withdraw_until_refused(budget) == FLOOR
    assert budget.exhausted == 1
    assert not budget.try_withdraw()
    assert not budget.try_withdraw()
    assert budget.exhausted == 3
    assert budget.retries_in_window == FLOOR


@pytest.mark.parametrize("requests", [1, 4, 5, 10, 99, 1000])
def test_each_request_earns_ratio_of_a_retry(requests: int) -> None:
    budget = new_budget(FakeClock())
    for _ in range(requests):
        budget.record_request()

    # allowed = min × window + ratio × N, and a retry is granted while one more fits.
    expected = int(FLOOR + RATIO * requests + 1e-9)
    assert withdraw_until_refused(budget) == expected
    assert budget.exhausted == 1


def test_requests_spread_over_the_window_all_count() -> None:
    clock = FakeClock()
    budget = new_budget(clock)
    for _ in range(10):  # 50 requests a second for 10 slots, the last one at t = 9 s
        for _ in range(50):
            budget.record_request()
        clock.advance(1.0)
    clock.advance(-1.0)  # back into the last slot: everything is still in the window

    assert withdraw_until_refused(budget) == FLOOR + int(RATIO * 500)


def test_spent_retries_age_out_once_the_window_has_passed() -> None:
    clock = FakeClock()
    budget = new_budget(clock)
    assert withdraw_until_refused(budget) == FLOOR

    clock.advance(WINDOW / 2)
    assert not budget.try_withdraw()  # half a window later the retries still count
    clock.advance(WINDOW / 2 - 0.001)
    assert not budget.try_withdraw()  # and just before the window ends
    clock.advance(0.001)
    assert budget.retries_in_window == 0
    assert withdraw_until_refused(budget) == FLOOR  # a whole new floor


def test_old_requests_age_out_and_stop_earning_retries() -> None:
    clock = FakeClock()
    budget = new_budget(clock)
    for _ in range(1000):
        budget.record_request()

    clock.advance(WINDOW)
    assert withdraw_until_refused(budget) == FLOOR  # the 1000 requests no longer earn 200


def test_slots_age_out_one_at_a_time() -> None:
    clock = FakeClock()
    budget = new_budget(clock, min_per_second=1.0)  # floor of 10
    for _ in range(10):  # one retry in each of the ten one-second slots
        assert budget.try_withdraw()
        clock.advance(1.0)
    clock.advance(-1.0)
    assert not budget.try_withdraw()

    clock.advance(1.0)  # the first slot leaves the window: room for exactly one
    assert budget.try_withdraw()
    assert not budget.try_withdraw()


def test_a_long_idle_gap_clears_everything() -> None:
    clock = FakeClock()
    budget = new_budget(clock)
    for _ in range(500):
        budget.record_request()
    withdraw_until_refused(budget)

    clock.advance(1e6)  # many windows: the slot ring must not loop a million times
    assert budget.retries_in_window == 0
    assert withdraw_until_refused(budget) == FLOOR


@pytest.mark.parametrize("seconds", [10, 60])
def test_a_failing_service_sees_at_most_the_linkerd_bound(seconds: int) -> None:
    """100% failures, 1000 requests a second, every one of them asking for a retry."""
    start = 1000.0
    clock = FakeClock(start)
    budget = new_budget(clock)
    per_second = 1000
    requests = per_second * seconds
    retries = 0
    for i in range(requests):
        clock.now = start + i / per_second  # computed, not summed: no drift
        budget.record_request()
        if budget.try_withdraw():
            retries += 1

    bound = RATIO * requests + MIN_PER_SECOND * seconds  # load ≤ 1.2× plus the floor
    assert retries <= bound
    assert (requests + retries) / requests <= 1.2 + MIN_PER_SECOND * seconds / requests
    assert budget.exhausted == requests - retries
    # Not trivially safe: the first window gets nearly all of its share.
    assert retries >= RATIO * per_second * min(seconds, WINDOW) + FLOOR - 1


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["request", "retry", "tick"]),
            st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
        ),
        max_size=300,
    )
)
def test_any_traffic_stays_within_the_floor_per_window_plus_the_ratio(
    steps: list[tuple[str, float]],
) -> None:
    """Cut time into consecutive windows: each grants ≤ floor + ratio × its requests."""
    start = 1000.0
    clock = FakeClock(start)
    budget = new_budget(clock, min_per_second=1.0)  # floor of 10 per window
    requests = granted = refused = 0
    for action, dt in steps:
        if action == "tick":
            clock.advance(dt)
        elif action == "request":
            budget.record_request()
            requests += 1
        elif budget.try_withdraw():
            granted += 1
        else:
            refused += 1
        windows_touched = int((clock.now - start) // WINDOW) + 1
        assert granted <= 1.0 * WINDOW * windows_touched + RATIO * requests + 1e-9
    assert budget.exhausted == refused
