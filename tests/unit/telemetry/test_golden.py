"""Golden signals grouped by labels across proxies: sums, rates, absent labels, resets."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tulle.telemetry.golden import group_window, parse_scrape


def metrics(ok: int, failed: int, service: str = "web", route: str | None = None,
            fast: int | None = None) -> str:
    """Exposition text for one service: ``ok``/``failed`` responses, ``fast`` of them <= 10ms."""
    route_label = f',route="{route}"' if route else ""
    base = (f'direction="outbound",dst_service="{service}",dst_namespace="default",'
            f'endpoint="127.0.0.1:9001"{route_label}')
    total = ok + failed
    fast = total if fast is None else fast
    return "\n".join([
        f'response_total{{{base},status_code="200",classification="success",error=""}} {ok}',
        f'response_total{{{base},status_code="500",classification="failure",error=""}} {failed}',
        f'response_latency_ms_bucket{{{base},le="10.0"}} {fast}',
        f'response_latency_ms_bucket{{{base},le="100.0"}} {total}',
        f'response_latency_ms_bucket{{{base},le="+Inf"}} {total}',
        'tcp_open_connections{direction="outbound",peer="src"} 3',
        "",
    ])


def by_service(source: str, labels: Mapping[str, str]) -> str | None:
    return labels.get("dst_service")


def test_rates_and_success_rate_come_from_the_difference() -> None:
    before = [parse_scrape("a", metrics(100, 0), taken_at=0.0)]
    after = [parse_scrape("a", metrics(190, 10), taken_at=2.0)]
    row = group_window(before, after, by_service)["web"]
    assert row.signals.rps == pytest.approx(50.0)
    assert row.signals.success_rate == pytest.approx(0.9)
    assert row.signals.p50 is not None and row.signals.p50 <= 10.0
    assert row.tcp_open is None  # no tcp_key: tcp is not grouped


def test_proxies_add_up_each_over_its_own_interval() -> None:
    before = [parse_scrape("a", metrics(0, 0), 0.0), parse_scrape("b", metrics(0, 0), 10.0)]
    after = [parse_scrape("a", metrics(10, 0), 1.0), parse_scrape("b", metrics(0, 20), 12.0)]
    row = group_window(before, after, by_service)["web"]
    assert row.signals.rps == pytest.approx(10.0 + 10.0)
    assert row.signals.success_rate == pytest.approx(10 / 30)


def test_an_absent_label_is_left_to_the_key_function() -> None:
    before = [parse_scrape("a", metrics(0, 0), 0.0)]
    after = [parse_scrape("a", metrics(4, 0), 1.0)]
    rows = group_window(before, after, lambda s, labels: labels.get("route", "[default]"))
    assert list(rows) == ["[default]"]
    routed = [parse_scrape("a", metrics(4, 0, route="get-items"), 1.0)]
    rows = group_window(before, routed, lambda s, labels: labels.get("route", "[default]"))
    assert list(rows) == ["get-items"]


def test_a_restarted_proxy_counts_from_zero() -> None:
    before = [parse_scrape("a", metrics(1000, 0), 0.0)]
    after = [parse_scrape("a", metrics(5, 5), 1.0)]
    row = group_window(before, after, by_service)["web"]
    assert row.signals.responses == 10


def test_series_left_out_by_the_key_are_not_rows() -> None:
    before = [parse_scrape("a", metrics(0, 0), 0.0)]
    after = [parse_scrape("a", metrics(5, 0), 1.0)]
    assert group_window(before, after, lambda source, labels: None) == {}


def test_tcp_gauges_group_with_their_own_key() -> None:
    scrape = parse_scrape("a", metrics(1, 0), 1.0)
    rows = group_window([scrape], [scrape], by_service, tcp_key=lambda source, labels: "web")
    assert rows["web"].tcp_open == 3
