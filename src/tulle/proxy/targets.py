"""What a request can be sent to: services (`ServiceTarget`) and their `Endpoint`s.

Both are built once per configuration and kept across reloads where they stay
the same, so that what an endpoint has learned (in-flight count, breaker state,
the balancer's latency estimate) survives a reload, and in-flight requests
finish on the objects they started with.

An endpoint is *pickable* while its address is reachable (its pool can
connect), its circuit breaker admits requests, outlier detection has not
ejected it and its health checks pass. Those decisions are
made off the request path; each change calls `ServiceTarget.refresh`, which
hands the balancer the pickable set and lets waiting requests go.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tulle.balance import Balancer, Pickable
from tulle.proxy import errors
from tulle.proxy.exchange import WAITING
from tulle.proxy.layers import ExchangeLayer
from tulle.resilience import CircuitBreaker, HealthState, RetryBudget, RetryPolicy
from tulle.telemetry.metrics import ResponseStats, ServiceCounters
from tulle.upstream.pool import EndpointPool

if TYPE_CHECKING:
    from tulle.config.schema_policy import Limits, LoadBalancer
    from tulle.proxy.exchange import Exchange
    from tulle.proxy.http_routes import RouteTable


@dataclass(frozen=True, slots=True)
class TargetTimeouts:
    """The timeouts a request to this target runs under, in seconds (None: no limit)."""

    request: float | None
    connect: float
    per_try: float | None = None


class Endpoint(Pickable):
    """One address of a service, as the balancer and the request path see it."""

    __slots__ = ("breaker", "ejected", "ejections", "failed_tries", "health", "pool",
                 "stats")

    def __init__(
        self, pool: EndpointPool, weight: int, zone: str | None, stats: ResponseStats
    ) -> None:
        super().__init__(f"{pool.host}:{pool.port}", weight, zone)
        self.pool = pool
        self.stats = stats
        self.breaker: CircuitBreaker | None = None
        self.health: HealthState | None = None
        self.ejected = False
        self.ejections = 0
        self.failed_tries = 0  # tries that failed here and were retried elsewhere

    @property
    def pickable(self) -> bool:
        breaker = self.breaker
        return (
            self.pool.reachable
            and (breaker is None or breaker.admits)
            and not self.ejected
            and (self.health is None or self.health.healthy)
        )

    @property
    def state(self) -> str:
        """One word for the dashboard and ``/endpoints``."""
        if not self.pool.reachable:
            return "unreachable"
        if self.health is not None and not self.health.healthy:
            return "unhealthy"
        if self.ejected:
            return "ejected"
        if self.breaker is not None and self.breaker.state == "open":
            return "open-circuit"
        if self.breaker is not None and self.breaker.state == "probing":
            return "probing"
        return "active"

    def describe(self) -> dict[str, object]:
        breaker = self.breaker
        return {
            "address": self.address,
            "weight": self.weight,
            "zone": self.zone,
            "state": self.state,
            "inFlight": self.in_flight,
            "idleConnections": self.pool.idle_count,
            "breaker": None if breaker is None else {
                "state": breaker.state,
                "consecutiveFailures": breaker.failures,
                "opened": breaker.opened,
            },
            "ejected": self.ejected,
            "ejections": self.ejections,
            "failedTriesRetried": self.failed_tries,
            "healthy": None if self.health is None else self.health.healthy,
        }


class ServiceTarget:
    """A service: endpoints, balancer, timeouts, failover policy and stats."""

    __slots__ = ("_loop", "_waiting", "balancer", "budget", "counters", "endpoints", "limits",
                 "load_balancer", "name", "namespace", "protocol", "requests_per_endpoint",
                 "retry_policy", "routes", "stack", "stats", "timeouts")

    def __init__(
        self,
        name: str,
        namespace: str,
        load_balancer: LoadBalancer,
        balancer: Balancer[Endpoint],
        timeouts: TargetTimeouts,
        stats: ResponseStats,
        counters: ServiceCounters,
        budget: RetryBudget,
        loop: asyncio.AbstractEventLoop,
        limits: Limits,
        protocol: str = "http",
    ) -> None:
        self._loop = loop
        self.name = name
        self.protocol = protocol  # what its endpoints speak: http, http2, grpc (tcp: opaque)
        self.namespace = namespace
        self.load_balancer = load_balancer  # the settings the balancer was made from
        self.balancer = balancer
        self.timeouts = timeouts
        self.stats = stats  # for the answers the proxy gives itself (no endpoint)
        self.counters = counters
        self.budget = budget
        self.retry_policy: RetryPolicy | None = None
        self.routes: RouteTable | None = None  # HTTPRoutes whose parent is this service
        self.limits = limits
        # limits.requests_per_endpoint as a plain int: every request reads it (set_limits)
        self.requests_per_endpoint: int = limits.requests_per_endpoint
        self.endpoints: tuple[Endpoint, ...] = ()
        # The request path of this target, built with it (`tulle.proxy.outbound`).
        self.stack: ExchangeLayer = _unbuilt
        self._waiting: deque[_Waiting] = deque()

    @property
    def speaks_h2(self) -> bool:
        """Its endpoints are sent HTTP/2 (h2c), whatever the client spoke."""
        return self.protocol in ("http2", "grpc")

    @property
    def key(self) -> str:
        return f"{self.name}.{self.namespace}"

    def set_limits(self, limits: Limits) -> None:
        """The service's ``limits`` (from its configuration)."""
        self.limits = limits
        self.requests_per_endpoint = limits.requests_per_endpoint

    def detach(self) -> None:
        """This target left the configuration: stop hearing from its endpoints' pools."""
        for endpoint in self.endpoints:
            endpoint.pool.watchers.discard(self.refresh)

    def set_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        for endpoint in self.endpoints:
            endpoint.pool.watchers.discard(self.refresh)
        self.endpoints = tuple(endpoints)
        for endpoint in self.endpoints:
            endpoint.pool.watchers.add(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """An endpoint's availability changed: update the balancer, wake waiters."""
        pickable = [e for e in self.endpoints if e.pickable]
        self.balancer.update(pickable)
        if pickable and self._waiting:
            # Wake from a snapshot: a woken request that finds nothing pickable
            # (a probe slot just taken) parks again in the new queue, not in this one.
            waiting, self._waiting = self._waiting, deque()
            for parked in waiting:
                parked.give_up.cancel()
                exchange = parked.exchange
                if exchange.state == WAITING:
                    exchange.resume()
                    parked.resume.call(exchange)

    # -- fail fast: waiting briefly for an endpoint --

    def wait_for_endpoint(self, exchange: Exchange, resume: ExchangeLayer) -> bool:
        """Park ``exchange`` until an endpoint is pickable (then ``resume(exchange)``), or
        ``failFastAfter`` passes (then 503); False when too many wait already."""
        if len(self._waiting) >= self.limits.pending_requests:
            self.counters.load_shed += 1
            return False
        self.counters.fail_fast_waits += 1
        exchange.park()
        give_up = self._loop.call_later(self.limits.fail_fast_after, self._gave_up, exchange)
        self._waiting.append(_Waiting(exchange, resume, give_up))
        return True

    def _gave_up(self, exchange: Exchange) -> None:
        if exchange.state == WAITING:
            exchange.fail(errors.FAIL_FAST, service=self.key)

    def forget_waiting(self, exchange: Exchange) -> None:
        for index, parked in enumerate(self._waiting):
            if parked.exchange is exchange:
                parked.give_up.cancel()
                del self._waiting[index]
                return

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "loadBalancer": self.load_balancer.algorithm,
            "waiting": len(self._waiting),
            "endpoints": [endpoint.describe() for endpoint in self.endpoints],
        }


@dataclass(slots=True)
class _Waiting:
    """A request parked until an endpoint of its target is pickable."""

    exchange: Exchange
    resume: ExchangeLayer
    give_up: asyncio.TimerHandle


class _Unbuilt(ExchangeLayer):
    """The stack of a target not yet built: a bug if it is ever called."""

    __slots__ = ()

    def call(self, exchange: Exchange) -> None:
        raise RuntimeError("a target's stack is built before it serves (tulle.proxy.outbound)")


_unbuilt: Final = _Unbuilt()
