"""Parsing wrk and hey output, on canned outputs captured from the real tools."""

from __future__ import annotations

import pytest

from bench.load import LoadFailed, parse_hey_csv, parse_wrk

WRK_CLEAN = """\
Running 10s test @ http://127.0.0.1:40001/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   340.12us  101.55us   5.03ms   91.20%
    Req/Sec    94.11k     4.02k  100.19k    80.00%
  936512 requests in 10.00s, 133.97MB read
Requests/sec:  93650.88
Transfer/sec:     13.40MB
"""

WRK_WITH_ERRORS = """\
Running 2s test @ http://127.0.0.1:40002/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms    0.50ms  10.00ms   70.00%
    Req/Sec    12.00k     1.00k   14.00k    60.00%
  24001 requests in 2.10s, 3.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 17
Requests/sec:  11429.05
Transfer/sec:      1.43MB
"""

HEY_CSV = """\
response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
0.0012,0.0006,0.0000,0.0001,0.0003,0.0000,200,0.1042
0.0008,0.0000,0.0000,0.0001,0.0006,0.0000,200,0.2040
0.0007,0.0000,0.0000,0.0001,0.0005,0.0001,502,0.2042
0.0100,0.0000,0.0000,0.0001,0.0005,0.0001,200,0.3000
"""


def test_wrk_clean_run() -> None:
    result = parse_wrk(WRK_CLEAN)
    assert result.requests == 936512
    assert result.seconds == 10.0
    assert result.requests_per_second == 93650.88
    assert (result.non_2xx, result.socket_errors) == (0, 0)


def test_wrk_counts_non_2xx_and_socket_errors() -> None:
    result = parse_wrk(WRK_WITH_ERRORS)
    assert result.requests == 24001
    assert result.seconds == pytest.approx(2.1)
    assert result.non_2xx == 17
    assert result.socket_errors == 5


def test_wrk_duration_units() -> None:
    result = parse_wrk(WRK_CLEAN.replace("in 10.00s", "in 1.50m"))
    assert result.seconds == pytest.approx(90.0)


def test_wrk_garbage_is_an_error() -> None:
    with pytest.raises(LoadFailed, match="cannot parse wrk"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_hey_csv_rows_become_latencies_and_statuses() -> None:
    result = parse_hey_csv(HEY_CSV, seconds=2.0)
    assert result.latencies == [0.0012, 0.0008, 0.0007, 0.0100]
    assert result.statuses == {200: 3, 502: 1}
    assert result.requests == 4
    assert result.non_2xx == 1
    assert result.achieved_rate == 2.0


def test_hey_csv_with_only_a_header_has_no_requests() -> None:
    # What hey prints when every request failed (it omits failures from the CSV).
    result = parse_hey_csv(HEY_CSV.splitlines()[0] + "\n", seconds=1.0)
    assert result.requests == 0
    assert result.achieved_rate == 0.0


def test_hey_summary_instead_of_csv_is_an_error() -> None:
    with pytest.raises(LoadFailed, match="cannot parse hey"):
        parse_hey_csv("\nSummary:\n  Total:\t1.0012 secs\n", seconds=1.0)


def test_hey_malformed_row_is_an_error() -> None:
    with pytest.raises(LoadFailed, match="row"):
        parse_hey_csv(HEY_CSV + "oops,1,2,3,4,5,xx,7\n", seconds=1.0)
