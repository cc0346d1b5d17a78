"""Real Prometheus scraping a real proxy under load; the Grafana dashboards' queries.

The load generator sends a known mix (a quarter of ``web``'s requests hit
``/status/500``, one request in five goes to ``api``), so the success ratio
Prometheus computes from the proxy's counters must match what the client
counted. Every PromQL expression in ``deploy/grafana`` must parse and return
data from that same Prometheus.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.e2e.mesh_harness import REPO, MonitoredMesh
from tests.e2e.prometheus_harness import RunningPrometheus

SUCCESS_RATIO = (
    'sum(rate(response_total{classification="success",direction="outbound"}[30s]))'
    ' / sum(rate(response_total{direction="outbound"}[30s]))'
)
# What a dashboard variable stands for when the test runs its queries.
VARIABLES = {"$__rate_interval": "30s", "$service": "web", "${datasource}": "", "$route": ".*"}


def _ratio(counts: dict[tuple[str, int], int]) -> tuple[float, int]:
    total = sum(counts.values())
    ok = sum(n for (_, status), n in counts.items() if 0 < status < 500)
    return ok / total, total


def test_prometheus_success_ratio_matches_the_load_generator(
    mesh: MonitoredMesh, prometheus: RunningPrometheus
) -> None:
    start = mesh.load.snapshot()
    result = prometheus.query_until(SUCCESS_RATIO, timeout=15)
    time.sleep(3)  # a few more scrapes into the window
    result = prometheus.query_until(SUCCESS_RATIO, timeout=5)
    assert result, f"no data from Prometheus; its log: {prometheus.log_path.read_text()[-2000:]}"
    measured = float(result[0]["value"][1])  # type: ignore[index]
    counted, total = _ratio(mesh.load.snapshot())
    assert total - sum(start.values()) > 50, "the load generator barely ran"
    assert counted == pytest.approx(0.8, abs=0.02)  # the mix: 4 failures in 20
    assert measured == pytest.approx(counted, abs=0.03)


def dashboard_expressions() -> list[tuple[str, str, str]]:
    """(file, panel title, expr) of every target of every panel."""
    found = []
    for path in sorted((REPO / "deploy" / "grafana").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
    return found


def test_every_dashboard_has_panels_and_variables_resolve() -> None:
    expressions = dashboard_expressions()
    assert {name for name, _, _ in expressions} == {
        "tulle-top-line.json", "tulle-service.json", "tulle-routes.json"}
    for _, _, expr in expressions:
        left = expr
        for variable, value in VARIABLES.items():
            left = left.replace(variable, value)
        assert not re.search(r"\$\w", left), f"unknown variable in {expr}"


def test_every_dashboard_query_returns_data(
    mesh: MonitoredMesh, prometheus: RunningPrometheus
) -> None:
    prometheus.query_until(SUCCESS_RATIO, timeout=15)
    empty = []
    for name, title, expr in dashboard_expressions():
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        answer = prometheus.query(expr)
        assert answer["status"] == "success", f"{name} / {title}: {answer.get('error')}: {expr}"
        if not answer["data"]["result"]:  # type: ignore[index]
            empty.append(f"{name} / {title}: {expr}")
    assert not empty, "queries with no data:\n" + "\n".join(empty)


def test_check_sees_prometheus(prometheus: RunningPrometheus, mesh: MonitoredMesh) -> None:
    from tulle.cli.check import check_prometheus

    prometheus.query_until("up", timeout=10)
    result = check_prometheus(prometheus.url)
    assert result.ok, result.text
    assert "1/1 targets up" in result.text
    assert not check_prometheus("http://127.0.0.1:1").ok
