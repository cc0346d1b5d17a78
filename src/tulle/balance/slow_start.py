"""Slow start: a new or recovered endpoint's share of traffic ramps up over a window.

A cold endpoint (empty caches, JIT not warm, connection pools empty) answers slowly
at first; sending it a full share at once is what makes deploys show up in the
tail. This wrapper works with any balancer: when the inner balancer picks an
endpoint still in its window, the pick is kept with probability ``ramp`` and
otherwise the inner balancer is asked again (up to ``RETRIES`` times, after which
the last pick stands). ``ramp`` grows linearly from ``MIN_RAMP`` to 1 over the
window (Envoy's slow start with aggression 1 and a 10% floor), so the endpoint's
share starts at about a tenth of normal and reaches normal at the end.

Which endpoints ramp: those that appear in an update after the first non-empty
set (at start-up every endpoint is equally cold, so ramping them all would change
nothing), and those that *recover* — answer well after ``FAILED_AFTER``
consecutive failures. Time comes from the injected clock.

With ``ring-hash`` a second ask gives the same endpoint for the same key, so slow
start holds back only keyless requests there; stickiness wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tulle.balance.base import Balancer, E, RequestView
from tulle.balance.clock import Clock

# A ramping endpoint gets at least this fraction of its normal share (Envoy's
# min_weight_percent default is 10%): enough to warm it up, too little to hurt.
MIN_RAMP = 0.1
# How many times a held-back pick is re-asked; each retry can pick the same
# endpoint again, so more retries would only sharpen the ramp a little.
RETRIES = 2
# Consecutive failures after which the next good answer counts as a recovery.
FAILED_AFTER = 3


class SlowStart(Balancer[E]):
    """Wraps a balancer; holds back endpoints that are still warming up."""

    __slots__ = ("_clock", "_failures", "_inner", "_rng_random", "_seen_any", "_started",
                 "_window")

    def __init__(
        self, inner: Balancer[E], clock: Clock, window: float, rng_random: Callable[[], float]
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._window = window
        self._rng_random = rng_random
        self._started: dict[E, float] = {}  # endpoint -> when its ramp began
        self._failures: dict[E, int] = {}
        self._seen_any = False

    def ramp(self, endpoint: E) -> float:
        """The fraction of its normal share ``endpoint`` gets now (1 when warm)."""
        started = self._started.get(endpoint)
        if started is None:
            return 1.0
        progress = (self._clock() - started) / self._window
        if progress >= 1.0:
            del self._started[endpoint]
            return 1.0
        return MIN_RAMP + (1.0 - MIN_RAMP) * max(0.0, progress)

    def update(self, endpoints: Sequence[E]) -> None:
        now = self._clock()
        known = self._failures
        if self._seen_any:
            for endpoint in endpoints:
                if endpoint not in known:
                    self._started[endpoint] = now
        self._failures = {e: known.get(e, 0) for e in endpoints}
        self._started = {e: t for e, t in self._started.items() if e in self._failures}
        self._seen_any = self._seen_any or bool(endpoints)
        self._inner.update(endpoints)

    def pick(self, request: RequestView) -> E | None:
        endpoint = self._inner.pick(request)
        if not self._started:
            return endpoint
        for _ in range(RETRIES):
            if endpoint is None or self._rng_random() < self.ramp(endpoint):
                return endpoint
            endpoint = self._inner.pick(request)
        return endpoint

    def latency_estimate_ms(self, endpoint: E) -> float | None:
        estimate = getattr(self._inner, "latency_estimate_ms", None)
        return estimate(endpoint) if estimate is not None else None

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        failures = self._failures.get(endpoint)
        if failures is not None:
            if not ok:
                self._failures[endpoint] = failures + 1
            else:
                if failures >= FAILED_AFTER:
                    self._started[endpoint] = self._clock()
                self._failures[endpoint] = 0
        self._inner.on_response(endpoint, latency, ok)
