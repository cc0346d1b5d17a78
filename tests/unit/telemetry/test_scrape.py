"""The client-side metrics reader: parsing, deltas and quantiles on canned text."""

from __future__ import annotations

import pytest

from tulle.telemetry.scrape import (
    Target,
    _body_of,
    compute_window,
    histogram_quantile,
    parse_snapshot,
)

BOUNDS = [1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000]


def labels(endpoint: str, direction: str = "outbound") -> str:
    return (
        f'direction="{direction}",dst_service="web",dst_namespace="default",'
        f'endpoint="{endpoint}"'
    )


def histogram(endpoint: str, cumulative: dict[float, int], direction: str = "outbound") -> str:
    """Lines of a latency histogram; bounds not given carry the previous count."""
    lines, count = [], 0
    for bound in BOUNDS:
        count = cumulative.get(bound, count)
        lines.append(
            f'response_latency_ms_bucket{{{labels(endpoint, direction)},le="{float(bound)}"}} '
            f"{count}"
        )
    lines.append(f'response_latency_ms_bucket{{{labels(endpoint, direction)},le="+Inf"}} {count}')
    lines.append(f"response_latency_ms_count{{{labels(endpoint, direction)}}} {count}")
    lines.append(f"response_latency_ms_sum{{{labels(endpoint, direction)}}} 0")
    return "\n".join(lines)


def responses(endpoint: str, ok: int, failed: int, status: str = "500", error: str = "") -> str:
    return "\n".join(
        [
            f'response_total{{{labels(endpoint)},status_code="200",classification="success",'
            f'error=""}} {ok}',
            f'response_total{{{labels(endpoint)},status_code="{status}",'
            f'classification="failure",error="{error}"}} {failed}',
        ]
    )


PREVIOUS = "\n".join(
    [
        "# TYPE response_total counter",
        responses("127.0.0.1:9001", 10, 0),
        responses("127.0.0.1:9002", 5, 1),
        "# TYPE response_latency_ms histogram",
        histogram("127.0.0.1:9001", {1: 2, 2: 5, 3: 10}),
        histogram("127.0.0.1:9002", {50: 6}),
    ]
)

# Over 2 s, 9001 answered 98 successes and 2 failures (100), with latencies
# (non-cumulative): 10 under 1 ms, 20 in (1,2], 20 in (2,3], 20 in (3,4],
# 20 in (4,5], 10 in (5,10].  9002 answered 10 successes, all in (40,50].
# The proxy itself answered 5 requests with 503 (no endpoint), 1 ms each.
CURRENT = "\n".join(
    [
        "# TYPE response_total counter",
        responses("127.0.0.1:9001", 108, 2),
        responses("127.0.0.1:9002", 15, 1),
        responses("", 0, 5, status="503", error="no-endpoints"),
        "# TYPE response_latency_ms histogram",
        histogram("127.0.0.1:9001", {1: 12, 2: 35, 3: 60, 4: 80, 5: 100, 10: 110}),
        histogram("127.0.0.1:9002", {50: 16}),
        histogram("", {1: 5}),
    ]
)

WEB = Target("outbound", "default", "web", "")
E1 = Target("outbound", "default", "web", "127.0.0.1:9001")
E2 = Target("outbound", "default", "web", "127.0.0.1:9002")


def window():
    return compute_window(parse_snapshot(PREVIOUS, 100.0), parse_snapshot(CURRENT, 102.0))


def test_endpoint_signals_are_the_delta_between_snapshots() -> None:
    e1 = window().endpoints[E1]
    assert (e1.successes, e1.failures) == (98, 2)
    assert e1.rps == 50.0
    assert e1.success_rate == 0.98
    # p50: rank 50 of 100 falls in (2,3] holding ranks 31..50 -> upper bound 3.
    assert e1.p50 == pytest.approx(3.0)
    # p95: rank 95 falls in (5,10] holding 91..100 -> 5 + 5 * 5/10.
    assert e1.p95 == pytest.approx(7.5)
    # p99: 5 + 5 * 9/10.
    assert e1.p99 == pytest.approx(9.5)


