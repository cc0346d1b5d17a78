"""The admin listener (port 4191): health, configuration, endpoints and metrics.

``/live`` answers while the process runs; ``/ready`` once the configuration is
loaded and the listeners are bound (and 503 again while draining); ``/config``
and ``/endpoints`` are JSON views of the proxy's state; ``/metrics`` is the
Prometheus text (OpenMetrics when the scraper asks for it), rendered here and
only here. The server speaks HTTP/1.1 through the same sans-I/O codec as the
proxy, one small Protocol per connection.
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


@dataclass(frozen=True, slots=True)
class AdminSources:
    """Where the admin pages read the proxy's state from."""

    registry: CollectorRegistry
    tap: TapHub
    ready: Callable[[], bool]
    config: Callable[[], object]
    endpoints: Callable[[], object]


Page = tuple[int, bytes, bytes]  # status, content type, body


class AdminConnection(asyncio.Protocol):
    """One admin client; answers each request as soon as its head is parsed."""

    def __init__(self, sources: AdminSources) -> None:
        self._sources = sources
        self._parser = RequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._head: RequestHead | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
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
        return 404, b"text/plain", b"admin pages: /live /ready /metrics /config /endpoints\n"

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
