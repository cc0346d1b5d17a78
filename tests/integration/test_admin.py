"""The admin listener: health, state and Prometheus metrics with Linkerd's names."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.tools import find_tool
from tests.support.backend import Backend
from tests.support.client import get
from tests.support.proxy import RunningProxy, mesh_service
from tests.support.tools import require_tools
from tulle.telemetry import Metrics
from tulle.telemetry.admin import AdminLimits, AdminSources, serve_admin
from tulle.telemetry.collector import registry_for
from tulle.telemetry.tap import TapHub


def test_live_and_ready(proxy: RunningProxy) -> None:
    assert proxy.admin_get("/live") == (200, b"live\n")
    assert proxy.admin_get("/ready") == (200, b"ready\n")
    assert proxy.admin_get("/nope")[0] == 404


def test_config_shows_the_effective_configuration(proxy: RunningProxy) -> None:
    status, body = proxy.admin_get("/config")
    config = json.loads(body)
    assert status == 200
    (web,) = config["services"]
    assert web["name"] == "web"
    assert web["timeouts"]["request"] == "2s"
    assert web["loadBalancer"]["algorithm"] == "round-robin"


def test_endpoints_shows_each_endpoint(proxy: RunningProxy, backends: list[Backend]) -> None:
    status, body = proxy.admin_get("/endpoints")
    outbound = json.loads(body)["outbound"]
    assert status == 200
    (web,) = outbound
    assert [e["address"] for e in web["endpoints"]] == [b.address for b in backends]
    assert all(e["state"] == "active" and e["inFlight"] == 0 for e in web["endpoints"])


def _samples(proxy: RunningProxy) -> dict[str, list[tuple[dict[str, str], float]]]:
    return _samples_of(proxy.admin_get("/metrics")[1])


def _samples_of(text: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_metrics_count_requests_responses_latency_and_connections(
    proxy: RunningProxy, backends: list[Backend]
) -> None:
    def web_total(samples, name: str, **match: str) -> float:  # type: ignore[no-untyped-def]
        return sum(
            value for labels, value in samples.get(name, [])
            if labels.get("dst_service") == "web"
            and all(labels.get(k) == v for k, v in match.items())
        )

    before = _samples(proxy)
    for _ in range(9):
        assert get(proxy.outbound)[0] == 200
    assert get(proxy.outbound, "/status/500")[0] == 500  # 500 is not retried by default
    after = _samples(proxy)

    def delta(name: str, **match: str) -> float:
        return web_total(after, name, **match) - web_total(before, name, **match)

    assert delta("request_total", direction="outbound") == 10
    assert delta("response_total", classification="success", status_code="200") == 9
    assert delta("response_total", classification="failure", status_code="500") == 1
    assert delta("response_latency_ms_count") == 10
    buckets = {labels["le"] for labels, _ in after["response_latency_ms_bucket"]}
    assert {"1.0", "50.0", "50000.0", "+Inf"} <= buckets
    for backend in backends:  # labelled per endpoint
        assert web_total(after, "request_total", endpoint=backend.address) >= 3
    assert web_total(after, "tcp_open_total") == 0  # tcp metrics carry direction/peer only
    opened = sum(v for labels, v in after["tcp_open_total"]
                 if labels == {"direction": "outbound", "peer": "src"})
    assert opened >= 10


def test_the_default_balancer_publishes_its_latency_estimate_per_endpoint(
    backends: list[Backend], manifests: Path
) -> None:
    (manifests / "web.yaml").write_text(mesh_service("web", [b.address for b in backends]))
    proxy = RunningProxy(manifests)  # the default balancer: expected-latency
    try:
        for _ in range(10):
            assert get(proxy.outbound)[0] == 200
        samples = _samples(proxy)
        estimates = samples["tulle_balancer_latency_estimate_seconds"]
        assert {labels["endpoint"] for labels, _ in estimates} == {b.address for b in backends}
        assert all(0 <= value < 1 for _, value in estimates)
        states = {labels["state"] for labels, _ in samples["tulle_endpoint_state"]}
        assert states == {"active"}
    finally:
        proxy.stop()


# -- the admin listener's limits (issue 15, #13) ---------------------------------


def test_the_admin_listener_caps_its_connections(proxy: RunningProxy) -> None:
    idle = [socket.create_connection(("127.0.0.1", proxy.admin_port)) for _ in range(
        AdminLimits().max_connections)]
    try:
        time.sleep(0.2)  # let the proxy accept them all
        status, body = proxy.admin_get("/live")
        assert (status, body) == (503, b"admin connection limit reached\n")
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while proxy.admin_get("/live")[0] != 200:
        assert time.monotonic() < deadline, "the slots were not given back"
        time.sleep(0.05)
    samples = _samples(proxy)
    assert samples["tulle_admin_connections_refused_total"][0][1] >= 1


async def test_admin_head_and_idle_timeouts_on_real_sockets() -> None:
    loop = asyncio.get_running_loop()
    sources = AdminSources(registry=lambda: registry_for(Metrics()), tap=TapHub(clock=loop.time),
                           ready=lambda: True, config=dict, endpoints=dict)
    limits = AdminLimits(head_timeout=0.3, idle_timeout=0.6, max_connections=8)
    server = await serve_admin(loop, "127.0.0.1", 0, sources, limits)
    port = server.sockets[0].getsockname()[1]
    try:
        silent = await asyncio.open_connection("127.0.0.1", port)
        idle = await asyncio.open_connection("127.0.0.1", port)
        idle[1].write(b"GET /live HTTP/1.1\r\nHost: admin\r\n\r\n")
        started = loop.time()
        answer = await asyncio.wait_for(silent[0].read(), 5)  # read until closed
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 0.25 < loop.time() - started < 2
        answer = await asyncio.wait_for(idle[0].read(), 5)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"live\n")
        assert 0.55 < loop.time() - started < 2
        for _, writer in (silent, idle):
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


# Linkerd's names, kept as Linkerd spells them so its dashboards and queries work;
# promtool objects to their "_ms". Tulle's own metrics use base units.
LINKERD_NAMES_WITH_UNITS = {"response_latency_ms", "route_response_latency_ms"}


def test_metrics_pass_promtool_except_linkerds_own_names(
    backends: list[Backend], manifests: Path
) -> None:
    require_tools(["promtool"])
    (manifests / "web.yaml").write_text(mesh_service("web", [b.address for b in backends]))
    proxy = RunningProxy(manifests)  # peak-ewma: publishes its latency estimate
    try:
        for _ in range(10):
            assert get(proxy.outbound)[0] == 200
        _, text = proxy.admin_get("/metrics")
    finally:
        proxy.stop()
    assert b"tulle_balancer_latency_estimate_seconds{" in text
    checked = subprocess.run([find_tool("promtool"), "check", "metrics"], input=text,
                             capture_output=True, timeout=30)
    problems = (checked.stdout + checked.stderr).decode().splitlines()
    named = {line.split()[0] for line in problems if line.strip()}
    assert named <= LINKERD_NAMES_WITH_UNITS, problems
    estimates = _samples_of(text)["tulle_balancer_latency_estimate_seconds"]
    assert all(0 <= value < 1 for _, value in estimates)  # seconds, not milliseconds
