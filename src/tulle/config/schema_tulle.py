"""Tulle's own kinds: ``ServiceMesh`` (mesh-wide settings) and ``MeshService``.

``tulle.dev/v1alpha1`` is the group and version both kinds are written in. A
``MeshService`` is a service with its endpoints and policy spelled out, for use off
Kubernetes; on Kubernetes, EndpointSlices can fill its endpoints instead.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from tulle.config.addresses import Address, ListenAddress
from tulle.config.durations import format_duration
from tulle.config.problems import describe
from tulle.config.schema_authorization import CLUSTER_NETWORKS, Cidr, DefaultPolicy
from tulle.config.schema_common import (
    DnsLabel,
    ObjectMeta,
    Port,
    PositiveDuration,
    Schema,
    ServiceMeta,
    SpiffeId,
    StrictInt,
)
from tulle.config.schema_kubernetes import ClusterIP
from tulle.config.schema_policy import (
    CircuitBreaker,
    HealthCheck,
    Limits,
    LoadBalancer,
    OutlierDetection,
    Retries,
    RetryDefaults,
    Timeouts,
)

TULLE_API_VERSION = "tulle.dev/v1alpha1"
# What the service's endpoints speak: http (HTTP/1.1; HTTP/2 clients are translated),
# http2 (h2c with prior knowledge; HTTP/1.1 clients are translated), grpc (h2c, and
# responses classified by grpc-status), tcp (opaque). docs/protocols.md.
PROTOCOLS: tuple[str, ...] = ("http", "http2", "grpc", "tcp")
Protocol = Literal[PROTOCOLS]  # type: ignore[valid-type]

# Ports from DESIGN.md: outbound 4140, inbound 4143, admin 4191 (as Linkerd).
DEFAULT_OUTBOUND = Address("127.0.0.1", 4140)
DEFAULT_INBOUND = Address("127.0.0.1", 4143)
DEFAULT_ADMIN = Address("127.0.0.1", 4191)


class Probe(Schema):
    """A kubelet probe of the application (an HTTP GET): allowed by default policy."""

    port: Port
    path: str = Field(pattern=r"^/")


class Workload(Schema):
    """The workload this proxy fronts, as inbound policy selects it (a Server's namespace,
    podSelector and named port). On Kubernetes the injected proxy learns it from its pod;
    off Kubernetes it is written here."""

    namespace: DnsLabel = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    ports: dict[str, Port] = Field(default_factory=dict)  # container port names
    probes: tuple[Probe, ...] = ()


class ProxyListeners(Schema):
    """Where the proxy listens, and the local app its inbound side forwards to."""

    outbound: ListenAddress = DEFAULT_OUTBOUND
    inbound: ListenAddress = DEFAULT_INBOUND
    admin: ListenAddress = DEFAULT_ADMIN
    app: Address | None = None
    workload: Workload = Field(default_factory=Workload)


class MeshDefaults(Schema):
    """Policy every service gets unless it says otherwise."""

    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retries: RetryDefaults = Field(default_factory=RetryDefaults)
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    limits: Limits = Field(default_factory=Limits)


def _egress_host(value: str) -> str:
    """``*``, a DNS name, ``*.`` and a DNS suffix, an IP address, or a CIDR block."""
    host = value.strip().lower()
    if host == "*":
        return host
    host = host.removesuffix(".")
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_network(host, strict=False))
    name = host[2:] if host.startswith("*.") else host
    if name and len(name) <= 253 and all(
            _DNS_QUERY_LABEL.fullmatch(label) for label in name.split(".")):
        return host
    raise PydanticCustomError(
        "egress_host",
        "expected a host name, *.domain, an IP address, a CIDR block (10.0.0.0/8) or *, "
        f"got {describe(value)}",
    )


class EgressRule(Schema):
    """Destinations outside the mesh that ``CONNECT`` may tunnel to: ``host`` (a name,
    ``*.example.com`` for its subdomains, an IP address or CIDR block matched against an
    IP target, or ``*``) on ``ports`` (every port when empty)."""

    host: Annotated[str, AfterValidator(_egress_host)]
    ports: tuple[Port, ...] = ()


class Egress(Schema):
    """Traffic the proxy sends outside the mesh on a client's request. ``allow`` lists the
    ``CONNECT`` targets that are not mesh services and may still be tunnelled to; any
    other is refused (403). Mesh services are always reachable."""

    allow: tuple[EgressRule, ...] = ()


class MeshSpec(Schema):
    """Mesh-wide settings. ``zone`` is this proxy's zone (``TULLE_ZONE`` when absent).
    ``defaultInboundPolicy`` is what inbound traffic to a port no Server selects gets;
    ``clusterNetworks`` are the addresses the ``cluster-*`` policies admit."""

    zone: str | None = None
    proxy: ProxyListeners = Field(default_factory=ProxyListeners)
    defaults: MeshDefaults = Field(default_factory=MeshDefaults)
    egress: Egress = Field(default_factory=Egress)
    default_inbound_policy: DefaultPolicy = "all-unauthenticated"
    cluster_networks: tuple[Cidr, ...] = CLUSTER_NETWORKS


class ServiceMesh(Schema):
    api_version: Literal["tulle.dev/v1alpha1"]
    kind: Literal["ServiceMesh"]
    metadata: ObjectMeta
    spec: MeshSpec = Field(default_factory=MeshSpec)


class StaticEndpoint(Schema):
    address: Address
    weight: StrictInt = Field(1, ge=1)
    zone: str | None = None
    # The endpoint is a meshed proxy's inbound side that presents this identity: the
    # connection to it is mutual TLS, and its certificate must name this identity.
    identity: SpiffeId | None = None


DNS_RECORD_TYPES: tuple[str, ...] = ("A", "AAAA", "SRV")
DnsRecordType = Literal[DNS_RECORD_TYPES]  # type: ignore[valid-type]
# Labels of letters, digits, '-' and '_' (SRV names: _https._tcp.example.com).
_DNS_QUERY_LABEL = re.compile(r"[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?")


def _dns_query_name(value: str) -> str:
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253 or not all(
            _DNS_QUERY_LABEL.fullmatch(label) for label in name.split(".")):
        raise PydanticCustomError(
            "dns_name",
            "expected a DNS name to look up (labels of letters, digits, '-' and '_' "
            f"separated by '.', at most 253 characters), got {describe(value)}",
        )
    return name


class DnsDiscovery(Schema):
    """Endpoints from DNS, re-resolved when the answer's TTL runs out.

    ``A``/``AAAA``: every address at ``port`` (the service's ``port`` when absent).
    ``SRV``: each record's target and port, weighted, lowest priority only.
    ``server`` is the resolver (``host:port``; default: the first nameserver in
    /etc/resolv.conf). The TTL is clamped to ``[minTtl, maxTtl]``.
    """

    name: Annotated[str, AfterValidator(_dns_query_name)]
    type: DnsRecordType = "A"
    port: Port | None = None
    server: Address | None = None
    min_ttl: PositiveDuration = 1.0
    max_ttl: PositiveDuration = 300.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.type == "SRV" and self.port is not None:
            raise PydanticCustomError(
                "dns", "port does not apply to type SRV (the SRV records give the ports)")
        if self.min_ttl > self.max_ttl:
            raise PydanticCustomError(
                "dns", f"expected minTtl <= maxTtl, got minTtl {format_duration(self.min_ttl)} "
                       f"and maxTtl {format_duration(self.max_ttl)}")
        return self


class MeshServiceSpec(Schema):
    protocol: Protocol = "http"
    port: Port = 80
    cluster_ip: ClusterIP | None = Field(None, alias="clusterIP")
    endpoints: tuple[StaticEndpoint, ...] = ()
    dns: DnsDiscovery | None = None
    load_balancer: LoadBalancer | None = None
    timeouts: Timeouts | None = None
    retries: Retries | None = None
    circuit_breaker: CircuitBreaker | None = None
    outlier_detection: OutlierDetection | None = None
    health_check: HealthCheck | None = None
    limits: Limits | None = None


class MeshService(Schema):
    api_version: Literal["tulle.dev/v1alpha1"]
    kind: Literal["MeshService"]
    metadata: ServiceMeta
    spec: MeshServiceSpec = Field(default_factory=MeshServiceSpec)
