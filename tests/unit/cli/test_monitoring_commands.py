"""The monitoring commands' logic on canned scrapes: rows, routes, edges, top, tap lines, check."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tulle.cli.check import run_checks
from tulle.cli.edges import UNKNOWN_SOURCE, edge_rows
from tulle.cli.formatting import millis, percent, service_name
from tulle.cli.main import cli
from tulle.cli.routes import DEFAULT_ROUTE, route_rows
from tulle.cli.stat import stat_rows
from tulle.cli.tap import format_event
from tulle.cli.top import PathTable
from tulle.telemetry.golden import parse_scrape
from tulle.telemetry.tap_client import tap_path


def series(direction: str, service: str, endpoint: str, ok: int, failed: int,
           extra: str = "") -> str:
    base = (f'direction="{direction}",dst_service="{service}",dst_namespace="default",'
            f'endpoint="{endpoint}"{extra}')
    return (f'response_total{{{base},status_code="200",classification="success",error=""}} {ok}\n'
            f'response_total{{{base},status_code="502",classification="failure",'
            f'error="connect"}} {failed}\n')


def window(text_before: str, text_after: str, source: str = "a:1") -> tuple[list, list]:
    return ([parse_scrape(source, text_before, 0.0)], [parse_scrape(source, text_after, 2.0)])


def test_stat_rows_per_service_and_per_endpoint() -> None:
    before = series("outbound", "web", "e1", 0, 0) + series("outbound", "web", "e2", 0, 0)
    after = series("outbound", "web", "e1", 10, 0) + series("outbound", "web", "e2", 6, 4)
    rows = stat_rows(*window(before, after), service=None, wide=False)
    row = rows[("outbound", "default", "web")]
    assert row.signals.rps == 10.0 and row.signals.success_rate == 0.8
    wide = stat_rows(*window(before, after), service="web", wide=True)
    assert wide[("outbound", "default", "web", "e2")].signals.success_rate == 0.6
    assert stat_rows(*window(before, after), service="api", wide=False) == {}


def test_routes_default_when_the_label_is_absent_and_named_when_present() -> None:
    plain = route_rows(*window("", series("outbound", "web", "e1", 4, 0)), "web", "outbound")
    assert list(plain) == [DEFAULT_ROUTE]
    routed = series("outbound", "web", "e1", 4, 0, ',route="items"') + series(
        "outbound", "web", "e1", 1, 1)
    rows = route_rows(*window("", routed), "web", "outbound")
    assert set(rows) == {"items", DEFAULT_ROUTE}


def test_edges_name_the_source_by_proxy_and_the_caller_when_labelled() -> None:
    text = (series("outbound", "api", "e1", 5, 0) + series("inbound", "web", "app", 3, 0)
            + series("inbound", "web", "app", 2, 0, ',src_service="frontend"'))
    rows = edge_rows(*window("", text, source="frontend-proxy"))
    assert ("frontend-proxy", "api", "outbound of frontend-proxy", "", "") in rows
    assert (UNKNOWN_SOURCE, "web", "inbound of frontend-proxy", "", "") in rows
    assert ("frontend", "web", "inbound of frontend-proxy", "", "") in rows


def test_edges_over_mutual_tls_name_both_identities() -> None:
    me, api = "spiffe://td/ns/shop/sa/web", "spiffe://td/ns/shop/sa/api"
    caller = "spiffe://td/ns/shop/sa/cli"
    text = (series("outbound", "api", "e1", 5, 0, f',tls="true",server_id="{api}"')
            + series("inbound", "web", "app", 3, 0, f',tls="true",client_id="{caller}"')
            + f'tulle_identity_info{{identity="{me}"}} 1.0\n')
    rows = edge_rows(*window("", text, source="web-proxy"))
    assert ("web-proxy", "api", "outbound of web-proxy", me, api) in rows
    assert (caller, "web", "inbound of web-proxy", caller, me) in rows


def test_top_aggregates_tap_events_per_path_without_query() -> None:
    table = PathTable()
    for status, path in [(200, "/a?x=1"), (500, "/a?x=2"), (200, "/b"), (200, "/a")]:
        table.add({"service": "web", "method": "GET", "path": path, "status": status,
                   "latency_ms": 2.0, "error": ""})
    (first_key, first), _ = table.busiest()
    assert first_key == ("web", "GET", "/a") and first.count == 3 and first.successes == 2
    assert first.quantile(0.99) == 2.0


def test_tap_line_and_query() -> None:
    line = format_event({"at": 0.0, "direction": "outbound", "method": "GET",
                         "authority": "web", "path": "/x", "status": 503,
                         "latency_ms": 1.25, "endpoint": "", "error": "no endpoint",
                         "admin": "a:1"}, {"a:1": "edge"})
    assert "GET web/x -> 503 1.2ms endpoint=- error=no endpoint proxy=edge" in line
    assert tap_path({"service": "web", "method": None, "status": 500}) == (
        "/tap?service=web&status=500")


def test_formatting() -> None:
    assert (percent(None), percent(0.995), millis(None), millis(3.14), millis(250)) == (
        "-", "99.50%", "-", "3.1ms", "250ms")
    assert service_name("", "x") == "(unknown)" and service_name("web", "shop") == "web.shop"


def test_check_reports_an_invalid_configuration(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {}\n")
    results = run_checks(bad, "127.0.0.1:1", None)
    assert not results[0].ok and "invalid" in results[0].text
    assert not results[-1].ok and "not answering" in results[-1].text


def test_commands_are_registered_and_reject_bad_admin_addresses() -> None:
    runner = CliRunner()
    for command in ("stat", "top", "tap", "routes", "edges", "check", "dashboard"):
        assert runner.invoke(cli, [command, "--help"]).exit_code == 0, command
    result = runner.invoke(cli, ["stat", "--admin", "nope"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output
    result = runner.invoke(cli, ["stat", "--admin", "127.0.0.1:1", "--window", "10ms"])
    assert result.exit_code == 1 and "cannot read" in result.output
