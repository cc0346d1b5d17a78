"""Weighted round-robin, smooth as nginx does it: heavy endpoints interleaved, not in bursts.

Each pick, every endpoint's ``current`` grows by its weight; the endpoint with the
largest ``current`` is picked and its ``current`` drops by the total weight. Over
one cycle of ``total`` picks each endpoint is picked exactly ``weight`` times, and
picks of a heavy endpoint are spread out: weights 5, 1, 1 give a a b a c a a.
(The rule is nginx's ``ngx_http_upstream_get_peer``, without its failure
accounting; ties go to the endpoint listed first.)

``current`` is kept per endpoint across updates, so a reload that keeps the set
keeps the position in the cycle; a new endpoint starts at 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from tulle.balance.base import Balancer, E, RequestView


class WeightedRoundRobin(Balancer[E]):
    """Smooth weighted round-robin (O(n) a pick; services have few endpoints)."""

    __slots__ = ("_current", "_endpoints", "_total", "_weights")

    def __init__(self) -> None:
        self._endpoints: tuple[E, ...] = ()
        self._weights: list[int] = []
        self._current: list[int] = []
        self._total = 0

    def update(self, endpoints: Sequence[E]) -> None:
        old = dict(zip(self._endpoints, self._current, strict=True))
        self._endpoints = tuple(endpoints)
        self._weights = [max(1, e.weight) for e in self._endpoints]
        self._current = [old.get(e, 0) for e in self._endpoints]
        self._total = sum(self._weights)

    def pick(self, request: RequestView) -> E | None:
        current = self._current
        if not current:
            return None
        best = 0
        best_value = None
        for i, weight in enumerate(self._weights):
            value = current[i] + weight
            current[i] = value
            if best_value is None or value > best_value:
                best, best_value = i, value
        current[best] -= self._total
        return self._endpoints[best]

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        pass  # weighted round-robin ignores how endpoints do
