"""Round-robin: each endpoint in turn, one request each."""

from __future__ import annotations

from collections.abc import Sequence

from tulle.balance.base import Balancer, E, RequestView


class RoundRobin(Balancer[E]):
    """Cycles through the endpoints in order; weights are not considered."""

    __slots__ = ("_endpoints", "_next")

    def __init__(self) -> None:
        self._endpoints: tuple[E, ...] = ()
        self._next = 0

    def update(self, endpoints: Sequence[E]) -> None:
        self._endpoints = tuple(endpoints)
        if self._next >= len(self._endpoints):
            self._next = 0

    def pick(self, request: RequestView) -> E | None:
        endpoints = self._endpoints
        if not endpoints:
            return None
        index = self._next
        if index >= len(endpoints):
            index = 0
        self._next = index + 1
        return endpoints[index]

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        pass  # round-robin ignores how endpoints do
