"""HTTPRoute: parsed, regular expressions compiled at load, backends must exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_testkit import load_text, problems

SERVICES = """
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: web}
---
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: web-canary}
---
"""
ROUTE_HEAD = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split}
spec:
"""


def route(spec: str) -> str:
    return SERVICES + ROUTE_HEAD + "".join(f"  {line}\n" for line in spec.strip().splitlines())


def test_route_is_parsed_with_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, route("""
parentRefs: [{kind: Service, name: web}]
hostnames: [web.example.com, "*.example.com"]
rules:
  - matches:
      - path: {type: RegularExpression, value: "^/api/v[0-9]+"}
        method: GET
        headers:
          - {name: x-canary, value: "1"}
          - {type: RegularExpression, name: x-user, value: "a.*"}
      - path: {type: Exact, value: /health}
    backendRefs: [{name: web, weight: 90}, {name: web-canary, port: 80, weight: 10}]
  - backendRefs: [{name: web}]
"""))
    (split,) = config.routes
    assert (split.name, split.namespace) == ("split", "default")
    first, second = split.spec.rules
    regex_match, exact_match = first.matches
    assert regex_match.path.pattern is not None
    assert regex_match.path.pattern.match("/api/v2/users")
    assert exact_match.path.pattern is None
    assert regex_match.method == "GET"
    assert [h.type for h in regex_match.headers] == ["Exact", "RegularExpression"]
    assert regex_match.headers[1].pattern is not None
    assert [(b.name, b.weight, b.port) for b in first.backend_refs] == [
        ("web", 90, None), ("web-canary", 10, 80)
    ]
    # No matches means every request: a PathPrefix "/" match.
    assert [(m.path.type, m.path.value) for m in second.matches] == [("PathPrefix", "/")]
    assert second.backend_refs[0].weight == 1
    assert config.to_dict()["routes"][0]["rules"][0]["backendRefs"][0]["weight"] == 90


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("rules: [{backendRefs: [{name: nowhere}]}]",
         'spec.rules[0].backendRefs[0].name: expected the name of a known service, got '
         '"nowhere" (no Service or MeshService "nowhere" in namespace "default"; known: '
         "web.default, web-canary.default)"),
        ("rules: [{backendRefs: [{name: web, namespace: other}]}]",
         'spec.rules[0].backendRefs[0].name: expected the name of a known service, got "web" '
         '(no Service or MeshService "web" in namespace "other"; known: web.default, '
         "web-canary.default)"),
        ("rules: [{backendRefs: [{name: web, port: 8080}]}]",
         'spec.rules[0].backendRefs[0].port: expected 80 (the port of service "web.default"), '
         "got 8080"),
        ("rules: [{backendRefs: [{name: web, weight: -1}]}]",
         "spec.rules[0].backendRefs[0].weight: expected a number at least 0, got -1"),
        ("parentRefs: [{kind: Service, name: gone}]",
         'spec.parentRefs[0].name: expected the name of a known service, got "gone" (no '
         'Service or MeshService "gone" in namespace "default"; known: web.default, '
         "web-canary.default)"),
        ("rules: [{matches: [{path: {type: RegularExpression, value: '/(x'}}]}]",
         'spec.rules[0].matches[0].path.value: expected a regular expression, got "/(x" '
         "(missing ), unterminated subpattern at position 1)"),
        ("rules: [{matches: [{path: {type: Prefix, value: /}}]}]",
         'spec.rules[0].matches[0].path.type: expected one of Exact, PathPrefix or '
         'RegularExpression, got "Prefix"'),
        ("rules: [{matches: [{path: {value: api}}]}]",
         'spec.rules[0].matches[0].path.value: expected a path starting with "/", got "api"'),
        ("rules: [{matches: [{headers: [{type: RegularExpression, name: x, value: '*'}]}]}]",
         'spec.rules[0].matches[0].headers[0].value: expected a regular expression, got "*" '
         "(nothing to repeat at position 0)"),
        ("rules: [{matches: [{headers: [{name: x}]}]}]",
         "spec.rules[0].matches[0].headers[0].value: required field is missing"),
        ("rules: [{matches: [{method: get}]}]",
         'spec.rules[0].matches[0].method: expected one of GET, HEAD, POST, PUT, DELETE, '
         'CONNECT, OPTIONS, TRACE or PATCH, got "get"'),
        ("hostnames: [Web_Site]",
         'spec.hostnames[0]: expected a host name like web.example.com or *.example.com, '
         'got "Web_Site"'),
        ("rules: [{filters: []}]",
         "spec.rules[0].filters: unknown field (expected one of: name, matches, backendRefs, "
         "timeouts, retry)"),
    ],
)
def test_route_errors(tmp_path: Path, spec: str, expected: str) -> None:
    assert problems(tmp_path, route(spec)) == [f'document 3 (HTTPRoute "split"): {expected}']
