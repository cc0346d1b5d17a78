"""Inbound policy through a real proxy and a real application: the default policy,
Servers with network and mesh-TLS authentications, routes, probes, audit mode and
reloads, each decision seen by the client (403 with the reason, 404) and counted."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.client import get
from tests.support.proxy import TULLE, RunningProxy, free_port, metric


def _mesh(app_port: int, default: str = "all-unauthenticated") -> str:
    return f"""apiVersion: tulle.dev/v1alpha1
kind: ServiceMesh
metadata: {{name: default}}
spec:
  defaultInboundPolicy: {default}
  proxy:
    workload:
      namespace: shop
      labels: {{app: web, tier: front}}
      ports: {{http: {app_port}}}
      probes: [{{port: {app_port}, path: /healthz}}]
"""


SERVER = """---
apiVersion: policy.tulle.dev/v1alpha1
kind: Server
metadata: {{name: web-http, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  port: {port}
  accessPolicy: {access}
"""
LOCAL_ONLY = """---
apiVersion: policy.tulle.dev/v1alpha1
kind: NetworkAuthentication
metadata: {name: local, namespace: shop}
spec:
  networks: [{cidr: 127.0.0.0/8, except: [127.0.0.2/32]}]
---
apiVersion: policy.tulle.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: from-local, namespace: shop}
spec:
  targetRef: {group: policy.tulle.dev, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{kind: NetworkAuthentication, name: local}]
"""
MESH_ONLY = """---
apiVersion: policy.tulle.dev/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: meshed, namespace: shop}
spec:
  identities: ["*"]
---
apiVersion: policy.tulle.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: meshed-only, namespace: shop}
spec:
  targetRef: {group: policy.tulle.dev, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{kind: MeshTLSAuthentication, name: meshed}]
"""
ROUTES = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: public, namespace: shop}
spec:
  parentRefs: [{group: policy.tulle.dev, kind: Server, name: web-http}]
  rules: [{matches: [{path: {type: PathPrefix, value: /public}}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: admin, namespace: shop}
spec:
  parentRefs: [{group: policy.tulle.dev, kind: Server, name: web-http}]
  rules: [{matches: [{path: {type: PathPrefix, value: /admin}}]}]
---
apiVersion: policy.tulle.dev/v1alpha1
kind: NetworkAuthentication
metadata: {name: anywhere, namespace: shop}
spec:
  networks: [{cidr: 0.0.0.0/0}, {cidr: "::/0"}]
---
apiVersion: policy.tulle.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: public-to-all, namespace: shop}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: public}
  requiredAuthenticationRefs: [{kind: NetworkAuthentication, name: anywhere}]
"""


@pytest.fixture(scope="module")
def app() -> Iterator[Backend]:
    backend = Backend("app").start()
    yield backend
    backend.stop()


class InboundProxy:
    """A proxy whose inbound side fronts ``app``, on policy written to its manifests."""

    def __init__(self, folder: Path, app: Backend, policy: str, default: str) -> None:
        self.folder = folder
        self.app_port = int(app.address.rsplit(":", 1)[1])
        self.default = default
        self.write(policy)
        self.inbound = ("127.0.0.1", free_port())
        self.proxy = RunningProxy(folder, "--app", app.address, "--inbound",
                                  f"127.0.0.1:{self.inbound[1]}", "--allow-tap")

    def write(self, policy: str) -> None:
        (self.folder / "mesh.yaml").write_text(_mesh(self.app_port, self.default) + policy)

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.proxy.admin_port, name, **labels)


@pytest.fixture
def inbound(tmp_path: Path, app: Backend, request: pytest.FixtureRequest
            ) -> Iterator[InboundProxy]:
    policy, default = request.param
    folder = tmp_path / "manifests"
    folder.mkdir()
    running = InboundProxy(folder, app, policy, default)
    yield running
    running.proxy.stop()


def _server(port: int, access: str = "deny") -> str:
    return SERVER.format(port=port, access=access)


@pytest.mark.parametrize("inbound", [("", "all-unauthenticated")], indirect=True)
def test_the_default_policy_lets_everyone_in(inbound: InboundProxy) -> None:
    for _ in range(3):
        assert get(inbound.inbound)[0] == 200
    default = "default:all-unauthenticated"
    assert inbound.metric("inbound_http_authz_allow_total", srv_name=default,
                          authz_name=default) == 3


@pytest.mark.parametrize("inbound", [("", "deny")], indirect=True)
def test_deny_by_default_still_lets_the_probes_through(inbound: InboundProxy) -> None:
    status, headers, _body = get(inbound.inbound, "/")
    assert status == 403
    assert headers["tulle-error"] == "127.0.0.1 may not reach default:deny (unauthorized)"
    assert get(inbound.inbound, "/healthz")[0] == 200
    assert get(inbound.inbound, "/healthz", method="POST", body=b"x")[0] == 403
    assert inbound.metric("inbound_http_authz_deny_total", srv_name="default:deny",
                          reason="unauthorized") == 2
    assert inbound.metric("response_total", direction="inbound", status_code="403",
                          classification="failure", error="forbidden") == 2
    # A user watching with tulle tap sees the denials, and why.
    tap = subprocess.Popen([TULLE, "tap", "--admin", f"127.0.0.1:{inbound.proxy.admin_port}",
                            "--status", "403", "--max-events", "1", "-o", "json",
                            "--duration", "15s"], stdout=subprocess.PIPE, text=True)
    while tap.poll() is None:
        assert get(inbound.inbound, "/denied")[0] == 403
        time.sleep(0.05)
    (line,) = tap.communicate()[0].splitlines()
    event = json.loads(line)
    assert (event["direction"], event["path"], event["status"], event["error"]) == (
        "inbound", "/denied", 403, "forbidden")


