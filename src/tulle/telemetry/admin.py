"""The admin listener (port 4191): health, configuration, endpoints and metrics.

``/live`` answers while the process runs; ``/ready`` once the configuration is
loaded and the listeners are bound (and 503 again while draining); ``/config``
and ``/endpoints`` are JSON views of the proxy's state; ``/metrics`` is the
Prometheus text (OpenMetrics when the scraper asks for it), rendered here and
only here; ``/tap`` is a live stream of requests (see `tulle.telemetry.tap_stream`),
refused unless the proxy was started with tap allowed. The server speaks
HTTP/1.1 through the same sans-I/O codec as the proxy, one small Protocol per
connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from tulle.http import (
    RemoteProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    encode_head,
    reason_phrase,
)
from tulle.http.h1 import Headers
from tulle.telemetry.tap import TapHub
from tulle.telemetry.tap_stream import TapStream, parse_tap_query


@dataclass(frozen=True, slots=True)
class AdminSources:
    """Where the admin pages read the proxy's state from."""

    registry: CollectorRegistry
    tap: TapHub
    ready: Callable[[], bool]
    config: Callable[[], object]
    endpoints: Callable[[], object]
    # /tap shows request paths and authorities to whoever reaches the admin port,
    # so it is off unless the operator allows it (``tulle proxy --allow-tap``).
    tap_enabled: bool = False


Page = tuple[int, bytes, bytes]  # status, content type, body


class AdminConnection(asyncio.Protocol):
    """One admin client; answers each request as soon as its head is parsed."""

    def __init__(self, sources: AdminSources) -> None:
        self._sources = sources
        self._parser = RequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._head: RequestHead | None = None
        self._stream: TapStream | None = None  # set while /tap streams

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def data_received(self, data: bytes) -> None:
        if self._stream is not None:
            return  # a tap client has nothing more to say; the stream owns the connection
        try:
            self._parser.feed(data)
        except RemoteProtocolError as exc:
            self._send(exc.status, b"text/plain", exc.reason.encode() + b"\n", close=True)

    def on_head(self, head: RequestHead | ResponseHead) -> None:
        assert isinstance(head, RequestHead)
        self._head = head

    def on_body(self, data: bytes) -> None:
        pass  # admin requests carry no body we use

    def on_end(self, trailers: Headers | None) -> None:
        head = self._head
        assert head is not None
        if head.target.split(b"?", 1)[0] == b"/tap" and head.method == b"GET":
            self._start_tap(head)
            return
        status, content_type, body = self._page(head)
        if head.method == b"HEAD":
            body = b""
        self._send(status, content_type, body, close=not head.keep_alive)

    def _page(self, head: RequestHead) -> Page:
        if head.method not in (b"GET", b"HEAD"):
            return 405, b"text/plain", b"only GET and HEAD\n"
        path = head.target.split(b"?", 1)[0]
        sources = self._sources
        if path == b"/live":
            return 200, b"text/plain", b"live\n"
        if path == b"/ready":
            if sources.ready():
                return 200, b"text/plain", b"ready\n"
            return 503, b"text/plain", b"not ready\n"
        if path == b"/metrics":
            accept = (head.header(b"accept") or b"").decode("latin-1")
            encoder, content_type = choose_encoder(accept)
            return 200, content_type.encode(), encoder(sources.registry)
        if path == b"/config":
            return _json(sources.config())
        if path == b"/endpoints":
            return _json(sources.endpoints())
        return 404, b"text/plain", b"admin pages: /live /ready /metrics /config /endpoints /tap\n"

    def _start_tap(self, head: RequestHead) -> None:
        """Answer ``GET /tap`` with a chunked stream of JSON lines, or refuse it."""
        if not self._sources.tap_enabled:
            self._send(403, b"text/plain",
                       b"tap is off on this proxy; start it with --allow-tap\n", close=True)
            return
        _, _, query = head.target.partition(b"?")
        try:
            tap_filter, rate = parse_tap_query(query.decode("latin-1"))
        except ValueError as exc:
            self._send(400, b"text/plain", f"{exc}\n".encode(), close=not head.keep_alive)
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        headers = [
            (b"content-type", b"application/x-ndjson"),
            (b"transfer-encoding", b"chunked"),
            (b"cache-control", b"no-store"),
        ]
        transport.write(encode_head(b"HTTP/1.1 200 OK", headers))
        self._stream = TapStream(self._sources.tap, transport, tap_filter, rate)

    def _send(self, status: int, content_type: bytes, body: bytes, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        if close:
            headers.append((b"connection", b"close"))
        head = encode_head(b"HTTP/1.1 %d %b" % (status, reason_phrase(status)), headers)
        transport.write(head + body)
        if close:
            transport.close()


def _json(value: object) -> Page:
    return 200, b"application/json", json.dumps(value, indent=2).encode() + b"\n"


async def serve_admin(
    loop: asyncio.AbstractEventLoop, host: str, port: int, sources: AdminSources
) -> asyncio.Server:
    """Bind the admin listener."""
    return await loop.create_server(lambda: AdminConnection(sources), host, port)
