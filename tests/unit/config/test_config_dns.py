"""``MeshService.spec.dns``: what loads, the defaults, and each mistake with its field path."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_testkit import load_text, problems

SERVICE = """
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {{name: api}}
spec:
  port: 443
{spec}
"""


def service(*lines: str) -> str:
    return SERVICE.format(spec="".join(f"  {line}\n" for line in lines))


def test_a_dns_service_loads_with_its_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, service("dns: {name: api.example.com}"))
    api = config.services["api.default"]
    assert api.endpoints == ()
    assert api.dns is not None
    assert (api.dns.name, api.dns.type, api.dns.port, api.dns.server) == (
        "api.example.com", "A", None, None)
    assert (api.dns.min_ttl, api.dns.max_ttl) == (1.0, 300.0)
    assert api.to_dict()["dns"] == {"name": "api.example.com", "type": "A", "port": None,
                                    "server": None, "minTtl": "1s", "maxTtl": "5m"}


def test_every_dns_field(tmp_path: Path) -> None:
    config = load_text(tmp_path, service(
        'dns: {name: _https._tcp.Api.Example.com., type: SRV, server: "127.0.0.1:5353", '
        "minTtl: 5s, maxTtl: 1m}"))
    dns = config.services["api.default"].dns
    assert dns is not None
    assert (dns.name, dns.type, str(dns.server), dns.min_ttl, dns.max_ttl) == (
        "_https._tcp.Api.Example.com", "SRV", "127.0.0.1:5353", 5.0, 60.0)


def test_a_static_service_has_no_dns(tmp_path: Path) -> None:
    config = load_text(tmp_path, service("endpoints: [{address: '127.0.0.1:9001'}]"))
    assert config.services["api.default"].dns is None
    assert "dns" not in config.services["api.default"].to_dict()


PREFIX = 'document 1 (MeshService "api"): '


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["endpoints: [{address: '127.0.0.1:9001'}]", "dns: {name: api.example.com}"],
         "spec.dns: expected either spec.endpoints or spec.dns, not both (endpoints are "
         "listed statically or looked up in DNS)"),
        (["dns: {name: api.example.com, type: MX}"],
         'spec.dns.type: expected one of A, AAAA or SRV, got "MX"'),
        (["dns: {name: 'bad name', type: A}"],
         "spec.dns.name: expected a DNS name to look up (labels of letters, digits, '-' and "
         "'_' separated by '.', at most 253 characters), got \"bad name\""),
        (["dns: {name: _api._tcp.example.com, type: SRV, port: 443}"],
         "spec.dns: port does not apply to type SRV (the SRV records give the ports)"),
        (["dns: {name: api.example.com, minTtl: 1m, maxTtl: 10s}"],
         "spec.dns: expected minTtl <= maxTtl, got minTtl 1m and maxTtl 10s"),
        (["dns: {name: api.example.com, minTtl: 0s}"],
         "spec.dns.minTtl: expected a duration greater than zero, got 0s"),
        (["dns: {name: api.example.com, server: 127.0.0.1}"],
         'spec.dns.server: expected an address host:port (the port is missing), '
         'got "127.0.0.1"'),
        (["dns: {name: api.example.com, port: 0}"],
         "spec.dns.port: expected a number at least 1, got 0"),
        (["dns: {name: api.example.com, ttl: 5s}"],
         "spec.dns.ttl: unknown field"),
        (["dns: {type: A}"], "spec.dns.name: required field is missing"),
    ],
)
def test_dns_mistakes_name_the_field(tmp_path: Path, lines: list[str], expected: str) -> None:
    assert problems(tmp_path, service(*lines)) == [PREFIX + expected]


def test_an_endpoint_slice_cannot_add_to_a_dns_service(tmp_path: Path) -> None:
    text = service("dns: {name: api.example.com}") + """---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-1
  labels: {kubernetes.io/service-name: api}
addressType: IPv4
ports: [{port: 443}]
endpoints: [{addresses: [10.0.0.1]}]
"""
    assert problems(tmp_path, text) == [
        'document 2 (EndpointSlice "api-1"): metadata.labels["kubernetes.io/service-name"]: '
        'service "api.default" takes its endpoints from DNS (spec.dns); an EndpointSlice '
        "cannot add to them"]
