"""Least-request: power of two choices on in-flight requests, weighted.

Two distinct endpoints are drawn at random (each in proportion to its weight) and
the one with fewer requests in flight per unit of weight wins; a tie goes to the
first drawn. Comparing two random endpoints instead of scanning for the global
minimum is Mitzenmacher's "power of two choices": almost all of the benefit of
least-loaded, without every proxy herding onto the same momentarily idle endpoint
(and O(1) a pick). Envoy's LEAST_REQUEST does the same with two choices by default.

In-flight counts are the proxy's (``Pickable.in_flight``); this balancer keeps no
state of its own, so updates cost nothing and lose nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from tulle.balance.base import Balancer, E, RequestView
from tulle.balance.weighted_random import WeightedSampler


class LeastRequest(Balancer[E]):
    """P2C on (in-flight + 1) / weight."""

    __slots__ = ("_sampler",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._sampler: WeightedSampler[E] = WeightedSampler(rng or random.Random())

    def update(self, endpoints: Sequence[E]) -> None:
        self._sampler.update(endpoints)

    def pick(self, request: RequestView) -> E | None:
        endpoints = self._sampler.endpoints
        if len(endpoints) < 2:
            return endpoints[0] if endpoints else None
        a, b = self._sampler.two()
        # (in_flight + 1) / weight compared without division.
        if (b.in_flight + 1) * a.weight < (a.in_flight + 1) * b.weight:
            return b
        return a

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        pass  # the proxy's in-flight count is all this balancer needs
