"""Circuit breaker per endpoint: consecutive failures open it; backoff probes close it.

Theory of operation (Linkerd's failure accrual, DESIGN.md defaults): the
request path reports each result with `record` — a counter reset or increment.
After ``threshold`` consecutive failures the breaker opens and the endpoint
leaves the balancer's set. A timer, off the request path, makes it
*probing* after a backoff that doubles from ``backoff_min`` to ``backoff_max``
with jitter (but not for probes whose connection was refused: those are free);
while probing it admits a single request. That request's
success closes the breaker (and resets the backoff); its failure opens it
again for the next, longer backoff.

```
  closed --threshold failures--> open --backoff elapses--> probing
    ^                              ^                          |
    +---------- success -----------|--------------------------+
                                   +-------- failure ---------+
```
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

CLOSED: Final = "closed"
OPEN: Final = "open"
PROBING: Final = "probing"

Schedule = Callable[[float, Callable[[], None]], Any]  # (delay, callback) -> handle


class CircuitBreaker:
    __slots__ = (
        "_backoff",
        "_handle",
        "_on_change",
        "_random",
        "_schedule",
        "backoff_max",
        "backoff_min",
        "failures",
        "opened",
        "probe_in_flight",
        "state",
        "threshold",
    )

    def __init__(
        self,
        threshold: int,
        backoff_min: float,
        backoff_max: float,
        schedule: Schedule,
        on_change: Callable[[], None],
        rng: random.Random | None = None,
    ) -> None:
        self.threshold = threshold
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._schedule = schedule
        self._on_change = on_change
        self._random = rng or random.Random()
        self._backoff = backoff_min
        self._handle: Any = None
        self.state = CLOSED
        self.failures = 0
        self.opened = 0  # how many times it opened (a metric)
        self.probe_in_flight = False

    @property
    def admits(self) -> bool:
        """Whether the balancer may pick this endpoint now."""
        return self.state == CLOSED or (self.state == PROBING and not self.probe_in_flight)

    def on_dispatch(self) -> bool:
        """A request was placed on the endpoint; True when it is the probe."""
        if self.state == PROBING and not self.probe_in_flight:
            self.probe_in_flight = True
            self._on_change()
            return True
        return False

    def abandon_probe(self) -> None:
        """The probe ended without a result (its client left): let another one through."""
        if self.state == PROBING and self.probe_in_flight:
            self.probe_in_flight = False
            self._on_change()

    def record(self, ok: bool, probe: bool = True, refused: bool = False) -> None:
        """The result of one request to this endpoint.

        While probing, only the probe's result (``probe`` True) decides; a late
        result of a request sent before the breaker opened is ignored. A probe
        that failed because the endpoint ``refused`` the connection cost its
        request nothing (it is retried elsewhere at once), so the backoff does
        not grow for it: a restarted endpoint is found again within
        ``backoff_min`` instead of after the backoff grew during its downtime.
        """
        state = self.state
        if state == CLOSED:
            if ok:
                self.failures = 0
            else:
                self.failures += 1
                if self.failures >= self.threshold:
                    self._open()
        elif state == PROBING and probe:
            self.probe_in_flight = False
            if ok:
                self.state = CLOSED
                self.failures = 0
                self._backoff = self.backoff_min
                self._on_change()
            else:
                if not refused:
                    self._backoff = min(self._backoff * 2, self.backoff_max)
                self._open()
        # Results arriving while open come from requests sent before it opened.

    def _open(self) -> None:
        self.state = OPEN
        self.opened += 1
        # "Equal jitter": half the backoff fixed, half random, so probes from many
        # proxies spread out but none comes back much sooner than the backoff.
        delay = self._backoff / 2 + self._random.uniform(0, self._backoff / 2)
        self._handle = self._schedule(delay, self._probe)
        self._on_change()

    def _probe(self) -> None:
        self._handle = None
        if self.state == OPEN:
            self.state = PROBING
            self.probe_in_flight = False
            self._on_change()

    def cancel(self) -> None:
        """The endpoint is gone: drop the pending probe timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
