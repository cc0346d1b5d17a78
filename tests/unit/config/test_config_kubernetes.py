"""A Kubernetes Service plus its EndpointSlices becomes one service with mesh defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_testkit import load_text, problems

from tulle.config import Endpoint

SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: shop
  uid: 9a1c
  creationTimestamp: 2024-01-01T00:00:00Z
  resourceVersion: "7"
  labels: {app: api}
spec:
  type: ClusterIP
  clusterIP: 10.0.0.10
  selector: {app: api}
  ports:
    - {name: http, port: 8080, targetPort: http, protocol: TCP, appProtocol: grpc}
"""


def slice_v1(endpoints: str, ports: str = "[{name: http, port: 9101}, {name: admin, port: 9}]",
             service: str = "api") -> str:
    return f"""
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service}-x1
  namespace: shop
  labels: {{kubernetes.io/service-name: {service}}}
addressType: IPv4
ports: {ports}
endpoints: {endpoints}
"""


def test_service_and_v1_slices(tmp_path: Path) -> None:
    config = load_text(tmp_path, SERVICE + slice_v1(
        "[{addresses: [10.0.0.1, 10.0.0.2], conditions: {ready: true}, zone: zone-a},"
        " {addresses: [10.0.0.3], conditions: {ready: false}, zone: zone-b},"
        " {addresses: [10.0.0.4], nodeName: n1}]"
    ))
    api = config.services["api.shop"]
    assert (api.name, api.namespace, api.port, api.protocol) == ("api", "shop", 8080, "grpc")
    assert api.endpoints == (
        Endpoint("10.0.0.1", 9101, 1, "zone-a"),
        Endpoint("10.0.0.2", 9101, 1, "zone-a"),
        Endpoint("10.0.0.4", 9101, 1, None),
    )
    assert api.timeouts == config.mesh.defaults.timeouts
    assert api.load_balancer == config.mesh.defaults.load_balancer
    assert api.retries is not None and api.retries.methods[0] == "GET"  # the default policy


def test_v1beta1_slice_zone_comes_from_topology(tmp_path: Path) -> None:
    config = load_text(tmp_path, SERVICE + """
---
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata: {name: api-old, namespace: shop, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, port: 9201}]
endpoints:
  - addresses: [10.0.1.1]
    topology: {topology.kubernetes.io/zone: zone-z, kubernetes.io/hostname: node-1}
  - addresses: [10.0.1.2]
""")
    assert config.services["api.shop"].endpoints == (
        Endpoint("10.0.1.1", 9201, 1, "zone-z"),
        Endpoint("10.0.1.2", 9201, 1, None),
    )


def test_v1beta1_slice_refuses_v1_zone_field(tmp_path: Path) -> None:
    lines = problems(tmp_path, """
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata: {name: s, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1], zone: a}]
""")
    assert lines[0].startswith('document 1 (EndpointSlice "s"): endpoints[0].zone: unknown field')


def test_only_slice_port_is_used_whatever_its_name(tmp_path: Path) -> None:
    config = load_text(tmp_path, SERVICE + slice_v1("[{addresses: [10.0.0.1]}]",
                                                     ports="[{name: web, port: 7000}]"))
    assert config.services["api.shop"].endpoints == (Endpoint("10.0.0.1", 7000),)


def test_slices_fill_a_mesh_service_and_duplicates_merge(tmp_path: Path) -> None:
    config = load_text(tmp_path, """
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: api, namespace: shop}
spec: {port: 8080, timeouts: {request: 1s}}
""" + slice_v1("[{addresses: [10.0.0.1]}]", ports="[{port: 9101}]")
      + slice_v1("[{addresses: [10.0.0.1, 10.0.0.2]}]", ports="[{port: 9101}]"))
    api = config.services["api.shop"]
    assert [e.address for e in api.endpoints] == ["10.0.0.1:9101", "10.0.0.2:9101"]
    assert api.timeouts.request == 1.0


def test_ipv6_and_fqdn_slices(tmp_path: Path) -> None:
    config = load_text(tmp_path, SERVICE + """
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: v6, namespace: shop, labels: {kubernetes.io/service-name: api}}
addressType: IPv6
ports: [{name: http, port: 9101}]
endpoints: [{addresses: ["fd00::1"]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns, namespace: shop, labels: {kubernetes.io/service-name: api}}
addressType: FQDN
ports: [{name: http, port: 9101}]
endpoints: [{addresses: [api-0.example.com]}]
""")
    assert [e.address for e in config.services["api.shop"].endpoints] == [
        "[fd00::1]:9101", "api-0.example.com:9101"
    ]


