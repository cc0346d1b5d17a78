"""The request path as a stack of small layers, assembled in one place.

Each layer is one concern and calls the next; a feature is added by adding a
layer here, not by threading flags through the connection code (linkerd's
``concrete.rs`` is the model). Read top to bottom, this file is the whole path
of a request::

    route   → which service (404 when none)
    timeout → the request's deadline (504 when it passes)
    balance → which endpoint (503 when none)
    forward → a pooled connection to that endpoint
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
        target = self.router.resolve(exchange.head)
        if target is None:
            exchange.stats = self.unknown
            host = (exchange.head.host or b"").decode("latin-1")
            exchange.respond(404, "unknown-service", f"no service known for authority {host!r}")
            return
        exchange.target = target
        exchange.stats = target.stats
        self.inner(exchange)


class RequestTimeout:
    """Arms the service's request timeout (until the response head arrives)."""

    __slots__ = ("inner",)

    def __init__(self, inner: Layer) -> None:
        self.inner = inner

    def __call__(self, exchange: Exchange) -> None:
        assert exchange.target is not None
        timeout = exchange.target.timeouts.request
        if timeout is not None:
            exchange.arm_timeout(timeout)
        self.inner(exchange)


class Balance:
    """Asks the service's balancer for an endpoint."""

    __slots__ = ("inner",)

    def __init__(self, inner: Layer) -> None:
        self.inner = inner

    def __call__(self, exchange: Exchange) -> None:
        target = exchange.target
        assert target is not None
        endpoint = target.balancer.pick(exchange)
        if endpoint is None:
            exchange.respond(503, "no-endpoints", f"no endpoint available for {target.key}")
            return
        exchange.endpoint = endpoint
        self.inner(exchange)


def forward(exchange: Exchange) -> None:
    """Sends the request over a pooled connection to the chosen endpoint."""
    endpoint = exchange.endpoint
    assert endpoint is not None
    exchange.send_continue()
    exchange.dispatch_to(endpoint)


def build_stack(router: Router, unknown: ResponseStats) -> Layer:
    """The request path, outermost layer first."""
    return Route(router, unknown, RequestTimeout(Balance(forward)))
