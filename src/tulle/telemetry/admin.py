"""The admin listener (port 4191): health, configuration, endpoints and metrics.

``/live`` answers while the process runs; ``/ready`` once the configuration is
loaded and the listeners are bound (and 503 again while draining); ``/config``
and ``/endpoints`` are JSON views of the proxy's state; ``/metrics`` is the
Prometheus text (OpenMetrics when the scraper asks for it), rendered here and
only here; ``/tap`` is a live stream of requests (see `tulle.telemetry.tap_stream`),
refused unless the proxy was started with tap allowed. The server speaks
HTTP/1.1 through the same sans-I/O codec as the proxy, one small Protocol per
connection.

The listener has the proxy's limits (`AdminLimits`): a client gets
``head_timeout`` to send a request head (then 408 and the connection closed), a
kept-alive connection with no request is closed after ``idle_timeout``, and past
``max_connections`` open at once a new connection is answered 503 and closed.
A /tap stream is long-lived by design and escapes both timeouts. The counts show
on /metrics as ``tulle_admin_*`` (see `AdminListener`).

The same listener serves a supervisor of worker processes (``tulle proxy --workers``):
its sources read the workers' pages first (`AdminSources.gather`, awaited before the
page is rendered, with reading paused so that pipelined requests are answered in
order), its tap relays the workers' taps, and it adds a ``/workers`` page.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tulle.http import (
    RemoteProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    encode_head,
    reason_phrase,
)
from tulle.http.h1 import Headers
from tulle.telemetry.tap import TapSource
from tulle.telemetry.tap_stream import TapStream, parse_tap_query
from tulle.transport.listen import listen

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry


@dataclass(frozen=True, slots=True)
class AdminSources:
    """Where the admin pages read the proxy's state from."""

    # Makes the registry /metrics renders; called once, at the first scrape (see
    # `AdminListener.registry`).
    registry: Callable[[], CollectorRegistry]
    tap: TapSource
    ready: Callable[[], bool]
    config: Callable[[], object]
    endpoints: Callable[[], object]
    # /tap shows request paths and authorities to whoever reaches the admin port,
    # so it is off unless the operator allows it (``tulle proxy --allow-tap``).
    tap_enabled: bool = False
    # A supervisor reads its workers' pages first: awaited with the path (one of
    # GATHERED_PAGES) before that page is rendered. None in a proxy.
    gather: Callable[[bytes], Awaitable[None]] | None = None
    # More JSON pages, by path (a supervisor's /workers).
    pages: Mapping[bytes, Callable[[], object]] = field(default_factory=dict)


# The pages a supervisor builds from its workers' (AdminSources.gather).
GATHERED_PAGES = frozenset({b"/metrics", b"/config", b"/endpoints"})


Page = tuple[int, bytes, bytes]  # status, content type, body


@dataclass(frozen=True, slots=True)
class AdminLimits:
    """How long an admin client may take, and how many may be connected at once."""

    # The proxy listeners' defaults: --head-timeout 10 s, timeouts.idle 60 s.
    head_timeout: float = 10.0
    idle_timeout: float = 60.0
    # A few scrapers, a dashboard, some `tulle tap`s and probes need tens; 128
    # bounds what idle sockets can pin (fds, buffers) far below the process limit.
    max_connections: int = 128


