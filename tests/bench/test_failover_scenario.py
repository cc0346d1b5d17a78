"""The failover scenario: its timeline arithmetic on canned data, its load generator
against in-process servers, its peer configs, and (marked ``bench``) a quick run end
to end against real proxies.

The quick run kills and restarts an endpoint under 200 requests/s through HAProxy,
nginx and Tulle (about 30 s). Like ``test_harness.py`` it skips when a tool is
missing, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import fixed_rate, timeline
from bench.backends_slow import Delay, Ramp
from bench.named_backend import HEADER, NamedOk, response
from bench.processes import free_ports
from bench.scenarios import failover, load_scenario
from tests.support.tools import require_tools

CANNED = """\
offset,latency,status,error,backend
0.000000,0.001000,200,,b1
0.250000,0.002000,200,,b2
0.500000,0.003000,200,,b3
0.999999,0.004000,200,,b1
1.000000,0.500000,0,refused,
1.250000,0.010000,502,,
1.500000,0.020000,200,,b1
2.100000,5.000000,0,timeout,
2.200000,0.001000,200,,b2
2.900000,0.002000,200,,b2
"""


def _records() -> list[timeline.Record]:
    return timeline.parse_records(CANNED)


# ---------------------------------------------------------------- timeline


def test_parse_records_keeps_failures_and_backends() -> None:
    records = _records()
    assert len(records) == 10
    assert records[0] == timeline.Record(0.0, 0.001, 200, "", "b1")
    assert records[4].failure == "refused" and not records[4].ok
    assert records[5].failure == "HTTP 502"
    assert records[7].done == pytest.approx(7.1)


def test_summary_counts_failures_and_takes_percentiles_of_successes_only() -> None:
    summary = timeline.summarize(_records(), 0, 3)
    assert summary.requests == 10
    assert summary.failures == 3
    assert summary.failure_kinds == {"refused": 1, "HTTP 502": 1, "timeout": 1}
    assert summary.failure_percent == pytest.approx(30.0)
    # Seven successes: 1, 2, 3, 4, 20, 1, 2 ms → sorted 1,1,2,2,3,4,20.
    assert summary.p50 == pytest.approx(0.002)
    assert summary.p99 == pytest.approx(0.020)
    assert summary.maximum == pytest.approx(0.020)


def test_buckets_go_by_due_time_with_half_open_bounds() -> None:
    got = timeline.buckets(_records(), seconds=3)
    assert [(b.start, b.end) for b in got] == [(0, 1), (1, 2), (2, 3)]
    assert [b.requests for b in got] == [4, 3, 3]
    assert [b.failures for b in got] == [0, 2, 1]
    assert got[0].p99 == pytest.approx(0.004)
    # The 5 s timeout is counted in the second it was due (2 s), not when it ended.
    assert got[2].failure_kinds == {"timeout": 1}
    assert got[1].p99 == pytest.approx(0.020)


def test_bucket_without_success_has_no_percentile_and_last_bucket_may_be_short() -> None:
    records = [timeline.Record(0.1, 0.5, 0, "reset"), timeline.Record(1.2, 0.001, 200)]
    got = timeline.buckets(records, seconds=1.5)
    assert [(b.start, b.end) for b in got] == [(0, 1), (1, 1.5)]
    assert got[0].p99 is None and got[0].failures == 1
    assert got[1].p99 == pytest.approx(0.001)


def test_buckets_ignore_records_outside_the_run_and_reject_zero_width() -> None:
    records = [timeline.Record(-0.1, 0.001, 200), timeline.Record(3.0, 0.001, 200)]
    assert [b.requests for b in timeline.buckets(records, seconds=3)] == [0, 0, 0]
    with pytest.raises(ValueError):
        timeline.buckets(records, seconds=3, width=0)


def test_first_answer_from_a_backend_after_a_moment() -> None:
    records = _records()
    assert timeline.first_answer_from(records, "b2", after=1.0) == pytest.approx(2.201)
    assert timeline.first_answer_from(records, "b3", after=1.0) is None
    assert timeline.first_answer_from(records, "b1", after=0.0) == pytest.approx(0.001)


def test_share_per_bucket_counts_successes_of_one_backend() -> None:
    assert timeline.share_per_bucket(_records(), "b1", seconds=3) == [2, 1, 0]
    assert timeline.share_per_bucket(_records(), "b2", seconds=3) == [1, 0, 2]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    records = _records()
    timelines = [
        timeline.Timeline(
            name=name,
            buckets=timeline.buckets(records, 3),
            served_by_killed=timeline.share_per_bucket(records, "b2", 3),
        )
        for name in ("a", "b")
    ]
    path = timeline.plot(tmp_path / "t.png", "title", timelines, {"kill": 1, "back": 2})
    assert path.read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------- the load generator


async def _serve(protocol_factory: object) -> tuple[asyncio.Server, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol_factory, "127.0.0.1", 0)  # type: ignore[arg-type]
    return server, server.sockets[0].getsockname()[1]


async def test_generator_sends_on_schedule_and_records_the_backend() -> None:
    loop = asyncio.get_running_loop()
    ramp = Ramp(loop)
    server, port = await _serve(lambda: NamedOk(Delay(0, None, 1), ramp, response("bx")))
    try:
        start = loop.time() + 0.05
        rows = await fixed_rate.run(
            f"http://127.0.0.1:{port}/", 100, 0.3, _monotonic(start), 1.0, "bench"
        )
    finally:
        server.close()
    assert len(rows) == 30
    assert [round(row[0], 3) for row in rows] == [round(i / 100, 3) for i in range(30)]
    assert {(row[2], row[3], row[4]) for row in rows} == {(200, "", "bx")}
    assert all(0 < row[1] < 1.0 for row in rows)


async def test_generator_counts_refused_connections() -> None:
    (port,) = free_ports(1)  # nothing listens there
    loop = asyncio.get_running_loop()
    rows = await fixed_rate.run(
        f"http://127.0.0.1:{port}/", 100, 0.1, _monotonic(loop.time()), 1.0, "bench"
    )
    assert len(rows) == 10
    assert {(row[2], row[3]) for row in rows} == {(0, "refused")}


async def test_generator_times_out_a_silent_server_and_counts_resets() -> None:
    class Silent(asyncio.Protocol):
        pass

    class Rude(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.close()

    loop = asyncio.get_running_loop()
    silent, silent_port = await _serve(Silent)
    rude, rude_port = await _serve(Rude)
    try:
        timed_out = await fixed_rate.run(
            f"http://127.0.0.1:{silent_port}/", 50, 0.1, _monotonic(loop.time()), 0.2, "bench"
        )
        reset = await fixed_rate.run(
            f"http://127.0.0.1:{rude_port}/", 50, 0.1, _monotonic(loop.time()), 1.0, "bench"
        )
    finally:
        silent.close()
        rude.close()
    assert {(row[2], row[3]) for row in timed_out} == {(0, "timeout")}
    assert all(0.19 <= row[1] < 0.5 for row in timed_out)
    assert {(row[2], row[3]) for row in reset} == {(0, "reset")}


def _monotonic(loop_time: float) -> float:
    """The ``time.monotonic()`` value of a running loop's ``loop.time()`` value."""
    import time

    return time.monotonic() + (loop_time - asyncio.get_running_loop().time())


