"""LoopGuard: a request that has already passed through this proxy is answered, not sent.

Every request the proxy forwards carries ``Via: 1.1 tulle (<instance>)``. One that comes
in with this proxy's own instance in its Via chain has looped (an endpoint that points
back at the proxy, a route to itself): it is answered 508 at the first repeat, instead
of being forwarded again until something runs out (issue 15 found 2,425 hops).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.http.h1.writer import INSTANCE
from tulle.proxy import errors
from tulle.proxy.layers import ExchangeLayer

if TYPE_CHECKING:
    from tulle.proxy.exchange import Exchange

_MARK = b"tulle (" + INSTANCE + b")"


class LoopGuard(ExchangeLayer):
    __slots__ = ("inner",)

    def __init__(self, inner: ExchangeLayer) -> None:
        self.inner = inner

    def call(self, exchange: Exchange) -> None:
        via = exchange.head.via
        if via is not None and _MARK in via:
            exchange.fail(errors.LOOP_DETECTED, via=via.decode("latin-1")[:200])
            return
        self.inner.call(exchange)
