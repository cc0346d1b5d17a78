"""The request path as a stack of small layers, assembled in one place.

Each layer is one concern and calls the next; a feature is added by adding a
layer here, not by threading flags through the connection code (linkerd's
``concrete.rs`` is the model). Read top to bottom, this file is the whole path
of a request::

    route   → which service: by the connection's original destination when iptables
              captured it, else by authority; then by HTTPRoute rules and splits (404 when none)
    timeout → the request's deadline, over all its tries (504 when it passes)
    retry   → counts the request in the retry budget; failed tries come back here
    balance → which endpoint (503 when none; waits a moment when all are down)
    forward → a pooled connection to that endpoint, under the per-try timeout
"""

from __future__ import annotations

from collections.abc import Callable

from tulle.proxy.exchange import Exchange
from tulle.proxy.routing import Router
from tulle.telemetry.metrics import ResponseStats

Layer = Callable[[Exchange], None]


class Route:
    """Finds the service from the request's authority."""

    __slots__ = ("inner", "router", "unknown")

    def __init__(self, router: Router, unknown: ResponseStats, inner: Layer) -> None:
        self.router = router
        self.unknown = unknown  # stats for requests to authorities we don't know
        self.inner = inner

    def __call__(self, exchange: Exchange) -> None:
        destination = exchange.conn.original_dst
        target = None if destination is None else self.router.resolve_destination(destination)
        if target is None:
            target = self.router.resolve(exchange.head)
        if target is None:
            exchange.stats = self.unknown
            host = (exchange.head.host or b"").decode("latin-1")
            exchange.respond(404, "unknown-service", f"no service known for authority {host!r}")
            return
        routes = target.routes
        if routes is not None:
            rule = routes.match(exchange.head)
            if rule is None:
                exchange.stats = target.stats
                exchange.respond(404, "no-route", f"no route of {target.key} matches the request")
                return
            exchange.route = rule.stats
            rule.stats.requests += 1
            backend = rule.pick()
            if backend is None:
                exchange.stats = target.stats
                exchange.respond(500, "no-backend", f"route {rule.name} has no backend")
                return
            exchange.target = backend
            exchange.stats = backend.stats
            timeouts = backend.timeouts
            exchange.request_timeout = rule.request_timeout or timeouts.request
            exchange.per_try_timeout = rule.per_try_timeout or timeouts.per_try
            exchange.retry_policy = rule.retry_policy or backend.retry_policy
        else:
            exchange.target = target
            exchange.stats = target.stats
            exchange.request_timeout = target.timeouts.request
            exchange.per_try_timeout = target.timeouts.per_try
            exchange.retry_policy = target.retry_policy
        self.inner(exchange)


class Wrapping:
    """A layer that does its part and calls the next one, ``inner``."""

    __slots__ = ("inner",)

    def __init__(self, inner: Layer) -> None:
        self.inner = inner


class RequestTimeout(Wrapping):
    """Arms the service's request timeout (until the response head arrives)."""

    __slots__ = ()

    def __call__(self, exchange: Exchange) -> None:
        timeout = exchange.request_timeout
        if timeout is not None:
            exchange.arm_timeout(timeout)
        self.inner(exchange)


class Retry(Wrapping):
    """Makes the request retryable under the service's policy and budget."""

    __slots__ = ()

    def __call__(self, exchange: Exchange) -> None:
        target = exchange.target
        assert target is not None
        if exchange.retry_policy is not None:
            target.budget.record_request()
            exchange.allow_retries(self.inner)
        self.inner(exchange)


class Balance(Wrapping):
    """Asks the service's balancer for an endpoint, or waits briefly, or sheds."""

    __slots__ = ()

    def __call__(self, exchange: Exchange) -> None:
        target = exchange.target
        assert target is not None
        balancer = target.balancer
        endpoint = balancer.pick(exchange)
        if endpoint is not None and endpoint is exchange.failed_endpoint:
            endpoint = balancer.pick(exchange) or endpoint  # a retry prefers another one
        if endpoint is None:
            if exchange.retry_found_no_endpoint():
                return
            if not target.endpoints:
                exchange.respond(503, "no-endpoints", f"no endpoint available for {target.key}")
            elif not target.wait_for_endpoint(exchange, self):
                exchange.respond(503, "load-shed", f"too many requests waiting for {target.key}")
            return
        if endpoint.in_flight >= target.limits.requests_per_endpoint:
            target.counters.load_shed += 1
            exchange.respond(503, "load-shed", f"{endpoint.address} is at its request limit")
            return
        exchange.endpoint = endpoint
        self.inner(exchange)


def forward(exchange: Exchange) -> None:
    """Sends the request over a pooled connection to the chosen endpoint."""
    endpoint = exchange.endpoint
    assert endpoint is not None
    exchange.send_continue()
    exchange.dispatch_to(endpoint, exchange.per_try_timeout)


def build_stack(router: Router, unknown: ResponseStats) -> Route:
    """The request path, outermost layer first."""
    return Route(router, unknown, RequestTimeout(Retry(Balance(forward))))