def test_slow_endpoint_interpolates_within_its_bucket() -> None:
    e2 = window().endpoints[E2]
    assert e2.rps == 5.0
    assert e2.success_rate == 1.0
    assert e2.p50 == pytest.approx(45.0)  # 40 + 10 * 5/10
    assert e2.p99 == pytest.approx(49.9)  # 40 + 10 * 9.9/10


def test_service_totals_include_the_proxys_own_answers() -> None:
    result = window()
    web = result.services[WEB]
    assert (web.successes, web.failures) == (108, 7)
    assert web.rps == 57.5
    assert web.success_rate == pytest.approx(108 / 115)
    # 115 observations: 15 in [0,1], 20 in (1,2], 20 in (2,3], 20 in (3,4], 20 in (4,5],
    # 10 in (5,10], 10 in (40,50]. p50: rank 57.5; cumulative is 55 at 3 ms and 75 at
    # 4 ms -> 3 + 1 * (57.5 - 55) / 20.
    assert web.p50 == pytest.approx(3.125)
    # p99: rank 113.85 in (40,50] (105..115) -> 40 + 10 * 8.85/10.
    assert web.p99 == pytest.approx(48.85)
    # The proxy's own answers show as an endpoint-less row.
    own = result.endpoints[WEB]
    assert (own.successes, own.failures) == (0, 5)
    assert own.success_rate == 0.0


def test_an_idle_window_has_no_rate_or_latency() -> None:
    snapshot = parse_snapshot(PREVIOUS, 1.0)
    idle = compute_window(snapshot, parse_snapshot(PREVIOUS, 2.0))
    e1 = idle.endpoints[E1]
    assert e1.rps == 0.0
    assert e1.success_rate is None
    assert e1.p50 is None and e1.p99 is None


def test_a_counter_reset_counts_from_zero() -> None:
    after_restart = "\n".join([responses("127.0.0.1:9001", 4, 0), histogram("127.0.0.1:9001", {})])
    result = compute_window(parse_snapshot(PREVIOUS, 0.0), parse_snapshot(after_restart, 1.0))
    assert result.endpoints[E1].rps == 4.0


def test_other_directions_are_left_out() -> None:
    text = histogram("127.0.0.1:9001", {1: 3}, direction="inbound")
    result = compute_window(parse_snapshot("", 0.0), parse_snapshot(text, 1.0))
    assert result.endpoints == {}
    assert result.services == {}


def test_parses_text_without_type_lines() -> None:
    text = "\n".join(line for line in CURRENT.splitlines() if not line.startswith("#"))
    assert parse_snapshot(text, 0.0) == parse_snapshot(CURRENT, 0.0)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.0, 0.0),
        (0.25, 0.5),  # first bucket starts at 0: 0 + 1 * 1/2
        (0.5, 1.0),
        (0.75, 1.5),
        (1.0, 2.0),  # rank 4: cumulative at 2 is already 4, so the upper bound
    ],
)
def test_histogram_quantile_interpolates_linearly(q: float, expected: float) -> None:
    buckets = [(1.0, 2), (2.0, 4), (float("inf"), 4)]
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


def test_histogram_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, [(1.0, 1), (5.0, 2), (float("inf"), 10)]) == 5.0


def test_histogram_quantile_of_nothing_is_none() -> None:
    assert histogram_quantile(0.5, [(1.0, 0), (float("inf"), 0)]) is None
    assert histogram_quantile(0.5, []) is None


def test_body_of_a_chunked_response() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    assert _body_of(raw, "http://x/metrics") == "hello world"


def test_body_of_an_error_response_raises() -> None:
    with pytest.raises(OSError, match="503"):
        _body_of(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", "http://x/metrics")
