"""The balancing suite: its backends (in process), its peer configs, its arithmetic on
canned records, and (marked ``bench``) one case run for real against Tulle and HAProxy.

Like the other scenario tests, the real run skips when a tool is missing, except in
CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bench import timeline
from bench.backends_mixed import Behaviour, DelayedAnswer, Profile, answer, parse_spec
from bench.harness import open_harness
from bench.named_backend import HEADER
from bench.scenarios import balancing, load_scenario
from tests.support.tools import require_tools

# ---------------------------------------------------------------- backends


def test_a_profile_survives_its_spec() -> None:
    profile = Profile("slow", "127.0.0.1", 9002, delay_ms=60, jitter=0.3, fail=0.05,
                      workers=1, heavy_share=0.01, heavy_factor=100, cold_factor=10,
                      cold_seconds=3)
    assert parse_spec(profile.spec()) == profile
    assert parse_spec("a=127.0.0.1:9001") == Profile("a", "127.0.0.1", 9001)


@pytest.mark.parametrize("spec", ["127.0.0.1:9001", "a=127.0.0.1", "a=127.0.0.1:1,speed=9"])
def test_a_bad_spec_says_what_was_expected(spec: str) -> None:
    with pytest.raises(ValueError, match=r"expected NAME=HOST:PORT|unknown option"):
        parse_spec(spec)


def test_answers_name_their_backend() -> None:
    assert answer("b1", True).startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"{HEADER}: b1\r\n".encode() in answer("b1", False)
    assert answer("b1", False).startswith(b"HTTP/1.1 500 ")


async def _serve(profile: Profile) -> tuple[asyncio.Server, int]:
    loop = asyncio.get_running_loop()
    behaviour = Behaviour(profile, loop)
    server = await loop.create_server(lambda: DelayedAnswer(behaviour), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _get(port: int) -> tuple[float, bytes]:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    data = await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(3)
    writer.close()
    return time.monotonic() - started, data


async def test_one_worker_queues_the_second_request_behind_the_first() -> None:
    server, port = await _serve(Profile("w", "127.0.0.1", 0, delay_ms=50, workers=1))
    try:
        (first, _), (second, _) = await asyncio.gather(_get(port), _get(port))
    finally:
        server.close()
    assert 0.045 <= min(first, second) < 0.09
    assert max(first, second) >= 0.095  # waited for the only worker


async def test_failures_come_at_the_configured_rate() -> None:
    """200 requests at a 25% failure rate: binomial, σ = √(200 × 0.25 × 0.75) = 6.1, so
    the count lies within 50 ± 4σ (the draws are seeded, so this is one fixed case)."""
    server, port = await _serve(Profile("f", "127.0.0.1", 0, delay_ms=0, fail=0.25))
    try:
        heads = [head for _, head in await asyncio.gather(*(_get(port) for _ in range(200)))]
    finally:
        server.close()
    failed = sum(head.startswith(b"HTTP/1.1 500") for head in heads)
    assert 26 <= failed <= 74


# ---------------------------------------------------------------- configs


def test_haproxy_gets_the_balance_mode_and_checks_only_when_asked() -> None:
    plain = balancing.haproxy_config(8080, ["127.0.0.1:1", "127.0.0.1:2"], "random(2)", False)
    assert "    balance random(2)\n" in plain and "check" not in plain
    checked = balancing.haproxy_config(8080, ["127.0.0.1:1"], "leastconn", True)
    assert "    balance leastconn\n" in checked and "check inter" in checked
    assert "option redispatch" in checked


def test_nginx_gets_least_conn_and_passive_checks_only_when_asked(tmp_path: Path) -> None:
    plain = balancing.nginx_config(tmp_path, 8080, ["127.0.0.1:1"], "least_conn", False)
    assert "    upstream backends {\n        least_conn;\n" in plain
    assert "max_fails" not in plain
    checked = balancing.nginx_config(tmp_path, 8080, ["127.0.0.1:1"], "least_conn", True)
    assert "max_fails=1" in checked


def test_tulles_default_is_the_manifest_without_a_load_balancer() -> None:
    assert "loadBalancer" not in balancing.tulle_manifest(["127.0.0.1:1"], "")
    assert "loadBalancer: {algorithm: peak-ewma}" in balancing.tulle_manifest(
        ["127.0.0.1:1"], "peak-ewma")


def test_the_sweep_has_one_slow_endpoint_and_a_third_failing() -> None:
    profiles = balancing.sweep_profiles(10)
    assert [p.name for p in profiles].count("slow") == 1
    assert sum(1 for p in profiles if p.fail) == 3
    assert len({p.name for p in profiles}) == 10


# ---------------------------------------------------------------- arithmetic


CANNED = """\
offset,latency,status,error,backend
0.0,0.001,200,,a
0.1,0.002,200,,b
0.2,0.003,500,,b
0.3,0.500,0,timeout,
1.5,0.004,200,,c
2.5,0.005,200,,c
"""


def test_shares_latency_and_failures_from_records() -> None:
    outcome = balancing.Outcome(timeline.parse_records(CANNED), joined_at=1.0)
    assert outcome.shares(["a", "b", "c"]) == {"a": 0.2, "b": 0.4, "c": 0.4}
    assert outcome.failed == 2  # the 500 and the timeout
    assert outcome.latency(50) == 0.002  # nearest rank over the successes: 1, 2, 4, 5 ms
    assert outcome.latency(99, since=1.0) == 0.005
    assert outcome.share_between("c", 1.0, 3.0) == 1.0
    assert outcome.share_between("c", 5.0, 6.0) is None


def test_the_case_table_shows_every_endpoint_and_the_newcomer_windows() -> None:
    case = next(c for c in balancing.CASES if c.joiner is not None)
    outcome = balancing.Outcome(timeline.parse_records(CANNED), joined_at=1.0)
    table = balancing.case_table(case, {"x": outcome})
    assert table.columns[4:7] == [f"share {p.name}" for p in case.profiles]
    assert "new: first 1 s" in table.columns
    assert "×10 for its first 3 s" in (table.note or "")


# ---------------------------------------------------------------- end to end


@pytest.mark.bench
def test_one_case_end_to_end_against_tulle_and_haproxy(tmp_path: Path) -> None:
    """The demo's endpoints for 4 s at 50 requests/s (200 requests) through Tulle's
    default and HAProxy leastconn, from each one's first request. Tulle's slow endpoint
    leaves the band after its 3 warm-up answers and gets at most 9 second opinions in
    its first seconds (tests/unit/balance/test_expected_latency.py): under 6% of 200.
    leastconn sends it what its connection count allows, far more than that."""
    require_tools(load_scenario("balancing").TOOLS)
    case = replace(next(c for c in balancing.CASES if c.name == "slow-middle"), seconds=4)
    variants = [v for v in balancing.VARIANTS if v.mode in ("", "leastconn")]
    with open_harness(tmp_path, peer_names=("haproxy", "tulle")) as harness:
        outcomes = {v.name: balancing.run_case(harness, case, v) for v in variants}
    names = [p.name for p in case.profiles]
    tulle, haproxy = (outcomes[v.name].shares(names) for v in variants)
    assert tulle["slow"] < 0.06 < 0.15 < haproxy["slow"], (tulle, haproxy)
    for outcome in outcomes.values():
        assert len(outcome.records) == 200
