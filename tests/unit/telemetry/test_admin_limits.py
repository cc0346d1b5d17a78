"""The admin listener's limits (issue 15, #13): a head timeout, an idle timeout and a
connection cap, on the fake loop; and their counters on /metrics."""

from __future__ import annotations

from tests.support.fake_loop import FakeLoop, FakeTransport
from tulle.telemetry import Metrics
from tulle.telemetry.admin import AdminConnection, AdminLimits, AdminListener, AdminSources
from tulle.telemetry.collector import registry_for
from tulle.telemetry.tap import TapHub

LIMITS = AdminLimits(head_timeout=10.0, idle_timeout=60.0, max_connections=3)
GET_LIVE = b"GET /live HTTP/1.1\r\nHost: admin\r\n\r\n"


def listener_and_loop(tap: bool = False) -> tuple[AdminListener, FakeLoop]:
    loop = FakeLoop()
    sources = AdminSources(
        registry=lambda: registry_for(Metrics()), tap=TapHub(clock=loop.time),
        ready=lambda: True, config=dict, endpoints=dict, tap_enabled=tap,
    )
    return AdminListener(loop, sources, LIMITS), loop  # type: ignore[arg-type]


def connect(listener: AdminListener, loop: FakeLoop) -> FakeTransport:
    transport = FakeTransport(loop)
    transport.attach(AdminConnection(listener))
    return transport


def test_a_connection_that_sends_nothing_gets_408_after_the_head_timeout() -> None:
    listener, loop = listener_and_loop()
    transport = connect(listener, loop)
    loop.advance(9.9)
    assert not transport.closed
    loop.advance(0.2)
    assert transport.closed
    assert transport.written.startswith(b"HTTP/1.1 408 ")
    assert listener.head_timeouts == 1


def test_a_head_sent_slowly_is_cut_at_the_head_timeout() -> None:
    listener, loop = listener_and_loop()
    transport = connect(listener, loop)
    for byte in GET_LIVE[:-3]:  # a byte a second: still inside the head at 10 s
        transport.receive(bytes([byte]))
        loop.advance(1.0)
        if transport.closed:
            break
    assert transport.closed
    assert transport.written.startswith(b"HTTP/1.1 408 ")


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> None:
    listener, loop = listener_and_loop()
    transport = connect(listener, loop)
    transport.receive(GET_LIVE)
    assert transport.written.startswith(b"HTTP/1.1 200 ")
    loop.advance(59.0)
    assert not transport.closed  # idle, not waiting for a head: the longer timeout
    transport.receive(GET_LIVE)  # a second request restarts the clock
    loop.advance(59.0)
    assert not transport.closed
    loop.advance(2.0)
    assert transport.closed
    assert listener.idle_timeouts == 1
    assert listener.head_timeouts == 0


def test_connections_over_the_cap_are_answered_503_and_closed() -> None:
    listener, loop = listener_and_loop()
    kept = [connect(listener, loop) for _ in range(3)]
    refused = connect(listener, loop)
    assert refused.closed
    assert refused.written.startswith(b"HTTP/1.1 503 ")
    assert b"admin connection limit" in refused.written
    assert not any(t.closed for t in kept)
    assert listener.refused == 1
    kept[0].peer_resets()  # one leaves: room for one more
    assert not connect(listener, loop).closed


def test_a_refused_connection_does_not_take_a_slot() -> None:
    listener, loop = listener_and_loop()
    for _ in range(3):
        connect(listener, loop)
    for _ in range(5):
        connect(listener, loop).peer_resets()
    assert len(listener.connections) == 3


def test_a_tap_stream_is_not_cut_by_the_idle_or_head_timeout() -> None:
    listener, loop = listener_and_loop(tap=True)
    transport = connect(listener, loop)
    transport.receive(b"GET /tap HTTP/1.1\r\nHost: admin\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 200 ")
    loop.advance(3600.0)
    assert not transport.closed


def test_the_limits_show_on_metrics() -> None:
    listener, loop = listener_and_loop()
    registry = listener.registry()  # what /metrics renders
    connect(listener, loop)  # times out
    for _ in range(2):
        connect(listener, loop)
    connect(listener, loop)  # refused
    loop.advance(11.0)
    assert registry.get_sample_value("tulle_admin_connections_refused_total") == 1
    assert registry.get_sample_value("tulle_admin_timeouts_total", {"timeout": "head"}) == 3
    assert registry.get_sample_value("tulle_admin_timeouts_total", {"timeout": "idle"}) == 0
    assert registry.get_sample_value("tulle_admin_open_connections") == 0
