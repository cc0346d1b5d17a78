"""Every kind of mistake is reported with file, document, field path and what was
expected, and every mistake is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_testkit import problems, write

from tulle.config import ConfigError, Problem, load

SERVICE_HEAD = """
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: web}
spec:
"""


def service(spec: str) -> str:
    return SERVICE_HEAD + "".join(f"  {line}\n" for line in spec.strip().splitlines())


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("timeouts: {request: fast}",
         'spec.timeouts.request: expected a duration like 250ms, 10s or 5m, got "fast"'),
        ("timeouts: {request: 10}",
         "spec.timeouts.request: expected a duration like 250ms, 10s or 5m, got 10 "
         "(add a unit, e.g. 10s)"),
        ("timeouts: {idle: 0s}",
         "spec.timeouts.idle: expected a duration greater than zero, got 0s"),
        ("port: 70000", "spec.port: expected a number at most 65535, got 70000"),
        ("port: 0", "spec.port: expected a number at least 1, got 0"),
        ('port: "80"', 'spec.port: expected an integer, got "80"'),
        ("protocol: udp", 'spec.protocol: expected one of http, http2, grpc or tcp, got "udp"'),
        ("protocl: http", "spec.protocl: unknown field (expected one of: protocol, port, "
                          "clusterIP, endpoints, dns, loadBalancer, timeouts, retries, "
                          "circuitBreaker, outlierDetection, healthCheck, limits)"),
        ("endpoints: [{address: 127.0.0.1}]",
         'spec.endpoints[0].address: expected an address host:port (the port is missing), '
         'got "127.0.0.1"'),
        ("endpoints: [{address: '127.0.0.1:99999'}]",
         'spec.endpoints[0].address: expected a port from 1 to 65535, got "127.0.0.1:99999"'),
        ("endpoints: [{address: '127.0.0.1:0'}]",
         'spec.endpoints[0].address: expected a port from 1 to 65535, got "127.0.0.1:0"'),
        ("endpoints: [{address: 'bad host:80'}]",
         "spec.endpoints[0].address: expected an address host:port with a valid host name "
         'or IP, got "bad host:80"'),
        ("endpoints: [{address: '::1:80'}]",
         "spec.endpoints[0].address: expected an address host:port (write IPv6 as [::1]:80), "
         'got "::1:80"'),
        ("endpoints: [{address: 'web:http'}]",
         'spec.endpoints[0].address: expected an address host:port with a numeric port, '
         'got "web:http"'),
        ("endpoints: [{address: 9001}]",
         "spec.endpoints[0].address: expected an address host:port, got 9001"),
        ("endpoints: [{address: '127.0.0.1:1', weight: 0}]",
         "spec.endpoints[0].weight: expected a number at least 1, got 0"),
        ("endpoints: [{address: '127.0.0.1:1', weight: true}]",
         "spec.endpoints[0].weight: expected an integer, got true"),
        ("endpoints: [{address: '127.0.0.1:1'}, {address: '127.0.0.1:1'}]",
         "spec.endpoints[1].address: duplicate endpoint 127.0.0.1:1"),
        ("endpoints: {address: '127.0.0.1:1'}", "spec.endpoints: expected a list, got a mapping"),
        ("loadBalancer: {algorithm: fastest}",
         "spec.loadBalancer.algorithm: expected one of expected-latency, peak-ewma, "
         "least-request, least-response-time, round-robin, weighted-round-robin, random "
         "or ring-hash, "
         'got "fastest"'),
        ("retries: {on: [sometimes]}",
         "spec.retries.on[0]: expected one of 5xx, gateway-error, connect-failure, reset, "
         'refused-stream, timeout, cancelled, deadline-exceeded, internal, resource-exhausted '
         'or unavailable, got "sometimes"'),
        ("retries: {methods: [FETCH]}",
         "spec.retries.methods[0]: expected one of GET, HEAD, POST, PUT, DELETE, CONNECT, "
         'OPTIONS, TRACE or PATCH, got "FETCH"'),
        ("retries: {attempts: 0}", "spec.retries.attempts: expected a number at least 1, got 0"),
        ("retries: {budget: {ratio: 2}}",
         "spec.retries.budget.ratio: expected a number at most 1.0, got 2"),
        ("retries: {hedge: yes}", 'spec.retries.hedge: expected true or false, got "yes"'),
        ("retries: {hedge: true}",
         "spec.retries.hedge: expected timeouts.perTry to be set with hedge: true (the "
         "per-try timeout is how long a try waits before a hedge is sent), in this service "
         "or in the ServiceMesh defaults"),
        ("circuitBreaker: {backoff: {min: 5s, max: 1s}}",
         "spec.circuitBreaker.backoff: expected min <= max, got min 5s and max 1s"),
        ("circuitBreaker: {consecutiveFailures: 0}",
         "spec.circuitBreaker.consecutiveFailures: expected a number at least 1, got 0"),
        ("outlierDetection: {maxEjectionPercent: 101}",
         "spec.outlierDetection.maxEjectionPercent: expected a number at most 100, got 101"),
        ("outlierDetection: {minimumRequests: 0}",
         "spec.outlierDetection.minimumRequests: expected a number at least 1, got 0"),
        ("healthCheck: {interval: 5s}",
         "spec.healthCheck: expected exactly one of http: {path: ...} or tcp: {}"),
        ("healthCheck: {http: {path: /}, tcp: {}}",
         "spec.healthCheck: expected exactly one of http: {path: ...} or tcp: {}"),
        ("healthCheck: {tcp: {}, interval: 1s, timeout: 2s}",
         "spec.healthCheck: expected timeout <= interval, got timeout 2s and interval 1s"),
        ("healthCheck: {http: {path: healthz}}",
         'spec.healthCheck.http.path: expected a path starting with "/", got "healthz"'),
    ],
)
def test_mesh_service_field_errors(tmp_path: Path, spec: str, expected: str) -> None:
    assert problems(tmp_path, service(spec)) == [f'document 1 (MeshService "web"): {expected}']


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("- a list", "document 1: expected a mapping with apiVersion, kind, metadata and spec, "
                     "got a list"),
        ("just text", 'document 1: expected a mapping with apiVersion, kind, metadata and spec, '
                      'got "just text"'),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}",
         'document 1 (Deployment "x"): kind: expected one of the accepted kinds '
         "(tulle.dev/v1alpha1 ServiceMesh, tulle.dev/v1alpha1 MeshService, v1 Service, "
         "discovery.k8s.io/v1 EndpointSlice, discovery.k8s.io/v1beta1 EndpointSlice, "
         "gateway.networking.k8s.io/v1 HTTPRoute, policy.tulle.dev/v1alpha1 Server, "
         "policy.tulle.dev/v1alpha1 AuthorizationPolicy, policy.tulle.dev/v1alpha1 "
         "MeshTLSAuthentication, policy.tulle.dev/v1alpha1 NetworkAuthentication, "
         'policy.tulle.dev/v1alpha1 HTTPLocalRateLimitPolicy), got "Deployment"'),
        ("apiVersion: tulle.dev/v1\nkind: MeshService\nmetadata: {name: x}",
         'document 1 (MeshService "x"): apiVersion: expected tulle.dev/v1alpha1 for kind '
         'MeshService, got "tulle.dev/v1"'),
        ("apiVersion: discovery.k8s.io/v2\nkind: EndpointSlice\nmetadata: {name: x}",
         'document 1 (EndpointSlice "x"): apiVersion: expected discovery.k8s.io/v1 or '
         'discovery.k8s.io/v1beta1 for kind EndpointSlice, got "discovery.k8s.io/v2"'),
        ("kind: MeshService\nmetadata: {name: x}",
         'document 1 (MeshService "x"): apiVersion: required field is missing'),
        ("apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {}",
         "document 1 (MeshService): metadata.name: required field is missing"),
        ("apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {name: Web_1}",
         'document 1 (MeshService "Web_1"): metadata.name: expected a DNS label (lowercase '
         "letters, digits and '-', starting and ending with a letter or digit, at most 63 "
         'characters), got "Web_1"'),
        ("apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {name: web}\nextra: 1",
         'document 1 (MeshService "web"): extra: unknown field (expected one of: apiVersion, '
         "kind, metadata, spec)"),
    ],
)
def test_document_errors(tmp_path: Path, document: str, expected: str) -> None:
    assert problems(tmp_path, document) == [expected]


def test_mesh_errors(tmp_path: Path) -> None:
    lines = problems(tmp_path, """
        apiVersion: tulle.dev/v1alpha1
        kind: ServiceMesh
        metadata: {name: a}
        spec:
          proxy: {outbound: nope, app: "127.0.0.1:0"}
          defaults: {loadBalancer: {algorithm: x}, retries: {budget: {window: soon}}}
        ---
        apiVersion: tulle.dev/v1alpha1
        kind: ServiceMesh
        metadata: {name: b}
    """)
    assert lines == [
        'document 1 (ServiceMesh "a"): spec.proxy.outbound: expected an address host:port '
        '(the port is missing), got "nope"',
        'document 1 (ServiceMesh "a"): spec.proxy.app: expected a port from 1 to 65535, '
        'got "127.0.0.1:0"',
        'document 1 (ServiceMesh "a"): spec.defaults.loadBalancer.algorithm: expected one of '
        "expected-latency, peak-ewma, least-request, least-response-time, round-robin, "
        'weighted-round-robin, random or ring-hash, got "x"',
        'document 1 (ServiceMesh "a"): spec.defaults.retries.budget.window: expected a '
        'duration like 250ms, 10s or 5m, got "soon"',
        f'document 2 (ServiceMesh "b"): expected at most one ServiceMesh in a configuration; '
        f"the first is {tmp_path / 'manifest.yaml'}: document 1",
    ]


def test_duplicate_service_names(tmp_path: Path) -> None:
    lines = problems(tmp_path, """
        apiVersion: tulle.dev/v1alpha1
        kind: MeshService
        metadata: {name: web}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec: {ports: [{port: 80}]}
        ---
        apiVersion: tulle.dev/v1alpha1
        kind: MeshService
        metadata: {name: web, namespace: other}
    """)
    assert lines == [
        'document 2 (Service "web"): metadata.name: expected a unique service name; '
        f'"web.default" is already defined in {tmp_path / "manifest.yaml"}: document 1'
    ]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    lines = problems(tmp_path, "apiVersion: v1\nkind: [Service\nmetadata: {}\n")
    assert len(lines) == 1
    assert lines[0].startswith("line 3: invalid YAML: ")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    lines = problems(tmp_path, "apiVersion: v1\nkind: Service\nkind: Service\n")
    assert lines == ["line 3: invalid YAML: found the key 'kind' twice (column 1), while "
                     "reading a mapping that starts on line 1"]


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "nothing.yaml")
    assert str(caught.value) == f"{tmp_path / 'nothing.yaml'}: no such file or directory"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.yaml or \*\.yml files in this folder"):
        load(tmp_path / "empty")


def test_all_errors_across_files_at_once(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", """
        apiVersion: tulle.dev/v1alpha1
        kind: MeshService
        metadata: {name: web}
        spec: {port: 99999}
        ---
        apiVersion: tulle.dev/v1alpha1
        kind: MeshService
        metadata: {name: api}
        spec:
          timeouts: {request: fast}
    """)
    second = write(tmp_path, "nested/b.yml", """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: split}
        spec:
          rules:
            - backendRefs: [{name: nowhere}]
        ---
        not: [closed
    """)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    found = caught.value.problems
    assert [(p.file, p.document, p.kind, p.name, p.path) for p in found] == [
        (first, 1, "MeshService", "web", "spec.port"),
        (first, 2, "MeshService", "api", "spec.timeouts.request"),
        (second, None, None, None, ""),
        (second, 1, "HTTPRoute", "split", "spec.rules[0].backendRefs[0].name"),
    ]
    assert found[2].line == 9  # libyaml notices at the end of the file
    assert "that starts on line 8" in found[2].message
    # web and api failed their schema, so they are not listed as known services.
    assert found[3].message == ('expected the name of a known service, got "nowhere" (no '
                                'Service or MeshService "nowhere" in namespace "default"; '
                                "known: none)")
    assert str(caught.value).splitlines() == [str(problem) for problem in found]
    assert str(found[0]) == (f'{first}: document 1 (MeshService "web"): spec.port: expected a '
                             "number at most 65535, got 99999")


def test_problem_renders_partial_context() -> None:
    assert str(Problem(file="f.yaml", message="m")) == "f.yaml: m"
    assert str(Problem(file="f.yaml", line=3, message="m")) == "f.yaml: line 3: m"
    assert str(Problem(file="f.yaml", document=2, kind="MeshService", path="spec",
                       message="m")) == "f.yaml: document 2 (MeshService): spec: m"
