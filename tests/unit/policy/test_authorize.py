"""Inbound policy compiled from manifests and decided for clients: which Servers select
the workload, what each authentication admits, defaults, routes, and denial reasons."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tulle.config import Config, load
from tulle.config.records import as_records
from tulle.config.schema_tulle import Workload
from tulle.policy.authorize import UNAUTHENTICATED, UNAUTHORIZED, lowest_bit
from tulle.policy.compile import PolicyState
from tulle.telemetry.metrics import Metrics

TD = "cluster.local"
WEB = f"spiffe://{TD}/ns/shop/sa/web"
CLI = f"spiffe://{TD}/ns/shop/sa/cli"
OPS = f"spiffe://{TD}/ns/ops/sa/admin"
FOREIGN = "spiffe://other.mesh/ns/shop/sa/cli"


def _as_loaded(config: Config) -> Config:
    return config


# Every test runs on the configuration as loaded (pydantic models) and as a proxy process
# reads it (records, tulle.config.records): the policy must come out the same.
@pytest.fixture(autouse=True, params=["models", "records"])
def _form(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "records":
        monkeypatch.setattr(sys.modules[__name__], "_as_loaded", as_records)


def _compile(tmp_path: Path, *parts: str, default: str = "all-unauthenticated",
             workload: Workload | None = None):
    (tmp_path / "policy.yaml").write_text("".join(textwrap.dedent(part) for part in parts))
    state = PolicyState(Metrics())
    state.trust_domain = TD
    state.default_policy = default
    state.workload = workload or Workload(namespace="shop", labels={"app": "web"},
                                          ports={"http": 8080})
    return state.apply(_as_loaded(load(tmp_path, environ={})))


def _allowed(policy, port: int, identity: str | None, ip: bytes = b"10.1.2.3") -> str | None:
    server = policy.server_for(port)
    bits = policy.decide(server.mask, identity, ip)
    return policy.names[lowest_bit(bits)] if bits else None


SERVER = """
apiVersion: policy.tulle.dev/v1alpha1
kind: Server
metadata: {name: web-http, namespace: shop}
spec: {podSelector: {matchLabels: {app: web}}, port: http}
---
"""


def test_defaults_as_linkerd_names_them(tmp_path: Path) -> None:
    cases = {
        "all-unauthenticated": {(None, b"8.8.8.8"), (CLI, b"8.8.8.8"), (None, b"10.0.0.1"),
                                (CLI, b"10.0.0.1")},
        "all-authenticated": {(CLI, b"8.8.8.8"), (CLI, b"10.0.0.1")},
        "cluster-unauthenticated": {(None, b"10.0.0.1"), (CLI, b"10.0.0.1")},
        "cluster-authenticated": {(CLI, b"10.0.0.1")},
        "deny": set(),
    }
    for default, admitted in cases.items():
        policy = _compile(tmp_path, "", default=default)
        for identity in (None, CLI):
            for ip in (b"8.8.8.8", b"10.0.0.1"):
                assert (_allowed(policy, 8080, identity, ip) is not None) == (
                    (identity, ip) in admitted), (default, identity, ip)
    policy = _compile(tmp_path, "", default="all-unauthenticated")
    assert policy.default.open == "default:all-unauthenticated"
    denied = _compile(tmp_path, "", default="all-authenticated")
    assert denied.denial(denied.default.mask, None, b"1.2.3.4") == UNAUTHENTICATED
    assert _compile(tmp_path, "", default="audit").default.audit


def test_a_server_selects_by_namespace_labels_and_port_name(tmp_path: Path) -> None:
    policy = _compile(tmp_path, SERVER)
    assert policy.server_for(8080).name == "web-http"
    assert policy.server_for(9090).name == "default:all-unauthenticated"
    assert _allowed(policy, 8080, CLI) is None  # accessPolicy deny, no authorization
    other_ns = _compile(tmp_path, SERVER, workload=Workload(
        namespace="ops", labels={"app": "web"}, ports={"http": 8080}))
    assert 8080 not in other_ns.servers
    unlabelled = _compile(tmp_path, SERVER, workload=Workload(
        namespace="shop", labels={"app": "api"}, ports={"http": 8080}))
    assert 8080 not in unlabelled.servers
    no_such_port = _compile(tmp_path, SERVER, workload=Workload(
        namespace="shop", labels={"app": "web"}))
    assert no_such_port.servers == {}


def test_mesh_tls_identities_refs_and_networks(tmp_path: Path) -> None:
    policy = _compile(tmp_path, SERVER, """
    apiVersion: policy.tulle.dev/v1alpha1
    kind: MeshTLSAuthentication
    metadata: {name: callers, namespace: shop}
    spec:
      identities: ["spiffe://other.mesh/ns/shop/*"]
      identityRefs: [{kind: ServiceAccount, name: cli}, {kind: Namespace, name: ops}]
    ---
    apiVersion: policy.tulle.dev/v1alpha1
    kind: NetworkAuthentication
    metadata: {name: pods, namespace: shop}
    spec: {networks: [{cidr: 10.0.0.0/8, except: [10.9.0.0/16]}]}
    ---
    apiVersion: policy.tulle.dev/v1alpha1
    kind: AuthorizationPolicy
    metadata: {name: callers-from-pods, namespace: shop}
    spec:
      targetRef: {group: policy.tulle.dev, kind: Server, name: web-http}
      requiredAuthenticationRefs:
        - {kind: MeshTLSAuthentication, name: callers}
        - {kind: NetworkAuthentication, name: pods}
    """)
    allowed = "authorizationpolicy:callers-from-pods"
    for identity in (CLI, OPS, FOREIGN):
        assert _allowed(policy, 8080, identity) == allowed
    assert _allowed(policy, 8080, WEB) is None
    assert _allowed(policy, 8080, CLI, b"10.9.1.1") is None  # excepted network
    assert _allowed(policy, 8080, CLI, b"192.168.1.1") is None
    assert _allowed(policy, 8080, None) is None
    server = policy.server_for(8080)
    assert policy.denial(server.mask, None, b"10.1.1.1") == UNAUTHENTICATED
    assert policy.denial(server.mask, None, b"192.168.1.1") == UNAUTHORIZED
    assert policy.denial(server.mask, WEB, b"10.1.1.1") == UNAUTHORIZED


def test_namespace_targets_and_service_accounts(tmp_path: Path) -> None:
    policy = _compile(tmp_path, SERVER, """
    apiVersion: policy.tulle.dev/v1alpha1
    kind: AuthorizationPolicy
    metadata: {name: cli-anywhere, namespace: shop}
    spec:
      targetRef: {kind: Namespace, name: shop}
      requiredAuthenticationRefs: [{kind: ServiceAccount, name: cli}]
    """)
    assert _allowed(policy, 8080, CLI) == "authorizationpolicy:cli-anywhere"
    assert _allowed(policy, 8080, WEB) is None


def test_routes_add_their_own_authorizations(tmp_path: Path) -> None:
    policy = _compile(tmp_path, SERVER, """
    apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: metrics, namespace: shop}
    spec:
      parentRefs: [{group: policy.tulle.dev, kind: Server, name: web-http}]
      rules: [{matches: [{path: {type: Exact, value: /metrics}, method: GET}]}]
    ---
    apiVersion: policy.tulle.dev/v1alpha1
    kind: AuthorizationPolicy
    metadata: {name: ops-reads-metrics, namespace: shop}
    spec:
      targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: metrics}
      requiredAuthenticationRefs: [{kind: ServiceAccount, name: admin, namespace: ops}]
    """)
    server = policy.server_for(8080)
    assert server.routes is not None and server.open is None
    route = server.routes.match(_head(b"GET", b"/metrics"))
    assert route is not None and route.name == "metrics"
    assert policy.decide(route.mask, OPS, b"10.0.0.1")
    assert not policy.decide(route.mask, CLI, b"10.0.0.1")
    assert server.routes.match(_head(b"POST", b"/metrics")) is None


def _head(method: bytes, target: bytes):
    from tulle.http import RequestHead

    head = RequestHead()
    head.method, head.target = method, target
    return head


@pytest.mark.parametrize("count", [1, 100])
def test_remembered_decisions_stay_bounded(tmp_path: Path, count: int) -> None:
    policy = _compile(tmp_path, "", default="cluster-authenticated")
    for index in range(5000 * count // 100 + 10):
        policy.decide(policy.default.mask, f"spiffe://{TD}/ns/a/sa/s{index}",
                      f"10.0.{index // 250}.{index % 250}".encode())
    assert len(policy._identity_bits) <= 4096 and len(policy._network_bits) <= 4096
