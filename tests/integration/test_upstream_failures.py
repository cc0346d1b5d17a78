"""Every accepted request is answered, with the status DESIGN.md's error table gives."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.backend import Backend
from tests.support.client import get
from tests.support.proxy import RunningProxy, free_port, mesh_service


def test_a_refused_connection_is_a_502(manifests: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    (manifests / "web.yaml").write_text(mesh_service("web", [dead]))
    proxy = RunningProxy(manifests)
    try:
        status, headers, _ = get(proxy.outbound)
        assert status == 502
        assert "refused" in headers["tulle-error"]
    finally:
        proxy.stop()


def test_a_service_with_no_endpoints_is_a_503_at_once(manifests: Path) -> None:
    (manifests / "web.yaml").write_text(
        "apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {name: web}\n"
        "spec: {endpoints: []}\n"
    )
    proxy = RunningProxy(manifests)
    try:
        started = time.monotonic()
        status, headers, _ = get(proxy.outbound)
        assert status == 503
        assert "no endpoint" in headers["tulle-error"]
        assert time.monotonic() - started < 1.0
    finally:
        proxy.stop()


def test_a_slow_endpoint_is_a_504_after_the_request_timeout(
    backends: list[Backend], manifests: Path
) -> None:
    (manifests / "web.yaml").write_text(
        mesh_service("web", [backends[0].address], "  timeouts: {request: 300ms}\n")
    )
    proxy = RunningProxy(manifests)
    try:
        started = time.monotonic()
        status, headers, _ = get(proxy.outbound, "/sleep/3000")
        elapsed = time.monotonic() - started
        assert status == 504
        assert "timeout" in headers["tulle-error"]
        assert 0.25 < elapsed < 2.0
        assert get(proxy.outbound)[0] == 200
    finally:
        proxy.stop()


def test_a_reset_or_a_bad_response_is_a_502_and_the_proxy_keeps_serving(
    proxy: RunningProxy,
) -> None:
    for path, words in (("/reset", "closed the connection"), ("/garbage", "malformed response")):
        status, headers, _ = get(proxy.outbound, path)
        assert status == 502, path
        assert words in headers["tulle-error"]
    assert [get(proxy.outbound)[0] for _ in range(6)] == [200] * 6


def test_proxy_made_answers_are_counted_in_the_metrics(proxy: RunningProxy) -> None:
    get(proxy.outbound, host="nowhere")
    get(proxy.outbound, "/garbage")
    _, text = proxy.admin_get("/metrics")
    metrics = text.decode()
    assert 'error="unknown-service",status_code="404"' in metrics
    assert 'error="bad-response",status_code="502"' in metrics
