"""Observe: the outermost layer. Counts every answer in the metrics and shows it to tap.

On the way in it registers itself on the exchange; on the way back it is told when the
response starts (latency to the response head, on the stats of whoever answered) and
when the exchange finishes (the response counted by status and error, the route's
latency, a tap event). A request whose client left before an answer is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tulle.proxy.layers import ExchangeLayer
from tulle.telemetry.tap import TapEvent, TapHub

if TYPE_CHECKING:
    from tulle.proxy.exchange import Exchange


class Observe(ExchangeLayer):
    __slots__ = ("clock", "direction", "inner", "tap")

    def __init__(
        self, direction: str, clock: Callable[[], float], tap: TapHub, inner: ExchangeLayer
    ) -> None:
        self.direction = direction
        self.clock = clock
        self.tap = tap
        self.inner = inner

    def call(self, exchange: Exchange) -> None:
        exchange.observer = self
        self.inner.call(exchange)

    # -- the way back --

    def response_started(self, exchange: Exchange) -> None:
        """The response head goes to the client (the endpoint's, or the proxy's own)."""
        stats = exchange.stats
        if stats is not None:
            stats.latency.observe((self.clock() - exchange.started_at) * 1000.0)

    def finished(self, exchange: Exchange) -> None:
        status, error, grpc_status = exchange.status, exchange.error, exchange.grpc_status
        stats = exchange.stats
        if stats is not None:
            if exchange.endpoint is None:
                stats.requests += 1  # never reached an endpoint, so not counted there
            stats.count(status, error, grpc_status)
        route = exchange.route
        if route is not None:
            route.count(status, error, grpc_status)
            route.latency.observe((self.clock() - exchange.started_at) * 1000.0)
        if self.tap.active:
            self.tap.publish(self._tap_event(exchange))

    def _tap_event(self, exchange: Exchange) -> TapEvent:
        head = exchange.head
        target = exchange.target
        endpoint = exchange.endpoint
        if self.direction == "inbound":
            identity = exchange.client.peer_identity
        else:
            pool = endpoint.pool if endpoint is not None else None
            identity = pool.server_identity if pool is not None and pool.secured else None
        return TapEvent(
            direction=self.direction,
            service=target.name if target else "",
            namespace=target.namespace if target else "",
            endpoint=endpoint.address if endpoint else "",
            method=head.method.decode("latin-1"),
            authority=(head.host or b"").decode("latin-1"),
            path=head.target.decode("latin-1"),
            status=exchange.status,
            latency_ms=(self.clock() - exchange.started_at) * 1000.0,
            error=exchange.error,
            at=time.time(),
            grpc_status=exchange.grpc_status,
            identity=identity or "",
        )
