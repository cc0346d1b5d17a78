"""A TCP session on the fake loop: balanced once, failover on connect, splice, ending.

The proxy's mesh is built from manifests as ``tulle proxy`` builds it (ProxyKit); the
test plays the client and the endpoints byte by byte and decides when each connect
completes, so the races (a client that leaves while connecting, a connect that fails)
run deterministically.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fake_loop import FakeTransport
from tests.support.proxy_kit import ProxyKit
from tulle.tcp import TcpProxy

MANIFEST = """
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: redis}
spec:
  protocol: tcp
  loadBalancer: {algorithm: round-robin}
  circuitBreaker: {consecutiveFailures: 2}
  endpoints:
    - {address: "10.0.0.1:6379"}
    - {address: "10.0.0.2:6379"}
    - {address: "10.0.0.3:6379"}
"""


@pytest.fixture
def kit(tmp_path: Path) -> ProxyKit:
    return ProxyKit(tmp_path, MANIFEST)


def _open(kit: ProxyKit, pending: bytes = b"") -> tuple[TcpProxy, FakeTransport]:
    tcp = TcpProxy(kit.mesh.outbound, kit.metrics, kit.loop.clock)
    client = FakeTransport(kit.loop)
    target = kit.mesh.outbound.targets["redis.default"]
    tcp.start(client, target, pending, b"127.0.0.1")  # type: ignore[arg-type]
    kit.loop.run_ready()
    return tcp, client


def test_bytes_wait_for_the_connect_then_flow_both_ways(kit: ProxyKit) -> None:
    tcp, client = _open(kit, pending=b"*1\r\n$4\r\nPING\r\n")
    assert not client.reading  # nowhere to send yet
    upstream = kit.accept("10.0.0.1:6379")
    assert upstream.take() == b"*1\r\n$4\r\nPING\r\n"
    assert client.reading
    upstream.receive(b"+PONG\r\n")
    assert client.take() == b"+PONG\r\n"
    client.receive(b"more")
    assert upstream.take() == b"more"
    assert kit.endpoint("10.0.0.1:6379", "redis.default").in_flight == 1
    client.peer_closes()  # EOF: the endpoint's sending side is shut, the rest comes back
    assert upstream.eof_written and not client.closed
    upstream.receive(b"last")
    assert client.take() == b"last"
    upstream.peer_closes()
    kit.loop.run_ready()
    assert client.lost and upstream.lost and not tcp.sessions
    assert kit.endpoint("10.0.0.1:6379", "redis.default").in_flight == 0
    stats = kit.metrics.tcp("outbound", "dst", "redis", "default")
    assert (stats.opened, stats.closed, stats.read_bytes, stats.write_bytes) == (1, 1, 11, 18)


def test_a_refused_connect_is_tried_on_another_endpoint(kit: ProxyKit) -> None:
    _, client = _open(kit, pending=b"hello")
    kit.connect("10.0.0.1:6379").refuse()
    [retry] = kit.connecting
    assert retry != "10.0.0.1:6379"
    upstream = kit.accept(retry)
    assert upstream.take() == b"hello"
    assert not client.closed
    assert not kit.endpoint("10.0.0.1:6379", "redis.default").pool.reachable


def test_when_no_connect_succeeds_the_client_is_reset(kit: ProxyKit) -> None:
    _, client = _open(kit)
    for _ in range(3):
        kit.connect().refuse()
    assert client.aborted
    assert kit.connecting == []
    stats = kit.metrics.tcp("outbound", "src", "redis", "default")
    assert stats.failures == {"ECONNREFUSED": 1}


def test_a_connect_timeout_opens_the_breaker_and_later_sessions_avoid_it(
    tmp_path: Path
) -> None:
    kit = ProxyKit(tmp_path, MANIFEST.replace("consecutiveFailures: 2", "consecutiveFailures: 1"))
    _open(kit)
    assert kit.connecting == ["10.0.0.1:6379"]
    kit.advance(1.1)  # past the default connect timeout (1s): tried elsewhere
    breaker = kit.endpoint("10.0.0.1:6379", "redis.default").breaker
    assert breaker is not None and breaker.state == "open"
    for _ in range(4):
        fresh = [address for address in kit.connecting if address != "10.0.0.1:6379"]
        assert len(fresh) == 1
        kit.accept(fresh[0])
        _open(kit)
    assert "10.0.0.1:6379" not in kit.connecting[1:]  # only the try that timed out


def test_a_client_that_leaves_while_connecting_leaves_nothing_open(kit: ProxyKit) -> None:
    tcp, client = _open(kit)
    client.peer_resets()
    assert not tcp.sessions
    upstream = kit.accept("10.0.0.1:6379")  # the connect completes anyway
    kit.loop.run_ready()
    assert upstream.closed
    assert kit.endpoint("10.0.0.1:6379", "redis.default").in_flight == 0


def test_a_slow_reader_pauses_the_other_side(kit: ProxyKit) -> None:
    _, client = _open(kit)
    upstream = kit.accept("10.0.0.1:6379")
    client.protocol.pause_writing()  # the client's buffer passed its high mark
    assert not upstream.reading
    client.protocol.resume_writing()
    assert upstream.reading
