"""Retry budget: retries may add only a bounded share of load to a service.

Linkerd's (and Finagle's) rule: over a sliding window, retries may not exceed
``ratio`` × the requests seen plus ``min_per_second`` × the window's seconds. The
minimum keeps low-traffic services retrying; the ratio keeps an outage from
being multiplied by retries (a 100%-failing service sees at most 1.2× load
with the defaults: ratio 0.2, 10/s, 10 s — Linkerd's defaults).

The window is ten fixed slots, so recording is an index and an addition;
time comes from the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

_SLOTS: Final = 10


class RetryBudget:
    __slots__ = (
        "_clock",
        "_current",
        "_requests",
        "_retries",
        "_slot_length",
        "_slot_started",
        "exhausted",
        "min_per_second",
        "ratio",
        "window",
    )

    def __init__(
        self,
        ratio: float,
        min_per_second: float,
        window: float,
        clock: Callable[[], float],
    ) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self._clock = clock
        self._slot_length = window / _SLOTS
        self._requests = [0] * _SLOTS
        self._retries = [0] * _SLOTS
        self._current = 0
        self._slot_started = clock()
        self.exhausted = 0  # retries refused because the budget was spent

    def _advance(self) -> None:
        now = self._clock()
        elapsed = now - self._slot_started
        if elapsed < self._slot_length:
            return
        steps = int(elapsed / self._slot_length)
        for _ in range(min(steps, _SLOTS)):
            self._current = (self._current + 1) % _SLOTS
            self._requests[self._current] = 0
            self._retries[self._current] = 0
        self._slot_started += steps * self._slot_length

    def record_request(self) -> None:
        """A request (not a retry) was sent: it earns ``ratio`` of a retry."""
        self._advance()
        self._requests[self._current] += 1

    def try_withdraw(self) -> bool:
        """Spend one retry if the budget allows it; count a refusal otherwise."""
        self._advance()
        allowed = self.min_per_second * self.window + self.ratio * sum(self._requests)
        if sum(self._retries) + 1 > allowed:
            self.exhausted += 1
            return False
        self._retries[self._current] += 1
        return True

    @property
    def retries_in_window(self) -> int:
        self._advance()
        return sum(self._retries)
