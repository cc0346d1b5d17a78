"""A supervisor's admin listener (``tulle proxy --workers``) on the fake loop: a page
built from the workers' is rendered only once gathered, and pipelined requests are
still answered in order."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from tests.support.fake_loop import FakeFuture, FakeLoop, FakeTransport
from tulle.telemetry.admin import AdminConnection, AdminLimits, AdminListener, AdminSources
from tulle.telemetry.tap import TapHub


class Workers:
    """Stands in for a supervisor: a gauge and a /config whose values come in when the
    test finishes each gather."""

    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop
        self.pending: list[tuple[bytes, FakeFuture]] = []
        self.value = 0
        self.config: dict[str, object] = {}

    async def gather(self, path: bytes) -> None:
        done = self.loop.create_future()
        self.pending.append((path, done))
        await done

    def collect(self):  # type: ignore[no-untyped-def]
        yield GaugeMetricFamily("workers_value", "What the last gather read.", value=self.value)

    def finish(self, value: int) -> None:
        _, done = self.pending.pop(0)
        self.value = value
        self.config = {"read": value}
        done.set_result(None)
        self.loop.run_ready()


def serve() -> tuple[Workers, FakeTransport]:
    loop = FakeLoop()
    workers = Workers(loop)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(workers)  # type: ignore[arg-type]
    sources = AdminSources(
        registry=lambda: registry, tap=TapHub(clock=loop.time), ready=lambda: True,
        config=lambda: workers.config, endpoints=dict, gather=workers.gather,
        pages={b"/workers": lambda: [{"worker": 1}]},
    )
    listener = AdminListener(loop, sources, AdminLimits())  # type: ignore[arg-type]
    transport = FakeTransport(loop)
    transport.attach(AdminConnection(listener))
    return workers, transport


def responses(raw: bytes) -> list[bytes]:
    return [part.split(b"\r\n", 1)[0] for part in raw.split(b"HTTP/1.1 ")[1:]]


def test_a_gathered_page_is_answered_with_what_was_read_and_pipelining_keeps_its_order() -> None:
    workers, transport = serve()
    transport.receive(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /live HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /config HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [path for path, _ in workers.pending] == [b"/metrics"]
    assert transport.written == b""  # /live waits behind /metrics
    assert not transport.reading
    workers.finish(7)
    assert [path for path, _ in workers.pending] == [b"/config"]
    assert b"workers_value 7.0" in transport.written
    assert responses(bytes(transport.written)) == [b"200 OK", b"200 OK"]
    workers.finish(8)
    assert transport.written.endswith(b'"read": 8\n}\n')
    assert transport.reading
    transport.receive(b"GET /workers HTTP/1.1\r\nHost: a\r\n\r\n")  # not gathered
    assert transport.written.endswith(b'"worker": 1\n  }\n]\n')
    assert not workers.pending


def test_a_client_gone_while_its_page_is_gathered_gets_nothing() -> None:
    workers, transport = serve()
    transport.receive(b"GET /endpoints HTTP/1.1\r\nHost: a\r\n\r\n")
    transport.close()
    workers.finish(1)
    assert transport.written == b""
