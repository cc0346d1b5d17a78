"""The effective configuration: what the proxy and control plane read.

Built once by ``load`` with every default applied and every reference checked, then
never changed: the classes are frozen, and mappings are read-only views. Per-service
policy objects are the schema models themselves (also frozen), already merged with
the mesh defaults; in a proxy process they are their records (`tulle.config.records`),
so this module imports no schema at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tulle.config.addresses import Address
from tulle.config.records import dump

if TYPE_CHECKING:
    from tulle.config.schema_authorization import (
        AuthorizationPolicy,
        HTTPLocalRateLimitPolicy,
        MeshTLSAuthentication,
        NetworkAuthentication,
    )
    from tulle.config.schema_authorization import Server as PolicyServer
    from tulle.config.schema_common import Schema
    from tulle.config.schema_gateway import HTTPRoute
    from tulle.config.schema_policy import (
        CircuitBreaker,
        HealthCheck,
        Limits,
        LoadBalancer,
        OutlierDetection,
        Retries,
        Timeouts,
    )
    from tulle.config.schema_tulle import DnsDiscovery, MeshSpec


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place a service can be reached, with its balancing weight and zone."""

    host: str
    port: int
    weight: int = 1
    zone: str | None = None
    # A meshed endpoint: the SPIFFE ID its proxy presents (mTLS); None for plaintext.
    identity: str | None = None

    @property
    def address(self) -> str:
        """``"host:port"`` (IPv6 in brackets)."""
        return str(Address(self.host, self.port))

    def to_dict(self) -> dict[str, Any]:
        rendered: dict[str, Any] = {"address": self.address, "weight": self.weight,
                                    "zone": self.zone}
        if self.identity is not None:
            rendered["identity"] = self.identity
        return rendered


def _default_limits() -> Limits:
    """``Limits()``, the schema loaded only when a Service is made without limits."""
    from tulle.config.schema_policy import Limits

    return Limits()


@dataclass(frozen=True, slots=True)
class Service:
    """A service with its endpoints and effective policy (mesh defaults applied)."""

    name: str
    namespace: str
    protocol: str
    port: int
    endpoints: tuple[Endpoint, ...]
    load_balancer: LoadBalancer
    timeouts: Timeouts
    retries: Retries | None = None
    circuit_breaker: CircuitBreaker | None = None
    outlier_detection: OutlierDetection | None = None
    health_check: HealthCheck | None = None
    limits: Limits = field(default_factory=_default_limits)
    dns: DnsDiscovery | None = None  # endpoints come from DNS (tulle.discovery.dns_source)
    # The virtual IP clients dial (a Kubernetes Service's spec.clusterIP); a proxy whose
    # traffic is captured by iptables maps connections to (cluster_ip, port) to this service.
    cluster_ip: str | None = None

    @property
    def key(self) -> str:
        """``"name.namespace"``, the key of ``Config.services``."""
        return f"{self.name}.{self.namespace}"

    def to_dict(self) -> dict[str, Any]:
        def dump_policy(policy: Any) -> Any:
            return None if policy is None else dump(policy)

        rendered: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "protocol": self.protocol,
            "port": self.port,
            "endpoints": [endpoint.to_dict() for endpoint in self.endpoints],
            "loadBalancer": dump_policy(self.load_balancer),
            "timeouts": dump_policy(self.timeouts),
            "retries": dump_policy(self.retries),
            "circuitBreaker": dump_policy(self.circuit_breaker),
            "outlierDetection": dump_policy(self.outlier_detection),
            "healthCheck": dump_policy(self.health_check),
            "limits": dump_policy(self.limits),
        }
        if self.dns is not None:
            rendered["dns"] = dump_policy(self.dns)
        if self.cluster_ip is not None:
            rendered["clusterIP"] = self.cluster_ip
        return rendered


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The inbound policy objects of a configuration (``policy.tulle.dev`` kinds), each
    kind in load order. Which of them apply to a proxy is `tulle.policy`'s to decide."""

    servers: tuple[PolicyServer, ...] = ()
    authorizations: tuple[AuthorizationPolicy, ...] = ()
    mesh_tls: tuple[MeshTLSAuthentication, ...] = ()
    networks: tuple[NetworkAuthentication, ...] = ()
    rate_limits: tuple[HTTPLocalRateLimitPolicy, ...] = ()

    @classmethod
    def of(cls, items: Iterable[Schema]) -> PolicySet:
        """The policy objects among ``items``, grouped by kind."""
        from tulle.config.schema_authorization import (
            AuthorizationPolicy,
            HTTPLocalRateLimitPolicy,
            MeshTLSAuthentication,
            NetworkAuthentication,
        )
        from tulle.config.schema_authorization import Server as PolicyServer

        items = list(items)
        return cls(*(tuple(item for item in items if isinstance(item, kind)) for kind in (
            PolicyServer, AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication,
            HTTPLocalRateLimitPolicy)))

    def __iter__(self) -> Iterator[Schema]:
        yield from self.servers
        yield from self.authorizations
        yield from self.mesh_tls
        yield from self.networks
        yield from self.rate_limits

    def to_list(self) -> list[dict[str, Any]]:
        return [dump(item, exclude_none=True) for item in self]


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration: mesh settings, services by ``"name.namespace"``, routes,
    and inbound policy."""

    sources: tuple[Path, ...]
    mesh: MeshSpec
    services: Mapping[str, Service]
    routes: tuple[HTTPRoute, ...]
    policy: PolicySet = PolicySet()

    def __reduce__(self) -> tuple[Any, ...]:
        # The services' read-only view is pickled as the dict it shows.
        return (_config, (self.sources, self.mesh, dict(self.services), self.routes,
                          self.policy))

    def to_dict(self) -> dict[str, Any]:
        """The effective configuration, camelCase and JSON/YAML-safe (durations as "10s")."""
        return {
            "sources": [str(source) for source in self.sources],
            "mesh": dump(self.mesh),
            "services": [service.to_dict() for service in self.services.values()],
            "routes": [
                {
                    "name": route.name,
                    "namespace": route.namespace,
                    **dump(route.spec),
                }
                for route in self.routes
            ],
            "policy": self.policy.to_list(),
        }


def _config(sources: tuple[Path, ...], mesh: MeshSpec, services: dict[str, Service],
            routes: tuple[HTTPRoute, ...], policy: PolicySet) -> Config:
    return Config(sources, mesh, MappingProxyType(services), routes, policy)
