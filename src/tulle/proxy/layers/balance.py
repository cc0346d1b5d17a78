"""Balance: which endpoint this try goes to — or a short wait, or a clear 503.

The service's balancer picks among the endpoints that are pickable now (reachable,
breaker closed, not ejected, healthy); a retry prefers an endpoint other than the one
that just failed. When none is pickable but the service has endpoints, the request
waits up to ``failFastAfter`` for one to come back (a probe that succeeds, a
reconnect), then gets 503; past ``pendingRequests`` waiting, or past
``requestsPerEndpoint`` in flight on the chosen endpoint, it is shed at once. A retry
that finds nothing answers what the previous try got.

A hedge (`tulle.proxy.layers.retry`) asks this layer for an endpoint other than the one
its racer waits on (`other_than`), then starts a second attempt there (`hedge`).

Below this layer the request is one `Attempt` on one endpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.proxy import errors
from tulle.proxy.attempt import Attempt
from tulle.proxy.layers import ExchangeLayer

if TYPE_CHECKING:
    from tulle.proxy.exchange import Exchange
    from tulle.proxy.layers import AttemptLayer
    from tulle.proxy.targets import Endpoint, ServiceTarget


class Balance(ExchangeLayer):
    __slots__ = ("inner", "target")

    def __init__(self, target: ServiceTarget, inner: AttemptLayer) -> None:
        self.target = target
        self.inner = inner

    def call(self, exchange: Exchange) -> None:
        target = self.target
        balancer = target.balancer
        endpoint = balancer.pick(exchange)
        if endpoint is not None and exchange.tries and endpoint is exchange.endpoint:
            endpoint = balancer.pick(exchange) or endpoint  # a retry prefers another one
        if endpoint is None:
            self._none_available(exchange)
            return
        if endpoint.in_flight >= target.requests_per_endpoint:
            target.counters.load_shed += 1
            exchange.fail(errors.ENDPOINT_FULL, endpoint=endpoint.address)
            return
        exchange.endpoint = endpoint
        exchange.stats = endpoint.stats
        attempt = Attempt(exchange, endpoint)
        exchange.start_attempt(attempt)
        self.inner.call(attempt)

    def other_than(self, exchange: Exchange, busy: Endpoint) -> Endpoint | None:
        """Where a hedge of ``exchange`` may go: a pickable endpoint that is not ``busy``
        (its racer's) and has room; None when the balancer offers only ``busy``."""
        balancer = self.target.balancer
        endpoint = balancer.pick(exchange)
        if endpoint is busy:
            endpoint = balancer.pick(exchange)
        if (endpoint is None or endpoint is busy
                or endpoint.in_flight >= self.target.requests_per_endpoint):
            return None
        return endpoint

    def hedge(self, exchange: Exchange, endpoint: Endpoint) -> None:
        """A second try of ``exchange``, on ``endpoint``, racing the one in flight."""
        attempt = Attempt(exchange, endpoint)
        exchange.start_hedge(attempt)
        exchange.endpoint = endpoint
        exchange.stats = endpoint.stats
        self.inner.call(attempt)

    def _none_available(self, exchange: Exchange) -> None:
        last = exchange.last_failure
        if last is not None:
            exchange.answer(*last)  # a retry found nowhere to go
            return
        target = self.target
        if not target.endpoints:
            exchange.fail(errors.NO_ENDPOINTS, service=target.key)
        elif not target.wait_for_endpoint(exchange, self):
            exchange.fail(errors.TOO_MANY_WAITING, service=target.key)
