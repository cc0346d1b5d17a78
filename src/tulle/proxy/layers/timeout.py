"""RequestTimeout: the request's deadline over all its tries, and the 504 when it passes.

A gRPC call's own deadline (``grpc-timeout``) counts too: the sooner of the two wins,
and the endpoint is told the one that applies (gRPC's deadline propagation).

It arms the deadline on the way in (on the timer wheel: no handle per request); the
exchange disarms it through this layer's wheel when the response head arrives. If it
passes first, this layer answers: the attempts in flight (two, while a hedge races)
are abandoned as failed, and the client gets 504.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.grpc.status import call_deadline
from tulle.proxy import errors
from tulle.proxy.layers import ExchangeLayer

if TYPE_CHECKING:
    from tulle.proxy.exchange import Exchange
    from tulle.transport.timers import TimerWheel


class RequestTimeout(ExchangeLayer):
    __slots__ = ("inner", "wheel")

    def __init__(self, wheel: TimerWheel, inner: ExchangeLayer) -> None:
        self.wheel = wheel
        self.inner = inner

    def call(self, exchange: Exchange) -> None:
        timeout = exchange.request_timeout
        if exchange.head.grpc:
            timeout = exchange.request_timeout = call_deadline(exchange.head, timeout)
        if timeout is not None:
            exchange.timeout = self
            self.wheel.arm(exchange, timeout)
        self.inner.call(exchange)

    def expired(self, exchange: Exchange) -> None:
        """The deadline passed before the response head: 504. The endpoint that did not
        answer in time is told it failed (a hanging endpoint opens its breaker)."""
        exchange.abandon_tries()
        exchange.fail(errors.REQUEST_TIMEOUT, timeout=exchange.request_timeout)
