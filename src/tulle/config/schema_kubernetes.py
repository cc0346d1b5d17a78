"""Kubernetes ``v1`` ``Service`` and ``discovery.k8s.io`` ``EndpointSlice``, as written for
a cluster.

A manifest made for a cluster should load unchanged, so these models accept every
field Kubernetes defines for these kinds (most are ignored) and refuse only what
Kubernetes would refuse too. A Service plus the slices labelled
``kubernetes.io/service-name: <its name>`` becomes one Tulle service with the mesh
defaults (see ``tulle.config.assemble``).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from tulle.config.problems import describe
from tulle.config.schema_common import DnsLabel, ObjectMeta, Port, Schema, ServiceMeta, StrictInt

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ZONE_TOPOLOGY_KEY = "topology.kubernetes.io/zone"


HEADLESS = "None"


def _cluster_ip(value: str) -> str:
    """An IPv4 or IPv6 address in its canonical form, or "None" (a headless Service)."""
    if value in (HEADLESS, ""):
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise PydanticCustomError(
            "cluster_ip", f'expected an IP address (or "None" for a headless service), '
                          f"got {describe(value)}") from None


# The virtual address clients dial. In a cluster the API server assigns it; in manifests
# on disk it may be written, so that iptables capture works the same off Kubernetes.
ClusterIP = Annotated[str, AfterValidator(_cluster_ip)]


def cluster_ip_of(value: str | None) -> str | None:
    """The address a service is dialled at, or None (none assigned, or headless)."""
    return value if value not in (None, "", HEADLESS) else None


class ServicePort(Schema):
    name: DnsLabel | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    app_protocol: str | None = None
    port: Port
    target_port: StrictInt | str | None = None
    node_port: StrictInt | None = None


class ServiceSpec(Schema):
    ports: tuple[ServicePort, ...] = Field(min_length=1)
    # Everything below belongs to the cluster's own plumbing; accepted and ignored,
    # except clusterIP: a captured connection to it is a connection to this service.
    selector: dict[str, str] | None = None
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    cluster_ip: ClusterIP | None = Field(None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(None, alias="clusterIPs")
    external_ips: list[str] | None = Field(None, alias="externalIPs")
    external_name: str | None = None
    external_traffic_policy: str | None = None
    internal_traffic_policy: str | None = None
    health_check_node_port: StrictInt | None = None
    ip_families: list[str] | None = None
    ip_family_policy: str | None = None
    load_balancer_ip: str | None = Field(None, alias="loadBalancerIP")
    load_balancer_source_ranges: list[str] | None = None
    load_balancer_class: str | None = None
    allocate_load_balancer_node_ports: bool | None = None
    publish_not_ready_addresses: bool | None = None
    session_affinity: str | None = None
    session_affinity_config: dict[str, Any] | None = None
    traffic_distribution: str | None = None


class KubernetesService(Schema):
    api_version: Literal["v1"]
    kind: Literal["Service"]
    metadata: ServiceMeta
    spec: ServiceSpec
    status: dict[str, Any] | None = None


class EndpointConditions(Schema):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class _SliceEndpointCommon(Schema):
    addresses: tuple[str, ...] = Field(min_length=1)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    hostname: str | None = None
    target_ref: dict[str, Any] | None = None
    node_name: str | None = None
    hints: dict[str, Any] | None = None


class SliceEndpoint(_SliceEndpointCommon):
    """``discovery.k8s.io/v1``: the zone is a field of its own."""

    zone: str | None = None
    deprecated_topology: dict[str, str] | None = None

    @property
    def endpoint_zone(self) -> str | None:
        return self.zone


class SliceEndpointV1Beta1(_SliceEndpointCommon):
    """``discovery.k8s.io/v1beta1``: the zone is a topology label."""

    topology: dict[str, str] | None = None

    @property
    def endpoint_zone(self) -> str | None:
        return (self.topology or {}).get(ZONE_TOPOLOGY_KEY)


class SlicePort(Schema):
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    app_protocol: str | None = None
    port: Port | None = None


class _EndpointSliceCommon(Schema):
    kind: Literal["EndpointSlice"]
    metadata: ObjectMeta
    address_type: Literal["IPv4", "IPv6", "FQDN"]
    ports: tuple[SlicePort, ...] = ()


class EndpointSlice(_EndpointSliceCommon):
    api_version: Literal["discovery.k8s.io/v1"]
    endpoints: tuple[SliceEndpoint, ...] = ()


class EndpointSliceV1Beta1(_EndpointSliceCommon):
    api_version: Literal["discovery.k8s.io/v1beta1"]
    endpoints: tuple[SliceEndpointV1Beta1, ...] = ()
