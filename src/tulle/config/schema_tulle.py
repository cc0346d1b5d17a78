"""Tulle's own kinds: ``ServiceMesh`` (mesh-wide settings) and ``MeshService``.

``tulle.dev/v1alpha1`` is the group and version both kinds are written in. A
``MeshService`` is a service with its endpoints and policy spelled out, for use off
Kubernetes; on Kubernetes, EndpointSlices can fill its endpoints instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tulle.config.addresses import Address, ListenAddress
from tulle.config.schema_common import ObjectMeta, Port, Schema, ServiceMeta, StrictInt
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
PROTOCOLS: tuple[str, ...] = ("http", "grpc", "tcp")
Protocol = Literal[PROTOCOLS]  # type: ignore[valid-type]

# Ports from DESIGN.md: outbound 4140, inbound 4143, admin 4191 (as Linkerd).
DEFAULT_OUTBOUND = Address("127.0.0.1", 4140)
DEFAULT_INBOUND = Address("127.0.0.1", 4143)
DEFAULT_ADMIN = Address("127.0.0.1", 4191)


class ProxyListeners(Schema):
    """Where the proxy listens, and the local app its inbound side forwards to."""

    outbound: ListenAddress = DEFAULT_OUTBOUND
    inbound: ListenAddress = DEFAULT_INBOUND
    admin: ListenAddress = DEFAULT_ADMIN
    app: Address | None = None


class MeshDefaults(Schema):
    """Policy every service gets unless it says otherwise."""

    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retries: RetryDefaults = Field(default_factory=RetryDefaults)
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    limits: Limits = Field(default_factory=Limits)


class MeshSpec(Schema):
    """Mesh-wide settings. ``zone`` is this proxy's zone (``TULLE_ZONE`` when absent)."""

    zone: str | None = None
    proxy: ProxyListeners = Field(default_factory=ProxyListeners)
    defaults: MeshDefaults = Field(default_factory=MeshDefaults)


class ServiceMesh(Schema):
    api_version: Literal["tulle.dev/v1alpha1"]
    kind: Literal["ServiceMesh"]
    metadata: ObjectMeta
    spec: MeshSpec = Field(default_factory=MeshSpec)


class StaticEndpoint(Schema):
    address: Address
    weight: StrictInt = Field(1, ge=1)
    zone: str | None = None


class MeshServiceSpec(Schema):
    protocol: Protocol = "http"
    port: Port = 80
    endpoints: tuple[StaticEndpoint, ...] = ()
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
