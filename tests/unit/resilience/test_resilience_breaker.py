"""CircuitBreaker: consecutive failures open it; a jittered, doubling backoff probes it.

The scheduler is fake: it records (delay, callback) and the test decides when a
timer fires, so no test sleeps and every delay can be checked against its bounds.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tulle.resilience import CLOSED, OPEN, PROBING, CircuitBreaker

THRESHOLD = 3
BACKOFF_MIN = 1.0
BACKOFF_MAX = 10.0


class FakeTimer:
    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """Stands in for ``loop.call_later``: remembers timers; `fire` runs one."""

    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(delay, callback)
        self.timers.append(timer)
        return timer

    @property
    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.fired and not t.cancelled]

    def fire(self) -> FakeTimer:
        """Run the one pending timer, as the loop would once its delay elapsed."""
        (timer,) = self.pending
        timer.fired = True
        timer.callback()
        return timer


class Harness:
    def __init__(self, threshold: int = THRESHOLD, backoff_min: float = BACKOFF_MIN,
                 backoff_max: float = BACKOFF_MAX, seed: int = 7) -> None:
        self.scheduler = FakeScheduler()
        self.seen: list[tuple[str, bool]] = []  # (state, admits) at each on_change
        self.breaker = CircuitBreaker(
            threshold, backoff_min, backoff_max, self.scheduler, self._changed,
            rng=random.Random(seed),
        )

    def _changed(self) -> None:
        self.seen.append((self.breaker.state, self.breaker.admits))

    @property
    def changes(self) -> int:
        return len(self.seen)

    def fail(self, times: int) -> None:
        for _ in range(times):
            self.breaker.record(False)

    def open(self) -> FakeTimer:
        self.fail(self.breaker.threshold)
        assert self.breaker.state == OPEN
        return self.scheduler.timers[-1]

    def probe(self) -> None:
        """Let the pending timer fire and send the probe request."""
        self.scheduler.fire()
        assert self.breaker.state == PROBING
        assert self.breaker.admits
        self.breaker.on_dispatch()


def test_a_new_breaker_is_closed_and_admits() -> None:
    h = Harness()
    assert h.breaker.state == CLOSED
    assert h.breaker.admits
    assert h.scheduler.timers == []


@pytest.mark.parametrize("threshold", [1, 3, 7])
def test_opens_after_exactly_threshold_consecutive_failures(threshold: int) -> None:
    h = Harness(threshold=threshold)
    h.fail(threshold - 1)
    assert h.breaker.state == CLOSED
    assert h.breaker.admits
    assert h.changes == 0

    h.fail(1)
    assert h.breaker.state == OPEN
    assert not h.breaker.admits
    assert h.breaker.opened == 1
    assert h.changes == 1
    assert len(h.scheduler.pending) == 1


def test_a_success_in_between_resets_the_run_of_failures() -> None:
    h = Harness()
    for _ in range(5):
        h.fail(THRESHOLD - 1)
        h.breaker.record(True)
    assert h.breaker.state == CLOSED
    assert h.scheduler.timers == []

    h.fail(THRESHOLD)
    assert h.breaker.state == OPEN


def test_results_arriving_while_open_change_nothing() -> None:
    h = Harness()
    h.open()
    changes = h.changes
    h.breaker.record(True)  # a request sent before it opened
    h.breaker.record(False)
    assert h.breaker.state == OPEN
    assert not h.breaker.admits
    assert len(h.scheduler.timers) == 1
    assert h.changes == changes


@pytest.mark.parametrize("seed", range(50))
def test_the_first_delay_is_equal_jitter_over_backoff_min(seed: int) -> None:
    h = Harness(seed=seed)
    timer = h.open()
    assert BACKOFF_MIN / 2 <= timer.delay <= BACKOFF_MIN


def test_delays_are_spread_over_the_upper_half_of_the_backoff() -> None:
    delays = [Harness(seed=seed).open().delay for seed in range(500)]
    assert min(delays) >= BACKOFF_MIN / 2
    assert max(delays) <= BACKOFF_MIN
    # Jittered, not fixed: they cover most of [min/2, min].
    assert min(delays) < BACKOFF_MIN * 0.55
    assert max(delays) > BACKOFF_MIN * 0.95


def test_the_same_seed_gives_the_same_delays() -> None:
    assert Harness(seed=3).open().delay == Harness(seed=3).open().delay


def test_when_the_timer_fires_it_probes_and_admits_exactly_one_request() -> None:
    h = Harness()
    h.open()
    h.scheduler.fire()
    assert h.breaker.state == PROBING
    assert h.breaker.admits
    assert not h.breaker.probe_in_flight

    h.breaker.on_dispatch()
    assert h.breaker.probe_in_flight
    assert not h.breaker.admits  # the probe is the only request let through
    h.breaker.on_dispatch()  # a second dispatch is not a second probe
    assert not h.breaker.admits
    assert h.breaker.state == PROBING


def test_dispatch_while_closed_or_open_changes_nothing() -> None:
    h = Harness()
    h.breaker.on_dispatch()
    assert h.breaker.state == CLOSED
    assert not h.breaker.probe_in_flight
    h.open()
    h.breaker.on_dispatch()
    assert h.breaker.state == OPEN
    assert not h.breaker.probe_in_flight


def test_a_successful_probe_closes_it() -> None:
    h = Harness()
    h.open()
    h.probe()
    h.breaker.record(True)
    assert h.breaker.state == CLOSED
    assert h.breaker.admits
    assert not h.breaker.probe_in_flight
    assert h.breaker.failures == 0
    assert h.scheduler.pending == []

    # Closed again means a fresh run: threshold − 1 failures do not reopen it.
    h.fail(THRESHOLD - 1)
    assert h.breaker.state == CLOSED


def test_a_failed_probe_reopens_it_with_double_the_backoff() -> None:
    h = Harness()
    h.open()
    h.probe()
    h.breaker.record(False)
    assert h.breaker.state == OPEN
    assert not h.breaker.admits
    assert not h.breaker.probe_in_flight
    assert h.breaker.opened == 2
    timer = h.scheduler.pending[0]
    assert 2 * BACKOFF_MIN / 2 <= timer.delay <= 2 * BACKOFF_MIN


@pytest.mark.parametrize("seed", range(20))
def test_the_backoff_doubles_from_min_and_stops_at_max(seed: int) -> None:
    h = Harness(backoff_min=1.0, backoff_max=10.0, seed=seed)
    h.open()
    delays = [h.scheduler.timers[-1].delay]
    for _ in range(7):
        h.probe()
        h.breaker.record(False)
        delays.append(h.scheduler.timers[-1].delay)

    backoffs = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0]
    for delay, backoff in zip(delays, backoffs, strict=True):
        assert backoff / 2 <= delay <= backoff
    assert h.breaker.opened == 8


def test_closing_resets_the_backoff_to_min() -> None:
    h = Harness(seed=11)
    h.open()
    for _ in range(4):  # backoff grows to 16 → capped at 10
        h.probe()
        h.breaker.record(False)
    assert h.scheduler.timers[-1].delay > BACKOFF_MAX / 2 - 1e-9

    h.probe()
    h.breaker.record(True)
    assert h.breaker.state == CLOSED

    timer = h.open()
    assert BACKOFF_MIN / 2 <= timer.delay <= BACKOFF_MIN


def test_on_change_is_called_on_every_transition() -> None:
    h = Harness()
    h.fail(THRESHOLD)                 # closed → open
    h.scheduler.fire()                # open → probing (admits)
    h.breaker.on_dispatch()           # probing, probe in flight (admits no more)
    h.breaker.record(False)           # probing → open
    h.scheduler.fire()                # open → probing
    h.breaker.on_dispatch()
    h.breaker.record(True)            # probing → closed
    h.breaker.record(True)            # closed stays closed: no call
    h.breaker.record(False)           # one failure: no call

    assert h.seen == [
        (OPEN, False),
        (PROBING, True),
        (PROBING, False),
        (OPEN, False),
        (PROBING, True),
        (PROBING, False),
        (CLOSED, True),
    ]


def test_cancel_drops_the_pending_probe_timer() -> None:
    h = Harness()
    timer = h.open()
    h.breaker.cancel()
    assert timer.cancelled
    assert h.scheduler.pending == []
    h.breaker.cancel()  # twice is harmless
    assert h.breaker.state == OPEN


def test_cancel_with_nothing_pending_is_harmless() -> None:
    h = Harness()
    h.breaker.cancel()
    h.open()
    h.scheduler.fire()
    h.breaker.cancel()  # the timer already fired: nothing to cancel
    assert not any(t.cancelled for t in h.scheduler.timers)
    assert h.breaker.state == PROBING



def test_a_refused_probe_does_not_grow_the_backoff() -> None:
    """A dead endpoint refuses connections; probing it costs its request nothing (it
    is retried elsewhere), so the wait between probes stays at backoff_min and the
    endpoint is found again soon after it restarts."""
    h = Harness(threshold=1, backoff_min=1.0, backoff_max=60.0)
    h.breaker.record(False)
    for _ in range(5):
        timer = h.scheduler.fire()
        assert 0.5 <= timer.delay <= 1.0
        h.breaker.on_dispatch()
        h.breaker.record(False, refused=True)
    h.scheduler.fire()
    h.breaker.on_dispatch()
    h.breaker.record(False)  # a failure that reached the endpoint doubles it
    assert 1.0 <= h.scheduler.pending[0].delay <= 2.0


def test_an_abandoned_probe_lets_another_one_through() -> None:
    """The probe's client went away before an answer: the endpoint must not stay
    stuck with a probe "in flight" forever."""
    h = Harness(threshold=1)
    h.breaker.record(False)
    h.scheduler.fire()
    assert h.breaker.on_dispatch() is True
    assert not h.breaker.admits
    h.breaker.abandon_probe()
    assert h.breaker.state == "probing" and h.breaker.admits
