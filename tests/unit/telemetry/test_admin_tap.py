"""The admin listener without sockets: /tap streaming and refusal, OpenMetrics on request.

A fake transport records what `AdminConnection` writes, so the tests see the
exact bytes: the chunked head, one chunk per event, and the subscriber gone
once the connection is lost.
"""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.support.fake_loop import FakeLoop
from tulle.telemetry import Metrics
from tulle.telemetry.admin import AdminConnection, AdminLimits, AdminListener, AdminSources
from tulle.telemetry.collector import registry_for
from tulle.telemetry.tap import TapEvent, TapHub
from tulle.telemetry.tap_stream import MAX_BUFFERED_BYTES


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def sources(hub: TapHub, tap_enabled: bool, registry: CollectorRegistry | None = None
            ) -> AdminSources:
    return AdminSources(
        registry=lambda: registry or registry_for(Metrics()), tap=hub, ready=lambda: True,
        config=dict, endpoints=dict, tap_enabled=tap_enabled,
    )


def connect(admin_sources: AdminSources, request: bytes) -> tuple[AdminConnection, FakeTransport]:
    connection = AdminConnection(AdminListener(FakeLoop(), admin_sources,  # type: ignore[arg-type]
                                               AdminLimits()))
    transport = FakeTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    connection.data_received(request)
    return connection, transport


def event(service: str = "web", status: int = 200, path: str = "/items") -> TapEvent:
    return TapEvent("outbound", service, "default", "127.0.0.1:9001", "GET", service, path,
                    status, 1.5, "", 1700000000.0)


def chunks(raw: bytes) -> list[dict[str, object]]:
    _, _, body = raw.partition(b"\r\n\r\n")
    lines = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        lines.append(json.loads(rest[:size]))
        body = rest[size + 2:]
    return lines


def test_tap_is_refused_unless_allowed() -> None:
    hub = TapHub(Clock())
    request = b"GET /tap HTTP/1.1\r\nHost: a\r\n\r\n"
    _, transport = connect(sources(hub, tap_enabled=False), request)
    assert transport.written.startswith(b"HTTP/1.1 403 ")
    assert b"--allow-tap" in transport.written
    assert transport.closed and not hub.active


def test_tap_streams_matching_events_as_chunks_and_unsubscribes_on_disconnect() -> None:
    hub = TapHub(Clock())
    request = b"GET /tap?service=web&status=500&rate=1000 HTTP/1.1\r\nHost: a\r\n\r\n"
    connection, transport = connect(sources(hub, tap_enabled=True), request)
    head = bytes(transport.written)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower()
    assert hub.active
    hub.publish(event(status=500))
    hub.publish(event(status=200))  # filtered out in the proxy
    hub.publish(event(service="api", status=500))
    (only,) = chunks(bytes(transport.written))
    assert (only["service"], only["status"], only["path"]) == ("web", 500, "/items")
    connection.connection_lost(None)
    assert not hub.active  # the request path is back to one attribute read


def test_the_rate_is_capped_by_the_server() -> None:
    clock = Clock()
    hub = TapHub(clock)
    _, transport = connect(sources(hub, tap_enabled=True),
                           b"GET /tap?rate=100000 HTTP/1.1\r\nHost: a\r\n\r\n")
    for _ in range(1000):  # all at the same instant: only the bucket's tokens pass
        hub.publish(event())
    assert len(chunks(bytes(transport.written))) == 100


def test_a_slow_reader_loses_events_instead_of_growing_memory() -> None:
    hub = TapHub(Clock())
    connection, transport = connect(sources(hub, tap_enabled=True),
                                    b"GET /tap HTTP/1.1\r\nHost: a\r\n\r\n")
    transport.buffered = MAX_BUFFERED_BYTES + 1
    hub.publish(event())
    assert chunks(bytes(transport.written)) == []
    assert connection._stream is not None and connection._stream.dropped == 1


def test_bad_query_is_a_400() -> None:
    hub = TapHub(Clock())
    _, transport = connect(sources(hub, tap_enabled=True),
                           b"GET /tap?status=abc HTTP/1.1\r\nHost: a\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 400 ")
    assert not hub.active


def test_metrics_are_openmetrics_when_the_scraper_asks() -> None:
    metrics = Metrics()
    metrics.responses("outbound", "web", "default", "127.0.0.1:9001").record(200, "", 2.0)
    admin = sources(TapHub(Clock()), False, registry_for(metrics))
    accept = b"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    request = b"GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: " + accept + b"\r\n\r\n"
    _, transport = connect(admin, request)
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    assert b"content-type: application/openmetrics-text" in head.lower()
    assert body.rstrip().endswith(b"# EOF")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    (sample,) = [s for s in families["response"].samples if s.name == "response_total"]
    assert sample.labels["status_code"] == "200" and sample.value == 1
    assert families["response_latency_ms"].type == "histogram"
    _, plain = connect(admin, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"content-type: text/plain" in bytes(plain.written).lower()
    assert b"# EOF" not in plain.written
