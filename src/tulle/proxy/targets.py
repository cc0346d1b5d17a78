"""What a request can be sent to: services (`ServiceTarget`) and their `Endpoint`s.

Both are built once per configuration and kept across reloads where they stay
the same, so that what an endpoint has learned (in-flight count, and later the
balancers' latency estimates) survives a reload, and in-flight requests finish
on the objects they started with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tulle.balance import Balancer
from tulle.config import LoadBalancer
from tulle.proxy.pool import EndpointPool
from tulle.telemetry.metrics import ResponseStats


@dataclass(frozen=True, slots=True)
class TargetTimeouts:
    """The timeouts a request to this target runs under, in seconds (None: no limit)."""

    request: float | None
    connect: float


class Endpoint:
    """One address of a service, as the balancer and the request path see it."""

    __slots__ = ("address", "in_flight", "pool", "stats", "weight", "zone")

    def __init__(
        self, pool: EndpointPool, weight: int, zone: str | None, stats: ResponseStats
    ) -> None:
        self.pool = pool
        self.address = f"{pool.host}:{pool.port}"
        self.weight = weight
        self.zone = zone
        self.stats = stats
        self.in_flight = 0

    def describe(self) -> dict[str, object]:
        return {
            "address": self.address,
            "weight": self.weight,
            "zone": self.zone,
            "inFlight": self.in_flight,
            "idleConnections": self.pool.idle_count,
            "state": "active",
        }


class ServiceTarget:
    """A service: its endpoints, its balancer, its timeouts and its stats."""

    __slots__ = ("balancer", "endpoints", "load_balancer", "name", "namespace", "stats",
                 "timeouts")

    def __init__(
        self,
        name: str,
        namespace: str,
        load_balancer: LoadBalancer,
        balancer: Balancer,
        timeouts: TargetTimeouts,
        stats: ResponseStats,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.load_balancer = load_balancer  # the settings the balancer was made from
        self.balancer = balancer
        self.timeouts = timeouts
        self.stats = stats  # for the answers the proxy gives itself (no endpoint)
        self.endpoints: tuple[Endpoint, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}.{self.namespace}"

    def set_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = tuple(endpoints)
        self.balancer.update(self.endpoints)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "loadBalancer": self.load_balancer.algorithm,
            "endpoints": [endpoint.describe() for endpoint in self.endpoints],
        }
