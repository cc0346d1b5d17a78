"""The monitoring commands against a real proxy under a known load, as a user runs them.

The load (see tests/e2e/mesh_harness.py) sends a quarter of ``web``'s requests
to ``/status/500`` and one request in five to ``api``; the commands must show
exactly that: which service fails, how much, on which path and endpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh_harness import MonitoredMesh
from tests.support.proxy import RunningProxy

TULLE = str(Path(sys.executable).parent / "tulle")


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitoredMesh]:
    running = MonitoredMesh(tmp_path_factory.mktemp("monitored"))
    yield running
    running.stop()


def tulle(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TULLE, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_stat_shows_each_service_success_rate_and_rate(monitored: MonitoredMesh) -> None:
    result = tulle("stat", "--admin", monitored.admin, "--window", "2s", "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["service"]: row for row in json.loads(result.stdout)["rows"]}
    assert rows["web"]["successRate"] == pytest.approx(0.75, abs=0.07)
    assert rows["api"]["successRate"] == 1.0
    # 40 requests/s in all, four in five to web.
    assert rows["web"]["rps"] == pytest.approx(32, rel=0.3)
    assert rows["api"]["latencyMs"]["p50"] >= 20  # api's path sleeps 20 ms


def test_stat_wide_shows_each_endpoint_and_tcp(monitored: MonitoredMesh) -> None:
    result = tulle("stat", "web", "--admin", monitored.admin, "--window", "1s", "-o", "wide")
    assert result.returncode == 0, result.stderr
    for backend in monitored.web:
        assert backend.address in result.stdout
    assert "LATENCY_P99" in result.stdout and "TCP connections open now" in result.stdout


def test_tap_streams_the_failing_requests(monitored: MonitoredMesh) -> None:
    result = tulle("tap", "web", "--admin", monitored.admin, "--status", "500",
                   "--max-events", "5", "-o", "json", "--duration", "10s")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 5
    assert {(e["service"], e["path"], e["status"]) for e in events} == {
        ("web", "/status/500", 500)}
    assert {e["endpoint"] for e in events} <= {b.address for b in monitored.web}


def test_tap_lines_for_people(monitored: MonitoredMesh) -> None:
    result = tulle("tap", "--admin", monitored.admin, "--method", "GET", "--path", "/sleep",
                   "--max-events", "2", "--duration", "10s")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all("GET api/sleep/20 -> 200" in line for line in lines)


def test_tap_is_refused_by_a_proxy_that_does_not_allow_it(proxy: RunningProxy) -> None:
    result = tulle("tap", "--admin", f"127.0.0.1:{proxy.admin_port}", "--duration", "2s")
    assert result.returncode == 1
    assert "tap is off" in result.stderr and "--allow-tap" in result.stderr


def test_top_ranks_paths_with_their_success_rate(monitored: MonitoredMesh) -> None:
    result = tulle("top", "--admin", monitored.admin, "--duration", "2s")
    assert result.returncode == 0, result.stderr
    failing = next(line for line in result.stdout.splitlines() if "/status/500" in line)
    assert "0.00%" in failing
    assert any("/sleep/20" in line and "100.00%" in line for line in result.stdout.splitlines())


def test_routes_and_edges(monitored: MonitoredMesh) -> None:
    routes = tulle("routes", "web", "--admin", monitored.admin, "--window", "1s")
    assert routes.returncode == 0, routes.stderr
    assert "[default]" in routes.stdout
    edges = tulle("edges", "--admin", monitored.admin, "--name", f"{monitored.admin}=frontend",
                  "--window", "1s", "-o", "json")
    assert edges.returncode == 0, edges.stderr
    found = {(e["src"], e["dst"]) for e in json.loads(edges.stdout)["edges"]}
    assert found == {("frontend", "web"), ("frontend", "api")}


def test_check_passes_on_a_running_mesh_and_fails_on_a_dead_admin(
    monitored: MonitoredMesh,
) -> None:
    good = tulle("check", "-f", str(monitored.manifests), "--admin", monitored.admin)
    assert good.returncode == 0, good.stdout
    assert "✓ configuration" in good.stdout and "alive and ready" in good.stdout
    bad = tulle("check", "--admin", "127.0.0.1:1")
    assert bad.returncode == 1 and "✗ admin 127.0.0.1:1 is not answering" in bad.stdout