def test_named_backend_answer_is_ok_with_its_name() -> None:
    answer = response("b7")
    assert answer.endswith(b"\r\n\r\nok\n")
    assert f"{HEADER}: b7\r\n".encode() in answer


# ---------------------------------------------------------------- peer configs


def test_haproxy_config_has_checks_retries_and_redispatch() -> None:
    text = failover.render_haproxy(8080, ["127.0.0.1:1", "127.0.0.1:2"])
    assert "    server s1 127.0.0.1:1 check inter 1s fall 2 rise 1\n" in text
    assert "    server s2 127.0.0.1:2 check inter 1s fall 2 rise 1\n" in text
    for line in (
        "retries 2",
        "retry-on all-retryable-errors",
        "option redispatch",
        "balance roundrobin",
        "http-reuse always",
        "bind 127.0.0.1:8080",
    ):
        assert f"    {line}\n" in text


def test_nginx_config_has_passive_failure_handling(tmp_path: Path) -> None:
    text = failover.render_nginx(tmp_path, 8080, ["127.0.0.1:1", "127.0.0.1:2"])
    assert "server 127.0.0.1:1 max_fails=1 fail_timeout=1s;" in text
    assert "server 127.0.0.1:2 max_fails=1 fail_timeout=1s;" in text
    assert text.count("proxy_next_upstream error timeout;") == 1
    assert "keepalive 64;" in text


# ---------------------------------------------------------------- end to end




@pytest.mark.bench
def test_failover_quick_kills_and_restarts_an_endpoint_per_proxy(tmp_path: Path) -> None:
    from bench.__main__ import run_scenario

    require_tools(load_scenario("failover").TOOLS)
    report, written = run_scenario(
        "failover", quick=True, results_dir=tmp_path, peer_names=("haproxy", "nginx", "tulle")
    )

    results = report.table("Failover")
    requests = results.column("requests")
    expected = failover.QUICK.rate * failover.QUICK.seconds
    assert requests == dict.fromkeys(("haproxy", "nginx", "tulle"), f"{expected:,.0f}")
    # Tulle's promise (docs/failover.md): a kill -9 under GET load fails nothing.
    assert results.column("failed")["tulle"] == "0"

    events = report.table("When things happened")
    for proxy, killed in events.column(f"{failover.KILLED} killed").items():
        assert float(killed) == pytest.approx(failover.QUICK.phase_seconds, abs=0.3), proxy
    back_at = 2 * failover.QUICK.phase_seconds
    for proxy, back in events.column("listening again").items():
        assert back_at <= float(back) < back_at + 2, proxy

    assert written == tmp_path / "failover.md"
    assert (tmp_path / "failover.png").read_bytes().startswith(b"\x89PNG")
