"""Least-response-time: the endpoint with the lowest latency estimate wins.

Every endpoint is scanned and the one with the lowest EWMA latency × (in-flight
+ 1) / weight is picked (the in-flight factor is what NGINX Plus's ``least_time``
adds too: without it, every request of a burst would go to the one endpoint that
was fastest a moment ago). The estimate is a plain time-weighted EWMA
(`tulle.balance.latency_estimate`, not peak-sensitive), so it follows sustained
changes smoothly over ``decay`` rather than reacting to one slow answer.

Compared with ``peak-ewma``: deterministic (always the best, not the better of
two), so with one proxy it concentrates traffic more on the fastest endpoint; with
many proxies they all agree on "the best" and herd. Ties go to a random endpoint
so that identical endpoints share the load.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tulle.balance.base import Balancer, E, RequestView
from tulle.balance.clock import Clock
from tulle.balance.latency_estimate import LatencyEstimate


class LeastResponseTime(Balancer[E]):
    """Full scan for the lowest EWMA latency × (in-flight + 1) / weight."""

    __slots__ = ("_clock", "_decay", "_default_rtt", "_endpoints", "_estimates", "_rng")

    def __init__(
        self,
        clock: Clock,
        *,
        decay: float,
        default_rtt: float,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._decay = decay
        self._default_rtt = default_rtt
        self._rng = rng or random.Random()
        self._endpoints: tuple[E, ...] = ()
        self._estimates: dict[E, LatencyEstimate] = {}

    def update(self, endpoints: Sequence[E]) -> None:
        old = self._estimates
        self._endpoints = tuple(endpoints)
        self._estimates = {
            e: old.get(e) or LatencyEstimate(self._clock, self._decay, self._default_rtt,
                                             peak=False)
            for e in self._endpoints
        }

    def pick(self, request: RequestView) -> E | None:
        endpoints = self._endpoints
        n = len(endpoints)
        if n < 2:
            return endpoints[0] if endpoints else None
        estimates = self._estimates
        start = int(self._rng.random() * n)  # random start: ties go to a random endpoint
        best = endpoints[start]
        best_cost = estimates[best].value * (best.in_flight + 1) / best.weight
        for i in range(1, n):
            endpoint = endpoints[(start + i) % n]
            cost = estimates[endpoint].value * (endpoint.in_flight + 1) / endpoint.weight
            if cost < best_cost:
                best, best_cost = endpoint, cost
        return best

    def latency_estimate_ms(self, endpoint: E) -> float | None:
        """The estimate for ``endpoint`` in ms (for /metrics), None if it has none."""
        estimate = self._estimates.get(endpoint)
        return None if estimate is None else estimate.get() * 1000.0

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        estimate = self._estimates.get(endpoint)
        if estimate is not None:
            estimate.observe(latency, ok)
