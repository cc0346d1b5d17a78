"""HTTPRoute routing through the real proxy: header matches, weighted splits, route metrics."""

from __future__ import annotations

import http.client
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.client import get
from tests.support.proxy import RunningProxy, mesh_service

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-split}
spec:
  parentRefs: [{kind: Service, name: web}]
  rules:
    - name: beta-users
      matches: [{headers: [{name: x-beta, value: "yes"}]}]
      backendRefs: [{name: web-beta}]
    - name: only-get-admin
      matches: [{path: {type: Exact, value: /admin}, method: GET}]
      backendRefs: [{name: web-beta}]
    - name: canary
      matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: web, weight: 90}, {name: web-canary, weight: 10}]
"""


@pytest.fixture(scope="module")
def routed_proxy(
    backends: list[Backend], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProxy]:
    manifests = tmp_path_factory.mktemp("routes") / "manifests"
    manifests.mkdir()
    names = ("web", "web-canary", "web-beta")
    for name, backend in zip(names, backends, strict=True):
        (manifests / f"{name}.yaml").write_text(mesh_service(name, [backend.address]))
    (manifests / "route.yaml").write_text(ROUTE)
    proxy = RunningProxy(manifests)
    yield proxy
    proxy.stop()


def test_a_90_10_split_lands_within_binomial_bounds(routed_proxy: RunningProxy) -> None:
    total = 2000
    conn = http.client.HTTPConnection(*routed_proxy.outbound, timeout=10)
    seen: Counter[bytes] = Counter()
    for _ in range(total):
        conn.request("GET", "/", headers={"Host": "web"})
        seen[conn.getresponse().read()] += 1
    conn.close()
    canary = seen[b"backend-1"]
    # Binomial(n=2000, p=0.1): mean 200, sd = sqrt(2000 * 0.1 * 0.9) ≈ 13.4; allow 5 sd,
    # which a correct 90/10 split leaves with probability < 1e-6.
    sd = math.sqrt(total * 0.1 * 0.9)
    assert abs(canary - 200) < 5 * sd
    assert seen[b"backend-0"] + canary == total


def test_a_header_matched_rule_goes_only_to_its_backend(routed_proxy: RunningProxy) -> None:
    answers = {get(routed_proxy.outbound, headers={"x-beta": "yes"})[2] for _ in range(30)}
    assert answers == {b"backend-2"}


def test_method_and_exact_path_matches(routed_proxy: RunningProxy) -> None:
    assert get(routed_proxy.outbound, "/admin")[2] == b"backend-2"
    assert get(routed_proxy.outbound, "/admin", method="POST", body=b"")[2] != b"backend-2"
    assert get(routed_proxy.outbound, "/admin/x")[2] != b"backend-2"


def test_route_names_label_the_route_metrics(routed_proxy: RunningProxy) -> None:
    get(routed_proxy.outbound, headers={"x-beta": "yes"})
    _, text = routed_proxy.admin_get("/metrics")
    metrics = text.decode()
    assert 'route_request_total{direction="outbound",dst_namespace="default",' \
           'dst_service="web",route="beta-users"}' in metrics
    assert 'route="canary"' in metrics


def test_a_request_no_rule_matches_is_a_404(backends: list[Backend], manifests: Path) -> None:
    (manifests / "web.yaml").write_text(mesh_service("web", [backends[0].address]))
    (manifests / "route.yaml").write_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: api-only}\n"
        "spec:\n  parentRefs: [{kind: Service, name: web}]\n"
        "  rules: [{matches: [{path: {type: PathPrefix, value: /api}}],\n"
        "            backendRefs: [{name: web}]}]\n"
    )
    proxy = RunningProxy(manifests)
    try:
        assert get(proxy.outbound, "/api/users")[0] == 200
        status, headers, _ = get(proxy.outbound, "/apix")
        assert status == 404
        assert "no route" in headers["tulle-error"]
    finally:
        proxy.stop()


def test_a_rule_has_its_own_timeout_and_can_be_marked_retryable(
    backends: list[Backend], manifests: Path
) -> None:
    backend = backends[1]
    (manifests / "web.yaml").write_text(mesh_service("web", [backend.address]))
    (manifests / "route.yaml").write_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web}\n"
        "spec:\n  parentRefs: [{kind: Service, name: web}]\n  rules:\n"
        "    - matches: [{path: {type: PathPrefix, value: /sleep}}]\n"
        "      backendRefs: [{name: web}]\n"
        "      timeouts: {request: 300ms}\n"
        "    - matches: [{path: {type: PathPrefix, value: /status}}]\n"
        "      backendRefs: [{name: web}]\n"
        "      retry: {attempts: 2, codes: [503]}\n"
        "    - backendRefs: [{name: web}]\n"
    )
    proxy = RunningProxy(manifests)
    try:
        started = time.monotonic()
        assert get(proxy.outbound, "/sleep/2000")[0] == 504  # the service's default is 10 s
        assert time.monotonic() - started < 1.5
        backend.reset_counts()
        # POST is not idempotent, but this rule is marked retryable: 1 try + 2 retries.
        assert get(proxy.outbound, "/status/503", method="POST", body=b"x")[0] == 503
        assert backend.requests == 3
        backend.reset_counts()
        assert get(proxy.outbound, "/other", method="POST", body=b"x")[0] == 200
        assert backend.requests == 1
    finally:
        proxy.stop()