class AdminListener:
    """One bound admin listener: its limits, its open connections and their counters.

    The counters are published with the sources' own on /metrics (`registry`):
    ``tulle_admin_open_connections``, ``tulle_admin_connections_refused_total`` and
    ``tulle_admin_timeouts_total{timeout="head"|"idle"}``.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sources: AdminSources, limits: AdminLimits
    ) -> None:
        self.loop = loop
        self.sources = sources
        self.limits = limits
        self.connections: set[AdminConnection] = set()
        self.refused = 0
        self.head_timeouts = 0
        self.idle_timeouts = 0
        self._registry: CollectorRegistry | None = None

    def registry(self) -> CollectorRegistry:
        """The registry /metrics renders: the sources' collectors and this listener's
        counters, made at the first scrape (`tulle.telemetry.collector` says why then)."""
        if self._registry is None:
            from tulle.telemetry.collector import AdminCollector

            self._registry = self.sources.registry()
            self._registry.register(AdminCollector(self))
        return self._registry


class AdminConnection(asyncio.Protocol):
    """One admin client; answers each request as soon as its head is parsed.

    One timer at a time: the head timeout from the connection's start and from
    the first byte after an answer, the idle timeout after an answer; none while
    a /tap stream owns the connection.
    """

    def __init__(self, listener: AdminListener) -> None:
        self._listener = listener
        self._sources = listener.sources
        self._parser = RequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._head: RequestHead | None = None
        self._stream: TapStream | None = None  # set while /tap streams
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_head = False  # the timer is the head timeout
        # Requests waiting for AdminSources.gather, oldest first (None: none waiting).
        self._gathering: deque[RequestHead] | None = None
        self._gatherer: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        listener = self._listener
        if len(listener.connections) >= listener.limits.max_connections:
            listener.refused += 1
            self._send(503, b"text/plain", b"admin connection limit reached\n", close=True)
            return
        listener.connections.add(self)
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.connections.discard(self)
        self._stop_timer()
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def data_received(self, data: bytes) -> None:
        if self._stream is not None:
            return  # a tap client has nothing more to say; the stream owns the connection
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not self._waiting_head:
            self._expect_head()  # the first byte of the next request
        try:
            self._parser.feed(data)
        except RemoteProtocolError as exc:
            self._send(exc.status, b"text/plain", exc.reason.encode() + b"\n", close=True)

    # -- timeouts --

    def _expect_head(self) -> None:
        self._stop_timer()
        self._waiting_head = True
        self._timer = self._listener.loop.call_later(
            self._listener.limits.head_timeout, self._head_timed_out
        )

    def _expect_idle(self) -> None:
        self._stop_timer()
        self._timer = self._listener.loop.call_later(
            self._listener.limits.idle_timeout, self._idle_timed_out
        )

    def _stop_timer(self) -> None:
        self._waiting_head = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        self._listener.head_timeouts += 1
        self._send(408, b"text/plain", b"the request head was not received in time\n",
                   close=True)

    def _idle_timed_out(self) -> None:
        self._timer = None
        self._listener.idle_timeouts += 1
        if self._transport is not None:
            self._transport.close()

    def on_head(self, head: RequestHead | ResponseHead) -> None:
        assert isinstance(head, RequestHead)
        self._head = head

    def on_body(self, data: bytes) -> None:
        pass  # admin requests carry no body we use

    def on_end(self, trailers: Headers | None) -> None:
        head = self._head
        assert head is not None
        if self._gathering is not None:  # answered after the ones before it
            self._gathering.append(head)
        elif self._sources.gather is not None and _path(head) in GATHERED_PAGES:
            self._stop_timer()
            transport = self._transport
            if transport is not None:
                transport.pause_reading()
            self._gathering = deque([head])
            self._gatherer = self._listener.loop.create_task(self._answer_gathered())
        else:
            self._answer(head)

    async def _answer_gathered(self) -> None:
        """Answer the waiting requests in order, each once its page is gathered."""
        waiting = self._gathering
        gather = self._sources.gather
        assert waiting is not None and gather is not None
        try:
            while waiting:  # bounded: what one read of the connection held
                head = waiting[0]
                if head.method in (b"GET", b"HEAD") and _path(head) in GATHERED_PAGES:
                    await gather(_path(head))
                waiting.popleft()
                transport = self._transport
                if transport is None or transport.is_closing() or self._stream is not None:
                    return
                self._answer(head)
        finally:
            self._gathering = self._gatherer = None
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    def _answer(self, head: RequestHead) -> None:
        if _path(head) == b"/tap" and head.method == b"GET":
            self._start_tap(head)
        else:
            status, content_type, body = self._page(head)
            if head.method == b"HEAD":
                body = b""
            self._send(status, content_type, body, close=not head.keep_alive)
        if self._stream is not None:
            self._stop_timer()  # the stream owns the connection from now on
        elif head.keep_alive:
            self._expect_idle()

    def _page(self, head: RequestHead) -> Page:
        if head.method not in (b"GET", b"HEAD"):
            return 405, b"text/plain", b"only GET and HEAD\n"
        path = _path(head)
        sources = self._sources
        if path == b"/live":
            return 200, b"text/plain", b"live\n"
        if path == b"/ready":
            if sources.ready():
                return 200, b"text/plain", b"ready\n"
            return 503, b"text/plain", b"not ready\n"
        if path == b"/metrics":
            from tulle.telemetry.collector import render

            accept = (head.header(b"accept") or b"").decode("latin-1")
            return 200, *render(self._listener.registry(), accept)
        if path == b"/config":
            return _json(sources.config())
        if path == b"/endpoints":
            return _json(sources.endpoints())
        if path in sources.pages:
            return _json(sources.pages[path]())
        names = b" ".join([b"/live /ready /metrics /config /endpoints /tap", *sources.pages])
        return 404, b"text/plain", b"admin pages: " + names + b"\n"

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


def _path(head: RequestHead) -> bytes:
    return head.target.split(b"?", 1)[0]


def _json(value: object) -> Page:
    return 200, b"application/json", json.dumps(value, indent=2).encode() + b"\n"


async def serve_admin(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    sources: AdminSources,
    limits: AdminLimits | None = None,
) -> asyncio.Server:
    """Bind the admin listener (with the default `AdminLimits` unless given others)."""
    listener = AdminListener(loop, sources, limits or AdminLimits())
    return await listen(loop, lambda: AdminConnection(listener), host, port)