def test_a_server_admits_what_its_authorization_requires(tmp_path: Path, app: Backend) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    port = int(app.address.rsplit(":", 1)[1])
    running = InboundProxy(folder, app, _server(port) + LOCAL_ONLY, "all-unauthenticated")
    try:
        assert get(running.inbound)[0] == 200  # from 127.0.0.1, in 127.0.0.0/8
        assert running.metric("inbound_http_authz_allow_total", srv_name="web-http",
                              authz_name="authorizationpolicy:from-local") == 1
        # The same Server, now only for meshed clients: plaintext is refused as such.
        running.write(_server(port) + MESH_ONLY)
        _until(lambda: get(running.inbound)[0] == 403)
        _status, headers, _ = get(running.inbound)
        assert headers["tulle-error"].endswith("(unauthenticated)")
        assert running.metric("inbound_http_authz_deny_total", srv_name="web-http",
                              reason="unauthenticated") >= 2
        # Audit: what would be denied is let through, and counted.
        running.write(_server(port, access="audit") + MESH_ONLY)
        _until(lambda: get(running.inbound)[0] == 200)
        assert running.metric("tulle_inbound_authz_audited_total", srv_name="web-http") >= 1
        # Another workload's Server (the selector does not match) leaves the default.
        running.write(_server(port).replace("app: web", "app: api") + MESH_ONLY)
        _until(lambda: get(running.inbound)[0] == 200)
    finally:
        running.proxy.stop()


@pytest.mark.parametrize("inbound", [("", "all-unauthenticated")], indirect=True)
def test_routes_divide_a_server(inbound: InboundProxy) -> None:
    inbound.write(_server(inbound.app_port) + ROUTES)
    _until(lambda: get(inbound.inbound, "/other")[0] == 404)
    status, headers, _ = get(inbound.inbound, "/other")
    assert status == 404 and "no route of web-http" in headers["tulle-error"]
    assert get(inbound.inbound, "/public/x")[0] == 200
    assert get(inbound.inbound, "/admin/x")[0] == 403  # no authorization for that route
    # A route hides the probe authorization (Linkerd's rule): routes say everything.
    assert get(inbound.inbound, "/healthz")[0] == 404
    assert inbound.metric("inbound_http_route_not_found_total", srv_name="web-http") >= 3


def _until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("the proxy did not take the new policy in time")


RATE_LIMIT = """---
apiVersion: policy.tulle.dev/v1alpha1
kind: HTTPLocalRateLimitPolicy
metadata: {{name: web-rl, namespace: shop}}
spec:
  targetRef: {{group: policy.tulle.dev, kind: Server, name: web-http}}
  total: {{requestsPerSecond: {total}}}
  identity: {{requestsPerSecond: {identity}}}
"""


def _hammer(address: tuple[str, int], seconds: float, clients: int = 4
            ) -> tuple[list[tuple[float, int, str | None]], float]:
    """Requests back to back from ``clients`` keep-alive connections for ``seconds``:
    (sent at, status, Retry-After) each, and the longest gap between two sends."""
    import http.client
    import threading

    results: list[tuple[float, int, str | None]] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(*address, timeout=10)
        try:
            while time.monotonic() < stop:
                sent = time.monotonic()
                conn.request("GET", "/", headers={"Host": "web"})
                response = conn.getresponse()
                response.read()
                with lock:
                    results.append((sent, response.status, response.getheader("retry-after")))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sends = sorted(sent for sent, _, _ in results)
    gap = max(b - a for a, b in itertools.pairwise(sends))
    return results, gap


def test_a_rate_limit_holds_within_the_bounds_its_settings_give(tmp_path: Path,
                                                               app: Backend) -> None:
    """GCRA with rate R and burst B = R admits, over arrivals spanning D with gaps at
    most g (below its tolerance (B - 1)/R), between B + floor((D - g)·R) and
    B + floor(D·R) requests (see tests/unit/policy/test_rate_limit.py); one more either
    way for the proxy's clock and the client's differing by a request's transit."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    port = int(app.address.rsplit(":", 1)[1])
    rate = 40
    running = InboundProxy(folder, app, _server(port, access="all-unauthenticated")
                           + RATE_LIMIT.format(total=rate, identity=rate), "deny")
    try:
        results, gap = _hammer(running.inbound, 2.5)
        span = max(sent for sent, _, _ in results) - min(sent for sent, _, _ in results)
        admitted = sum(status == 200 for _, status, _ in results)
        refused = [(status, after) for _, status, after in results if status != 200]
        assert gap < (rate - 1) / rate
        assert rate + int((span - gap) * rate) - 1 <= admitted <= rate + int(span * rate) + 1
        # Refused while the next cell is at most one interval (25 ms) away: Retry-After
        # is that wait rounded up to whole seconds.
        assert refused and all(status == 429 and after == "1" for status, after in refused)
        assert running.metric("tulle_inbound_rate_limited_total", srv_name="web-http",
                              limit="total") == len(refused)
        assert running.metric("response_total", direction="inbound", status_code="429",
                              error="rate-limited") == len(refused)
        # Plaintext clients share the one bucket of "no identity": its limit refuses them.
        running.write(_server(port, access="all-unauthenticated")
                      + RATE_LIMIT.format(total=1000, identity=5))
        _until(lambda: running.metric("tulle_inbound_rate_limited_total", srv_name="web-http",
                                      limit="identity") > 0 or get(running.inbound)[0] == 429)
        assert running.metric("tulle_inbound_rate_limited_total", srv_name="web-http",
                              limit="identity") > 0
    finally:
        running.proxy.stop()