@pytest.mark.parametrize(
    ("manifests", "expected"),
    [
        (slice_v1("[{addresses: [10.0.0.1]}]", service="ghost"),
         'document 2 (EndpointSlice "ghost-x1"): metadata.labels["kubernetes.io/service-name"]: '
         'expected the name of a known service, got "ghost" (no Service or MeshService "ghost" '
         'in namespace "shop"; known: api.shop)'),
        (slice_v1("[{addresses: [10.0.0.1]}]", ports="[{name: a, port: 1}, {name: b, port: 2}]"),
         'document 2 (EndpointSlice "api-x1"): ports: expected a port named "http" (the port '
         'name of service "api") or exactly one port, got "a", "b"'),
        (slice_v1("[{addresses: [10.0.0.1]}]", ports="[]"),
         'document 2 (EndpointSlice "api-x1"): ports: expected a port named "http" (the port '
         'name of service "api") or exactly one port, got no ports'),
        (slice_v1("[{addresses: [10.0.0.1]}]", ports="[{name: http}]"),
         'document 2 (EndpointSlice "api-x1"): ports[0].port: required field is missing'),
        (slice_v1("[{addresses: [10.0.0.1]}]", ports="[{name: http, port: 70000}]"),
         'document 2 (EndpointSlice "api-x1"): ports[0].port: expected a number at most 65535, '
         "got 70000"),
        (slice_v1("[{addresses: [10.0.0.300]}]"),
         'document 2 (EndpointSlice "api-x1"): endpoints[0].addresses[0]: expected an IPv4 '
         'address, got "10.0.0.300"'),
        (slice_v1("[{addresses: []}]"),
         'document 2 (EndpointSlice "api-x1"): endpoints[0].addresses: expected at least 1 item'),
        ("""
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lost, namespace: shop}
addressType: IPv4
endpoints: []
""", 'document 2 (EndpointSlice "lost"): metadata.labels["kubernetes.io/service-name"]: '
     "required label is missing (the name of the Service this slice serves)"),
    ],
)
def test_slice_errors(tmp_path: Path, manifests: str, expected: str) -> None:
    assert problems(tmp_path, SERVICE + manifests) == [expected]


def test_service_errors(tmp_path: Path) -> None:
    lines = problems(tmp_path, """
apiVersion: v1
kind: Service
metadata: {name: dns}
spec: {ports: [{port: 53, protocol: UDP}]}
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec: {ports: []}
---
apiVersion: v1
kind: Service
metadata: {name: typo}
spec: {ports: [{port: 80}], selectr: {}}
""")
    assert lines == [
        'document 1 (Service "dns"): spec.ports[0].protocol: expected TCP (Tulle proxies TCP '
        'only), got "UDP"',
        'document 2 (Service "empty"): spec.ports: expected at least 1 item',
        'document 3 (Service "typo"): spec.selectr: unknown field (expected one of: ports, '
        "selector, type, clusterIP, clusterIPs, externalIPs, externalName, "
        "externalTrafficPolicy, internalTrafficPolicy, healthCheckNodePort, ipFamilies, "
        "ipFamilyPolicy, loadBalancerIP, loadBalancerSourceRanges, loadBalancerClass, "
        "allocateLoadBalancerNodePorts, publishNotReadyAddresses, sessionAffinity, "
        "sessionAffinityConfig, trafficDistribution)",
    ]


def test_cluster_ip_is_read_from_services_and_mesh_services(tmp_path: Path) -> None:
    config = load_text(tmp_path, SERVICE + """
---
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: web}
spec: {clusterIP: "fd00::0:50", endpoints: [{address: "127.0.0.1:9001"}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec: {clusterIP: None, ports: [{port: 80}]}
""")
    assert config.services["api.shop"].cluster_ip == "10.0.0.10"
    assert config.services["web.default"].cluster_ip == "fd00::50"  # canonical form
    assert config.services["headless.default"].cluster_ip is None


def test_a_malformed_cluster_ip_names_its_field(tmp_path: Path) -> None:
    text = SERVICE.replace("clusterIP: 10.0.0.10", "clusterIP: 10.0.0.300")
    assert problems(tmp_path, text) == [
        'document 1 (Service "api"): spec.clusterIP: expected an IP address (or "None" for a '
        'headless service), got "10.0.0.300"']
