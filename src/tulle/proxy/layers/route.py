"""Route: which service a request is for — by where it was going, by authority, then by
its HTTPRoute rules.

When iptables captured the connection (``tulle proxy --transparent``), its original
destination decides first (a service's clusterIP and port, or an address forwarded as
it is; see `tulle.proxy.routing`); otherwise, and when that finds nothing, the
authority does.

It sets the exchange's target and the policy it runs under (the service's timeouts and
retries, or the matched rule's own), then hands it to that target's stack. A request
for an authority no service answers to is a 404, as is one no rule of its service's
HTTPRoutes matches (the Gateway API's answer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.proxy import errors
from tulle.proxy.layers import ExchangeLayer

if TYPE_CHECKING:
    from tulle.proxy.exchange import Exchange
    from tulle.proxy.routing import Router
    from tulle.telemetry.metrics import ResponseStats


class Route(ExchangeLayer):
    __slots__ = ("router", "unknown")

    def __init__(self, router: Router, unknown: ResponseStats) -> None:
        self.router = router  # replaced on every reload
        self.unknown = unknown  # stats for requests to authorities we don't know

    def call(self, exchange: Exchange) -> None:
        router = self.router
        destination = exchange.client.original_dst
        target = None if destination is None else router.resolve_destination(destination)
        if target is None:
            target = router.resolve(exchange.head)
        if target is None:
            exchange.stats = self.unknown
            host = (exchange.head.host or b"").decode("latin-1")
            exchange.fail(errors.UNKNOWN_SERVICE, authority=host)
            return
        routes = target.routes
        if routes is not None:
            rule = routes.match(exchange.head)
            if rule is None:
                exchange.stats = target.stats
                exchange.fail(errors.NO_ROUTE, service=target.key)
                return
            exchange.route = rule.stats
            rule.stats.requests += 1
            backend = rule.pick()
            if backend is None:
                exchange.stats = target.stats
                exchange.fail(errors.NO_BACKEND, route=rule.name)
                return
            exchange.target = backend
            exchange.stats = backend.stats
            timeouts = backend.timeouts
            exchange.request_timeout = rule.request_timeout or timeouts.request
            exchange.per_try_timeout = rule.per_try_timeout or timeouts.per_try
            exchange.retry_policy = rule.retry_policy or backend.retry_policy
            backend.stack.call(exchange)
            return
        exchange.target = target
        exchange.stats = target.stats
        timeouts = target.timeouts
        exchange.request_timeout = timeouts.request
        exchange.per_try_timeout = timeouts.per_try
        exchange.retry_policy = target.retry_policy
        target.stack.call(exchange)
