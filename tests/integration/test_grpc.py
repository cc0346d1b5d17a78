"""gRPC through the proxy, with grpcio on both ends: every call balanced on its own.

A gRPC client keeps one HTTP/2 connection, so a connection balancer (a Kubernetes
Service) sends every call to one pod; Tulle balances each stream. These tests drive a
real grpcio client (one channel) through a real ``tulle proxy`` to real grpcio servers.
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.grpc_servers import EchoServer, channel, method
from tests.support.proxy import TULLE, RunningProxy, mesh_service


def _service(name: str, servers: list[EchoServer], extra: str = "") -> str:
    return mesh_service(name, [s.address for s in servers], "  protocol: grpc\n" + extra)


@pytest.fixture(scope="module")
def servers() -> Iterator[list[EchoServer]]:
    started = [EchoServer(f"echo-{i}").start() for i in range(3)]
    yield started
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def broken() -> Iterator[EchoServer]:
    server = EchoServer("broken", fail=14).start()  # UNAVAILABLE to every Unary call
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(servers: list[EchoServer], broken: EchoServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    manifests = tmp_path_factory.mktemp("grpc") / "manifests"
    manifests.mkdir()
    (manifests / "echo.yaml").write_text(
        _service("echo", servers, "  loadBalancer: {algorithm: random}\n")
        + "---\n" + _service("flaky", [broken, servers[0]],
                             "  loadBalancer: {algorithm: round-robin}\n"
                             "  retries: {attempts: 2, on: [unavailable],"
                             " budget: {ratio: 1.0, minPerSecond: 1000}}\n")
        + "---\n" + _service("fragile", [broken, servers[0]],
                             "  loadBalancer: {algorithm: round-robin}\n")
        + "---\n" + _service("strict", servers[:1], "  timeouts: {request: 300ms}\n"))
    running = RunningProxy(manifests, "--allow-tap")
    yield running
    running.stop()


def _reset(servers: list[EchoServer]) -> None:
    for server in servers:
        server.calls = 0
        server.metadata.clear()


def _series(lines: list[str], name: str, *labels: str) -> float:
    """The sum of the samples of ``name`` that carry all of ``labels``."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith(name + "{") and all(label in line for label in labels))


def _binomial_bounds(n: int, p: float, sigmas: float = 5.5) -> tuple[float, float]:
    """Where a Binomial(n, p) count lands but with probability ~4e-8 (5.5 sigma)."""
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def test_one_channel_spreads_3000_unary_calls_over_three_servers(
    proxy: RunningProxy, servers: list[EchoServer]
) -> None:
    _reset(servers)
    answers: dict[bytes, int] = {}
    with channel(proxy.outbound, "echo") as chan:
        unary = method(chan, "Unary")
        for _ in range(60):  # 50 calls at a time on the one connection, 3000 in all
            calls = [unary.future(b"", timeout=10) for _ in range(50)]
            for call in calls:
                name = call.result()
                answers[name] = answers.get(name, 0) + 1
    low, high = _binomial_bounds(3000, 1 / 3)
    print(f"\none channel, 3000 calls: {dict(sorted(answers.items()))}, "
          f"bounds {low:.0f}-{high:.0f}")
    assert sum(answers.values()) == 3000
    assert sorted(answers) == [b"echo-0", b"echo-1", b"echo-2"]
    for name, count in answers.items():
        assert low <= count <= high, (name, answers)
    assert [s.calls for s in servers] == [answers[f"echo-{i}".encode()] for i in range(3)]
    # The client opened one connection to the proxy, and kept it.
    metrics = proxy.admin_get("/metrics")[1].decode()
    opened = re.search(r'tcp_open_total\{direction="outbound",peer="src"\} (\S+)', metrics)
    assert opened is not None and float(opened.group(1)) == 1.0


def test_streaming_calls_of_every_kind_pass_through(proxy: RunningProxy) -> None:
    with channel(proxy.outbound, "echo") as chan:
        collect = method(chan, "Collect", "stream_unary")
        assert collect(iter([b"a", b"b", b"c"]), timeout=10) == b"a,b,c"
        count = method(chan, "Count", "unary_stream")
        assert list(count(b"500", timeout=10)) == [str(i).encode() for i in range(500)]
        echo = method(chan, "Echo", "stream_stream")
        sent = [f"m{i}".encode() for i in range(200)]
        assert list(echo(iter(sent), timeout=10)) == sent
        big = method(chan, "Big", "unary_stream")  # 16 MiB: many flow-control windows
        assert sum(len(piece) for piece in big(b"256", timeout=30)) == 256 * 64 * 1024


def test_a_failed_call_keeps_its_status_and_shows_in_the_metrics(
    proxy: RunningProxy, servers: list[EchoServer]
) -> None:
    with channel(proxy.outbound, "echo") as chan:
        fail = method(chan, "Fail")
        with pytest.raises(grpc.RpcError) as raised:
            fail(b"5", timeout=10)  # NOT_FOUND, as a trailers-only response
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert "fails" in raised.value.details()
    lines = proxy.admin_get("/metrics")[1].decode().splitlines()
    assert _series(lines, "response_total", 'dst_service="echo"', 'classification="failure"',
                   'grpc_status_code="5"', 'status_code="200"') == 1.0
    assert _series(lines, "response_total", 'dst_service="echo"', 'classification="success"',
                   'grpc_status_code="0"') >= 1.0


def test_unavailable_is_retried_on_another_server(
    proxy: RunningProxy, broken: EchoServer
) -> None:
    """``flaky`` and ``fragile`` have the same two servers, one answering UNAVAILABLE to
    every call: with retries on ``unavailable`` (flaky) every call succeeds."""
    broken.calls = 0
    with channel(proxy.outbound, "flaky") as chan:
        unary = method(chan, "Unary")
        assert {unary(b"", timeout=10) for _ in range(40)} == {b"echo-0"}
    assert broken.calls >= 5  # it was tried, and its failures were retried
    with channel(proxy.outbound, "fragile") as chan:
        unary = method(chan, "Unary")
        codes = []
        for _ in range(10):
            try:
                unary(b"", timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    assert grpc.StatusCode.UNAVAILABLE in codes and grpc.StatusCode.OK in codes


def test_the_route_timeout_caps_grpc_timeout(
    proxy: RunningProxy, servers: list[EchoServer]
) -> None:
    """``strict`` has a 300 ms request timeout: a call that allows itself 10 s still ends
    after about 300 ms as DEADLINE_EXCEEDED, and the server is told the shorter deadline
    (grpc-timeout rewritten); a call asking less than 300 ms keeps its own."""
    server = servers[0]
    server.remaining.clear()
    with channel(proxy.outbound, "strict") as chan:
        sleep = method(chan, "Sleep")
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            sleep(b"2000", timeout=10)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.25 <= time.monotonic() - started < 1.5
        with pytest.raises(grpc.RpcError) as raised:
            sleep(b"2000", timeout=0.1)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    capped, own = server.remaining
    assert capped is not None and 0.1 < capped <= 0.3
    assert own is not None and own <= 0.11


def test_an_unknown_service_is_unimplemented_not_an_http_error(proxy: RunningProxy) -> None:
    with channel(proxy.outbound, "nobody") as chan, pytest.raises(grpc.RpcError) as raised:
        method(chan, "Unary")(b"", timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "no service known" in raised.value.details()


def test_a_slow_server_gets_few_calls_under_the_default_balancer(
    tmp_path: Path,
) -> None:
    fast = [EchoServer(f"fast-{i}").start() for i in range(2)]
    slow = EchoServer("slow", delay=0.05).start()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "echo.yaml").write_text(_service("echo", [*fast, slow]))
    running = RunningProxy(manifests)
    try:
        with channel(running.outbound, "echo") as chan:
            unary = method(chan, "Unary")
            for _ in range(60):
                calls = [unary.future(b"", timeout=10) for _ in range(5)]
                for call in calls:
                    call.result()
    finally:
        running.stop()
        for server in (*fast, slow):
            server.stop()
    total = slow.calls + sum(s.calls for s in fast)
    print(f"\nslow server: {slow.calls} of {total} calls; fast: {[s.calls for s in fast]}")
    assert total == 300
    # Uniform would give it 100; the balancer learns it is slow after a few calls.
    assert slow.calls < 30, (slow.calls, [s.calls for s in fast])


def test_tulle_tap_shows_each_calls_grpc_status(proxy: RunningProxy) -> None:
    """``tulle tap`` streams while calls run; each line says the call's grpc-status."""
    tap = subprocess.Popen(
        [TULLE, "tap", "fragile", "--admin", f"127.0.0.1:{proxy.admin_port}",
         "--max-events", "4", "--duration", "20s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with channel(proxy.outbound, "fragile") as chan:
            unary = method(chan, "Unary")
            deadline = time.monotonic() + 15  # calls until tap has seen four
            while tap.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(grpc.RpcError):
                    unary(b"", timeout=10)
                time.sleep(0.1)
        out, err = tap.communicate(timeout=20)
    finally:
        tap.kill()
    lines = out.splitlines()
    assert len(lines) == 4, (out, err)
    assert all("POST fragile/test.Echo/Unary -> 200 grpc-status=" in line for line in lines)
    codes = {line.split("grpc-status=")[1].split()[0] for line in lines}
    assert "0" in codes and codes <= {"0", "14"}  # the broken one may be open-circuit
