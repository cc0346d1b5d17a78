"""Forward: the innermost layer. Sends the try over a stream leased from its endpoint's pool.

It answers ``Expect: 100-continue`` (now that the body has somewhere to go), arms the
per-try timeout, and asks the endpoint's pool for a stream — an HTTP/1.1 connection, or
a stream on an HTTP/2 one when the service's endpoints speak HTTP/2 (``protocol: http2``
or ``grpc``) or the request is a gRPC call; the pool hands it to the attempt
(`Attempt.leased`), which sends the request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tulle.proxy.layers import AttemptLayer

if TYPE_CHECKING:
    from tulle.proxy.attempt import Attempt
    from tulle.transport.timers import TimerWheel


class Forward(AttemptLayer):
    __slots__ = ("clock", "h2", "wheel")

    def __init__(self, wheel: TimerWheel, clock: Callable[[], float], h2: bool = False) -> None:
        self.wheel = wheel
        self.clock = clock
        self.h2 = h2  # the service's endpoints speak HTTP/2 (protocol http2 or grpc)

    def call(self, attempt: Attempt) -> None:
        exchange = attempt.exchange
        exchange.send_continue()
        per_try = exchange.per_try_timeout
        if per_try is not None:
            attempt.wheel = self.wheel
            self.wheel.arm(attempt, per_try)
        attempt.sent_at = self.clock()
        if self.h2 or exchange.head.grpc:  # gRPC needs HTTP/2 whatever the service says
            attempt.endpoint.pool.h2.lease(attempt)
        else:
            attempt.endpoint.pool.lease(attempt)
