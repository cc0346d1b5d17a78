"""Coarse timers for deadlines that are almost always met: one wheel, ticked by the loop.

Nearly every request arms a deadline (its request timeout, a connection's idle timeout)
and then meets it, so the timer is disarmed without ever firing. ``loop.call_later``
and ``cancel`` per request cost about 2 µs under uvloop (a handle allocated and pushed
into the loop's heap, then removed); arming and disarming here is a dict insert and a
delete, about 0.3 µs together (measured; see docs/proxy.md). The wheel ticks every
`TICK` seconds while anything is armed, and a deadline fires within one tick after it
passes — fine for timeouts measured in tens of milliseconds and up, which is what a
proxy's timeouts are.

Theory of operation: an owner (a ``HasDeadline``: ``deadline`` and ``wheel_slot``, and an
``expired()`` method) sits in the bucket of the tick its deadline falls in, and
remembers which (``wheel_slot``, 0 when unarmed). Disarming removes it, so a met
deadline leaves nothing behind and keeps nothing alive. Each tick, the buckets whose
tick has wholly passed are emptied, and each owner in them is unarmed and its
``expired()`` called — once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from mypy_extensions import mypyc_attr

# 10 ms: finer than any timeout a user writes (DESIGN.md writes them as 250ms, 10s), and
# coarse enough that a busy loop ticks at most 100 times a second.
TICK: Final = 0.01


@mypyc_attr(allow_interpreted_subclasses=True)
class HasDeadline:
    """What the wheel times: its deadline on the clock, its bucket, what to do.

    A base class rather than a Protocol: compiled, the wheel then reads and writes the
    two fields of any owner directly (through a Protocol, each was an attribute looked
    up by name, four per request). Subclasses must not list the two in ``__slots__``.
    """

    def __init__(self) -> None:
        self.deadline = 0.0  # 0.0: not armed
        self.wheel_slot = 0  # 0: not in a bucket

    def expired(self) -> None:
        raise NotImplementedError


class TimerWheel:
    """Deadlines of one event loop, checked every `TICK` seconds while any is armed."""

    __slots__ = ("_armed", "_buckets", "_clock", "_emptied", "_handle", "_last_bucket",
                 "_last_slot", "_loop", "_next", "_per_second")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, clock: Callable[[], float], tick: float = TICK
    ) -> None:
        self._loop = loop
        self._clock = clock
        self._per_second = 1.0 / tick
        # A bucket emptied by disarming is kept until the next sweep, so that the next
        # request armed in the same tick finds it (a dict built and dropped per request
        # otherwise, when requests are few), then dropped if still empty (``_emptied``).
        # Kept until their own tick, emptied buckets held memory in proportion to the
        # request rate times the longest timeout: the idle timeout, 60 s, re-armed by
        # every request, left 3.5 MiB of them after 15 s at 20k requests/s.
        self._buckets: dict[int, dict[HasDeadline, None]] = {}
        self._emptied: list[int] = []
        # The bucket armed last, and its tick: the deadlines armed in one tick share a
        # bucket, and one is mostly disarmed before the next tick, so this spares looking
        # the bucket up (and boxing its tick to do so) on each arm and disarm.
        self._last_slot = 0
        self._last_bucket: dict[HasDeadline, None] | None = None
        self._armed = 0
        self._next = 0  # the first tick not swept yet
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, owner: HasDeadline, seconds: float) -> None:
        """``owner.expired()`` runs once ``seconds`` have passed, unless disarmed (or armed
        again) first."""
        if owner.wheel_slot:
            self.disarm(owner)
        at = self._clock() + seconds
        owner.deadline = at
        # The first tick that starts after the deadline: when it is swept, it has passed.
        slot = int(at * self._per_second) + 1
        owner.wheel_slot = slot
        self._armed += 1
        bucket = self._last_bucket if slot == self._last_slot else self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = {owner: None}
        else:
            bucket[owner] = None
        self._last_slot = slot
        self._last_bucket = bucket
        if self._handle is None:
            self._start()

    def disarm(self, owner: HasDeadline) -> None:
        """The deadline was met: forget it."""
        slot = owner.wheel_slot
        if slot:
            owner.wheel_slot = 0
            owner.deadline = 0.0
            self._armed -= 1
            # None: being swept.
            bucket = self._last_bucket if slot == self._last_slot else self._buckets.get(slot)
            if bucket is not None and owner in bucket:
                del bucket[owner]  # (not pop(): a method looked up by name, compiled)
                if not bucket:
                    self._emptied.append(slot)

    def _start(self) -> None:
        # Idle until now: nothing is armed before this tick.
        self._next = int(self._clock() * self._per_second)
        self._handle = self._loop.call_later(1.0 / self._per_second, self._sweep)

    def _sweep(self) -> None:
        # ``_handle`` stays set while sweeping: an expiry that arms a deadline (a per-try
        # timeout that starts a hedge) must not start a second chain of sweeps.
        current = int(self._clock() * self._per_second)
        buckets = self._buckets
        self._last_slot = 0  # (a bucket swept is no longer the one to arm in)
        self._last_bucket = None
        for slot in self._emptied:
            if not buckets.get(slot, True):  # still empty: nobody armed in it since
                del buckets[slot]
        self._emptied.clear()
        for slot in range(self._next, current + 1):
            bucket = buckets.pop(slot, None)
            if bucket is None:
                continue
            for owner in bucket:
                if owner.wheel_slot == slot:  # not disarmed by an earlier owner's expiry
                    owner.wheel_slot = 0
                    owner.deadline = 0.0
                    self._armed -= 1
                    owner.expired()
        self._next = current + 1
        if self._armed:
            self._handle = self._loop.call_later(1.0 / self._per_second, self._sweep)
        else:
            buckets.clear()  # only emptied ones were left
            self._handle = None

    @property
    def armed(self) -> int:
        """How many deadlines are armed (for tests and /debug)."""
        return self._armed

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for bucket in self._buckets.values():
            for owner in bucket:
                owner.wheel_slot = 0
                owner.deadline = 0.0
        self._buckets.clear()
        self._emptied.clear()
        self._last_slot = 0
        self._last_bucket = None
        self._armed = 0
