"""Failover on real sockets: no request lost when an endpoint dies, never a hang, no storms."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

from tests.support.backend import Backend
from tests.support.client import get
from tests.support.faults import BackendProcess, HangingBackend
from tests.support.proxy import RunningProxy, free_port, mesh_service


def _steady_gets(proxy: RunningProxy, seconds: float, clients: int = 4) -> list[int]:
    """Statuses of GETs sent back to back on keep-alive connections for ``seconds``."""
    statuses: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(*proxy.outbound, timeout=10)
        while time.monotonic() < deadline:
            conn.request("GET", "/", headers={"Host": "web"})
            response = conn.getresponse()
            response.read()
            with lock:
                statuses.append(response.status)
            if response.getheader("connection") == "close":
                conn.close()
                conn = http.client.HTTPConnection(*proxy.outbound, timeout=10)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_killing_one_of_three_endpoints_under_load_fails_no_request(manifests: Path) -> None:
    backends = [BackendProcess(f"b{i}") for i in range(3)]
    (manifests / "web.yaml").write_text(mesh_service("web", [b.address for b in backends]))
    proxy = RunningProxy(manifests)
    try:
        killer = threading.Timer(1.0, backends[1].kill)
        killer.start()
        statuses = _steady_gets(proxy, seconds=3.0)
        killer.join()
        assert len(statuses) > 100
        _, metrics = proxy.admin_get("/metrics")
        errors = [line for line in metrics.decode().splitlines()
                  if line.startswith("response_total") and 'error=""' not in line]
        assert [s for s in statuses if s != 200] == [], errors
    finally:
        proxy.stop()
        for backend in backends:
            backend.kill()


def test_a_restarted_endpoint_gets_traffic_again_within_seconds(manifests: Path) -> None:
    backends = [BackendProcess(f"b{i}") for i in range(3)]
    (manifests / "web.yaml").write_text(mesh_service(
        "web", [b.address for b in backends], "  loadBalancer: {algorithm: round-robin}\n"
    ))
    proxy = RunningProxy(manifests)
    try:
        backends[1].kill()
        assert {get(proxy.outbound)[0] for _ in range(12)} == {200}  # retried elsewhere
        _, body = proxy.admin_get("/endpoints")
        assert b'"unreachable"' in body
        port = int(backends[1].address.rsplit(":", 1)[1])
        time.sleep(2.0)  # down for a while: the reconnect backoff is at its cap
        backends[1] = BackendProcess("b1-again", port)
        restarted = time.monotonic()
        answers: set[bytes] = set()
        while b"b1-again" not in answers and time.monotonic() - restarted < 5:
            answers.add(get(proxy.outbound)[2])
            time.sleep(0.02)
        assert b"b1-again" in answers
        assert time.monotonic() - restarted < 2.5
    finally:
        proxy.stop()
        for backend in backends:
            backend.kill()


def test_a_hanging_endpoint_times_out_opens_its_breaker_and_comes_back(
    manifests: Path, backends: list[Backend]
) -> None:
    hanging = HangingBackend()
    (manifests / "web.yaml").write_text(mesh_service(
        "web",
        [hanging.address, backends[0].address],
        "  loadBalancer: {algorithm: round-robin}\n"
        "  timeouts: {request: 400ms}\n"
        "  circuitBreaker: {consecutiveFailures: 2, backoff: {min: 600ms, max: 1s}}\n",
    ))
    proxy = RunningProxy(manifests)
    try:
        first = [get(proxy.outbound)[0] for _ in range(4)]
        assert first.count(504) == 2 and first.count(200) == 2  # round-robin: every other one
        # The breaker is open now: everything goes to the healthy endpoint, at once.
        started = time.monotonic()
        assert [get(proxy.outbound)[0] for _ in range(10)] == [200] * 10
        assert time.monotonic() - started < 2.0
        # The endpoint recovers; after the backoff a probe re-admits it.
        hanging.hanging = False
        served_before = hanging.requests
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and hanging.requests <= served_before + 2:
            assert get(proxy.outbound)[0] == 200
            time.sleep(0.05)
        assert hanging.requests > served_before + 2
    finally:
        proxy.stop()
        hanging.stop()


def test_with_every_endpoint_down_requests_get_503_fast_and_none_hangs(manifests: Path) -> None:
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    (manifests / "web.yaml").write_text(mesh_service(
        "web", dead,
        "  circuitBreaker: {consecutiveFailures: 1, backoff: {min: 30s, max: 60s}}\n"
        "  limits: {failFastAfter: 300ms}\n",
    ))
    proxy = RunningProxy(manifests)
    try:
        warm_up = [get(proxy.outbound)[0] for _ in range(3)]  # connect refused: breakers open
        assert set(warm_up) <= {502, 503}
        for _ in range(5):
            started = time.monotonic()
            status, headers, _ = get(proxy.outbound)
            elapsed = time.monotonic() - started
            assert status == 503
            assert "available" in headers["tulle-error"]
            assert 0.25 < elapsed < 1.5
    finally:
        proxy.stop()


def test_a_failing_backend_receives_no_more_retries_than_the_budget(
    manifests: Path, backends: list[Backend]
) -> None:
    (manifests / "web.yaml").write_text(mesh_service(
        "web", [backends[2].address],
        "  retries: {attempts: 3, budget: {ratio: 0.2, minPerSecond: 1, window: 10s}}\n"
        "  circuitBreaker: {consecutiveFailures: 100000}\n",
    ))
    proxy = RunningProxy(manifests)
    backends[2].reset_counts()
    try:
        requests = 150
        conn = http.client.HTTPConnection(*proxy.outbound, timeout=10)
        for _ in range(requests):
            conn.request("GET", "/status/503", headers={"Host": "web"})
            response = conn.getresponse()
            response.read()
            assert response.status == 503
        conn.close()
        # Measured at the backend: the budget allows 20% of requests plus 1/s over 10 s.
        retries_seen = backends[2].requests - requests
        assert 0 < retries_seen <= 0.2 * requests + 1 * 10
        _, metrics = proxy.admin_get("/metrics")
        assert b"tulle_retry_budget_exhausted_total" in metrics
    finally:
        proxy.stop()


def test_a_large_post_is_never_retried_and_a_small_one_only_when_allowed(
    manifests: Path, backends: list[Backend]
) -> None:
    backend = backends[1]
    (manifests / "web.yaml").write_text(mesh_service("web", [backend.address]))
    (manifests / "api.yaml").write_text(mesh_service(
        "api", [backend.address], "  retries: {attempts: 2, methods: [GET, POST]}\n"
    ))
    proxy = RunningProxy(manifests)
    try:
        cases = [
            ("web", b"x" * 1_000_000, 1),  # 1 MB: too large to replay
            ("web", b"small", 1),          # POST is not idempotent: not retried by default
            ("api", b"small", 3),          # the service allows POST retries: 1 + 2
            ("api", b"y" * 1_000_000, 1),  # ... but still not with a 1 MB body
        ]
        for host, body, expected in cases:
            backend.reset_counts()
            status, _, _ = get(proxy.outbound, "/status/503", host=host, method="POST", body=body)
            assert status == 503
            assert backend.requests == expected, (host, len(body))
    finally:
        proxy.stop()


def test_a_truncated_response_cuts_the_client_and_the_proxy_keeps_serving(
    proxy: RunningProxy,
) -> None:
    conn = http.client.HTTPConnection(*proxy.outbound, timeout=5)
    conn.request("GET", "/truncated/1000", headers={"Host": "web"})
    response = conn.getresponse()
    assert response.status == 200
    try:
        data = response.read()
    except http.client.IncompleteRead as exc:
        data = exc.partial
    assert len(data) < 1000
    conn.close()
    assert [get(proxy.outbound)[0] for _ in range(5)] == [200] * 5


def test_requests_waiting_for_a_probing_endpoint_are_all_answered(
    manifests: Path, backends: list[Backend]
) -> None:
    (manifests / "web.yaml").write_text(mesh_service(
        "web", [backends[0].address],
        "  circuitBreaker: {consecutiveFailures: 1, backoff: {min: 400ms, max: 1s}}\n"
        "  limits: {failFastAfter: 3s}\n",
    ))
    proxy = RunningProxy(manifests)
    try:
        assert get(proxy.outbound, "/status/500")[0] == 500  # the breaker opens
        statuses: list[int] = []
        clients = [threading.Thread(target=lambda: statuses.append(get(proxy.outbound)[0]))
                   for _ in range(4)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=10)
        assert statuses == [200] * 4  # the probe closed the breaker; the rest followed
        assert proxy.admin_get("/live")[0] == 200  # and the proxy is not stuck
    finally:
        proxy.stop()


def test_outlier_detection_ejects_an_endpoint_whose_failures_retries_hide(
    manifests: Path, backends: list[Backend]
) -> None:
    """Every 503 of the bad endpoint is retried elsewhere, so clients see only 200s;
    outlier detection must still see those failures and eject it."""
    bad = HangingBackend()
    bad.hanging, bad.status = False, 503
    (manifests / "web.yaml").write_text(mesh_service(
        "web", [backends[0].address, backends[1].address, bad.address],
        "  loadBalancer: {algorithm: round-robin}\n"
        "  circuitBreaker: {consecutiveFailures: 100000}\n"
        "  outlierDetection: {interval: 500ms, minimumRequests: 3, baseEjectionTime: 30s,"
        " maxEjectionPercent: 50}\n",
    ))
    proxy = RunningProxy(manifests)
    try:
        deadline = time.monotonic() + 5
        ejected = False
        while time.monotonic() < deadline and not ejected:
            assert get(proxy.outbound)[0] == 200
            time.sleep(0.02)
            _, body = proxy.admin_get("/endpoints")
            ejected = b'"ejected"' in body and b'"state": "ejected"' in body
        assert ejected
        served = bad.requests
        assert [get(proxy.outbound)[0] for _ in range(10)] == [200] * 10
        assert bad.requests == served  # out of rotation
    finally:
        proxy.stop()
        bad.stop()


def test_a_frozen_endpoint_is_hedged_around_and_its_requests_are_not_parked(
    manifests: Path,
) -> None:
    """Issue 15 #14: one of two endpoints stopped with SIGSTOP. Round-robin keeps sending
    every other request to it; each of those is hedged on the other after the 100 ms
    per-try timeout, so none waits for the endpoint to wake up. A POST is not hedged."""
    backends = [BackendProcess("b0"), BackendProcess("b1")]
    (manifests / "web.yaml").write_text(mesh_service(
        "web", [b.address for b in backends],
        "  loadBalancer: {algorithm: round-robin}\n"
        "  timeouts: {request: 10s, perTry: 100ms}\n"
        "  retries: {hedge: true, budget: {minPerSecond: 100}}\n"
        "  circuitBreaker: {consecutiveFailures: 100}\n",  # keep the frozen one in rotation
    ))
    proxy = RunningProxy(manifests)
    try:
        assert {get(proxy.outbound)[2] for _ in range(4)} == {b"b0", b"b1"}
        backends[1].freeze()
        took, answered_by = [], set()
        for _ in range(10):
            started = time.monotonic()
            status, _, body = get(proxy.outbound)
            took.append(time.monotonic() - started)
            assert status == 200
            answered_by.add(body)
        assert answered_by == {b"b0"}
        assert max(took) < 1.0, took  # not the 10 s request timeout: hedged after 100 ms
        assert sorted(took)[-5] >= 0.1, took  # half of them waited for the per-try timeout
        _, metrics = proxy.admin_get("/metrics")
        hedges = [line for line in metrics.decode().splitlines()
                  if line.startswith("tulle_hedges_total{") and 'dst_service="web"' in line]
        assert hedges and float(hedges[0].rsplit(" ", 1)[1]) >= 5, hedges
        # A POST is never hedged: on the frozen endpoint its per-try timeout is a 504.
        statuses = {get(proxy.outbound, method="POST", body=b"x")[0] for _ in range(2)}
        assert statuses == {200, 504}
        backends[1].thaw()
        deadline = time.monotonic() + 5
        while get(proxy.outbound)[2] != b"b1" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.monotonic() < deadline  # back in rotation once it wakes up
    finally:
        proxy.stop()
        for backend in backends:
            backend.thaw()
            backend.kill()
