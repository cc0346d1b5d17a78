"""RateLimit: inbound, within the server's local rate limit? (`tulle.policy.rate_limit`)

After authorization: a request its server's limits refuse (in total, for its client's
identity, or for the override naming that client) gets 429 with ``Retry-After`` (the
seconds until the refusing limit would admit it, rounded up) and is counted by which
limit refused it. The check reads the time the request's head arrived (no clock call)
and allocates nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.policy.rate_limit import LIMIT_NAMES, NANOS
from tulle.proxy import errors
from tulle.proxy.layers import ExchangeLayer

if TYPE_CHECKING:
    from tulle.proxy.exchange import Exchange
    from tulle.proxy.layers.authorize import ServerOf


class RateLimit(ExchangeLayer):
    __slots__ = ("inner", "server_of")

    def __init__(self, server_of: ServerOf, inner: ExchangeLayer) -> None:
        self.server_of = server_of
        self.inner = inner

    def call(self, exchange: Exchange) -> None:
        server = self.server_of.current()
        limit = server.rate_limit
        if limit is not None:
            wait = limit.check(exchange.client.peer_identity, int(exchange.started_at * NANOS))
            if wait:
                refused_by = limit.refused_by
                server.counters.rate_limited[refused_by] += 1
                exchange.retry_after = (wait + NANOS - 1) // NANOS
                exchange.fail(errors.RATE_LIMITED, limit=LIMIT_NAMES[refused_by],
                              server=server.name, rate=limit.refused_rate)
                return
        self.inner.call(exchange)
