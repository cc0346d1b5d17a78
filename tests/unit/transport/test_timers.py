"""The timer wheel: deadlines fire once, within a tick, and a met one leaves nothing."""

from __future__ import annotations

from tests.support.fake_loop import FakeLoop
from tulle.transport.timers import TICK, HasDeadline, TimerWheel


class Owner(HasDeadline):
    """Something with a deadline; ``then`` runs when it expires (e.g. arms another)."""

    def __init__(self, then: object = None) -> None:
        super().__init__()
        self.fired = 0
        self.then = then

    def expired(self) -> None:
        self.fired += 1
        if callable(self.then):
            self.then()


def pending_sweeps(loop: FakeLoop) -> int:
    return sum(1 for _, _, handle in loop._timers if not handle.cancelled)


def test_a_deadline_fires_once_soon_after_it_passes() -> None:
    loop = FakeLoop()
    wheel = TimerWheel(loop, loop.clock)  # type: ignore[arg-type]
    owner = Owner()
    wheel.arm(owner, 0.5)
    loop.advance(0.49)
    assert owner.fired == 0
    loop.advance(3 * TICK)  # the tick it falls in, swept at the next (float rounding aside)
    assert owner.fired == 1
    loop.advance(1.0)
    assert owner.fired == 1
    assert wheel.armed == 0
    assert pending_sweeps(loop) == 0  # nothing armed: the wheel stops ticking


def test_a_met_deadline_never_fires() -> None:
    loop = FakeLoop()
    wheel = TimerWheel(loop, loop.clock)  # type: ignore[arg-type]
    owner = Owner()
    wheel.arm(owner, 0.5)
    wheel.disarm(owner)
    loop.advance(1.0)
    assert owner.fired == 0
    assert (owner.wheel_slot, owner.deadline) == (0, 0.0)


def test_a_deadline_armed_while_the_wheel_sweeps_keeps_one_sweep_going() -> None:
    """An expiry that arms another deadline (a per-try timeout that starts a hedge, whose
    own per-try timeout is armed at once) must not start a second chain of sweeps."""
    loop = FakeLoop()
    wheel = TimerWheel(loop, loop.clock)  # type: ignore[arg-type]
    second = Owner()
    first = Owner(then=lambda: wheel.arm(second, 0.5))
    wheel.arm(first, 0.1)
    loop.advance(0.15)
    assert first.fired == 1
    assert pending_sweeps(loop) == 1
    loop.advance(0.3)
    assert pending_sweeps(loop) == 1
    loop.advance(0.3)
    assert second.fired == 1
    assert pending_sweeps(loop) == 0


def test_a_deadline_armed_in_a_tick_emptied_by_disarming_fires_and_then_the_wheel_stops(
) -> None:
    loop = FakeLoop()
    wheel = TimerWheel(loop, loop.clock)  # type: ignore[arg-type]
    first, second = Owner(), Owner()
    wheel.arm(first, 0.5)
    wheel.disarm(first)  # its tick's bucket is empty now, and kept until the next sweep
    wheel.arm(second, 0.5)
    assert wheel.armed == 1
    loop.advance(0.5 + 3 * TICK)
    assert (first.fired, second.fired) == (0, 1)
    assert wheel.armed == 0
    assert pending_sweeps(loop) == 0  # nothing armed: the sweeps stop


def test_buckets_emptied_by_disarming_are_dropped_at_the_next_sweep() -> None:
    # 32 connections re-arming a 60 s idle timeout at every request, for 10 s: the wheel
    # holds a bucket per tick that still has an armed owner (at most 32), not one per
    # tick a deadline was ever armed in (1,000 here, 6,000 after a minute).
    loop = FakeLoop()
    wheel = TimerWheel(loop, loop.clock)  # type: ignore[arg-type]
    connections = [Owner() for _ in range(32)]
    for step in range(4000):
        wheel.arm(connections[step % 32], 60.0)
        loop.advance(0.0025)
        assert len(wheel._buckets) <= 32 + 1  # (+1: emptied this tick, not swept yet)
    assert wheel.armed == 32
    loop.advance(61.0)
    assert sum(owner.fired for owner in connections) == 32
    assert wheel._buckets == {}


def test_deadlines_armed_and_disarmed_across_ticks_in_turn_fire_exactly_when_armed() -> None:
    """The wheel keeps the bucket it armed in last: switching between ticks, disarming
    in an older one, and arming after a sweep must each find the right bucket."""
    loop = FakeLoop()
    wheel = TimerWheel(loop, loop.clock)  # type: ignore[arg-type]
    early, late, kept = Owner(), Owner(), Owner()
    wheel.arm(early, 0.2)
    wheel.arm(late, 0.7)  # another tick
    wheel.arm(kept, 0.2)  # back to the first
    wheel.disarm(early)
    wheel.disarm(late)
    loop.advance(0.2 + 3 * TICK)
    assert (early.fired, late.fired, kept.fired) == (0, 0, 1)
    wheel.arm(early, 0.2)  # after a sweep
    loop.advance(0.2 + 3 * TICK)
    loop.advance(1.0)
    assert (early.fired, late.fired, kept.fired) == (1, 0, 1)
    assert wheel.armed == 0
    assert pending_sweeps(loop) == 0
