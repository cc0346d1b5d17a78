"""Peak-EWMA: power of two choices on latency estimate × (in-flight + 1) — the default.

This is Linkerd's balancer (linkerd2-proxy uses tower's ``PeakEwma`` load with
its P2C balancer; finagle's ``Balancers.p2cPeakEwma`` is the original). Each
endpoint's cost is its peak-sensitive latency estimate (see
`tulle.balance.latency_estimate`) times the requests this proxy has in flight to
it plus one, divided by its weight; two endpoints are drawn at random by weight
and the cheaper one wins.

Why this combination: the latency term moves traffic off a slow endpoint after a
single slow answer (peak), the in-flight term stops a fast endpoint from being
flooded before its latency shows it, and P2C keeps many proxies from all choosing
the same endpoint at once. Settings: ``decay`` (10 s) and ``defaultRtt`` (30 ms),
Linkerd's values (DESIGN.md "Defaults").

Estimates are kept per endpoint object: an endpoint that stays across an update
keeps what was learned; a removed endpoint's late answers are ignored.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tulle.balance.base import Balancer, E, RequestView
from tulle.balance.clock import Clock
from tulle.balance.latency_estimate import LatencyEstimate
from tulle.balance.weighted_random import WeightedSampler


class PeakEwma(Balancer[E]):
    """P2C on peak-EWMA latency × (in-flight + 1) / weight."""

    __slots__ = ("_clock", "_decay", "_default_rtt", "_estimates", "_peak", "_sampler")

    def __init__(
        self,
        clock: Clock,
        *,
        decay: float,
        default_rtt: float,
        rng: random.Random | None = None,
        peak: bool = True,
    ) -> None:
        self._clock = clock
        self._decay = decay
        self._default_rtt = default_rtt
        self._peak = peak
        self._sampler: WeightedSampler[E] = WeightedSampler(rng or random.Random())
        self._estimates: dict[E, LatencyEstimate] = {}

    def update(self, endpoints: Sequence[E]) -> None:
        old = self._estimates
        known = sorted(estimate.get() for estimate in old.values() if estimate.measured)
        # Newcomers start at the median of what is known (never above the default).
        start = min(known[len(known) // 2], self._default_rtt) if known else None
        self._estimates = {
            e: old.get(e) or LatencyEstimate(self._clock, self._decay, self._default_rtt,
                                             self._peak, initial=start)
            for e in endpoints
        }
        self._sampler.update(endpoints)

    def cost(self, endpoint: E) -> float:
        """What placing one more request on ``endpoint`` is expected to cost."""
        return self._estimates[endpoint].get() * (endpoint.in_flight + 1) / endpoint.weight

    def pick(self, request: RequestView) -> E | None:
        endpoints = self._sampler.endpoints
        if len(endpoints) < 2:
            return endpoints[0] if endpoints else None
        a, b = self._sampler.two()
        return b if self.cost(b) < self.cost(a) else a

    def latency_estimate_ms(self, endpoint: E) -> float | None:
        """The estimate for ``endpoint`` in ms (for /metrics), None if it has none."""
        estimate = self._estimates.get(endpoint)
        return None if estimate is None else estimate.get() * 1000.0

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        estimate = self._estimates.get(endpoint)
        if estimate is not None:  # None: removed by an update since it was picked
            estimate.observe(latency, ok)
