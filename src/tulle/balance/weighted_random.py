"""Random: each request to an endpoint drawn at random in proportion to its weight.

Stateless and cheap; with many proxies it spreads load as evenly as round-robin
without any coordination, but knows nothing of latency or load. The sampler is
shared with the power-of-two-choices balancers, which draw their two candidates
the same way.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from typing import Generic

from tulle.balance.base import Balancer, E, RequestView


class WeightedSampler(Generic[E]):
    """Draws endpoints with probability weight / total weight (O(log n) a draw)."""

    __slots__ = ("_cumulative", "_equal", "_rng", "endpoints", "total")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.endpoints: tuple[E, ...] = ()
        self._cumulative: list[int] = []
        self._equal = True
        self.total = 0

    def update(self, endpoints: Sequence[E]) -> None:
        self.endpoints = tuple(endpoints)
        weights = [max(1, e.weight) for e in self.endpoints]
        self._cumulative = list(itertools.accumulate(weights))
        self.total = self._cumulative[-1] if weights else 0
        self._equal = len(set(weights)) <= 1

    def index(self) -> int:
        """Index of one weighted draw (the set must not be empty)."""
        if self._equal:
            return int(self._rng.random() * len(self.endpoints))
        point = self._rng.random() * self.total
        return bisect.bisect_right(self._cumulative, point)

    def two(self) -> tuple[E, E]:
        """Two distinct endpoints, each drawn by weight (the set must hold at least two).

        The second is redrawn while it equals the first; a few tries bound the work
        when one weight dwarfs the rest, after which the next endpoint is taken.
        """
        endpoints = self.endpoints
        first = self.index()
        if self._equal:
            second = int(self._rng.random() * (len(endpoints) - 1))
            second += second >= first
            return endpoints[first], endpoints[second]
        for _ in range(8):
            second = self.index()
            if second != first:
                return endpoints[first], endpoints[second]
        return endpoints[first], endpoints[(first + 1) % len(endpoints)]


class WeightedRandom(Balancer[E]):
    """Picks at random, in proportion to weight."""

    __slots__ = ("_sampler",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._sampler: WeightedSampler[E] = WeightedSampler(rng or random.Random())

    def update(self, endpoints: Sequence[E]) -> None:
        self._sampler.update(endpoints)

    def pick(self, request: RequestView) -> E | None:
        if not self._sampler.endpoints:
            return None
        return self._sampler.endpoints[self._sampler.index()]

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        pass  # random ignores how endpoints do
