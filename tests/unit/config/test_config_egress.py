"""Egress for CONNECT: ServiceMesh spec.egress.allow, checked at load and matched
(tulle.tcp.egress)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "config"))
from config_testkit import load_text, problems

from tulle.tcp.egress import EgressPolicy

MESH = """
apiVersion: tulle.dev/v1alpha1
kind: ServiceMesh
metadata: {{name: default}}
spec:
  egress:
    allow:
{rules}
"""


def policy(tmp_path: Path, *rules: str) -> EgressPolicy:
    text = MESH.format(rules="".join(f"      - {rule}\n" for rule in rules))
    return EgressPolicy(load_text(tmp_path, text).mesh.egress.allow)


def test_nothing_is_allowed_by_default(tmp_path: Path) -> None:
    empty = EgressPolicy(load_text(tmp_path, MESH.format(rules="      []")).mesh.egress.allow)
    assert not empty.allows("example.com", 443)


@pytest.mark.parametrize(("rule", "allowed", "refused"), [
    ("{host: Example.COM., ports: [443]}", [("example.com", 443), ("EXAMPLE.com.", 443)],
     [("example.com", 80), ("www.example.com", 443), ("notexample.com", 443)]),
    ('{host: "*.example.com"}', [("api.example.com", 1), ("a.b.example.com", 443)],
     [("example.com", 443), ("api.example.org", 443)]),
    ("{host: 10.0.0.0/8, ports: [5432, 6379]}", [("10.1.2.3", 5432), ("10.255.0.1", 6379)],
     [("11.0.0.1", 5432), ("10.1.2.3", 80), ("db.internal", 5432)]),
    ("{host: '2001:db8::/32'}", [("2001:db8::7", 443)], [("2001:db9::7", 443)]),
    ('{host: "*", ports: [443]}', [("anything.test", 443), ("192.0.2.1", 443)],
     [("anything.test", 22)]),
])
def test_rules_match_what_they_name(tmp_path: Path, rule: str,
                                    allowed: list[tuple[str, int]],
                                    refused: list[tuple[str, int]]) -> None:
    rules = policy(tmp_path, rule)
    for host, port in allowed:
        assert rules.allows(host, port), (host, port)
    for host, port in refused:
        assert not rules.allows(host, port), (host, port)


@pytest.mark.parametrize("host", ["exa mple.com", "*.", "", "http://example.com", "10.0.0.0/40"])
def test_a_bad_host_names_its_field(tmp_path: Path, host: str) -> None:
    [line] = problems(tmp_path, MESH.format(rules=f"      - {{host: '{host}'}}\n"))
    assert "spec.egress.allow[0].host" in line
    assert "expected a host name" in line


def test_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    [line] = problems(tmp_path, MESH.format(rules="      - {host: a.test, ports: [70000]}\n"))
    assert "spec.egress.allow[0].ports[0]" in line
