"""One client connection: a thin asyncio Protocol over the request codec.

It parses requests as they arrive (pipelined ones included), makes one
`Exchange` per request, and runs them one after another so that responses go
back in request order (RFC 9112 §9.3.2). It owns the connection-level timers
(a client that is slow to send its head, or idle too long between requests,
is cut off) and the flow control between the client and the active exchange's
upstream connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tulle.http import RemoteProtocolError, RequestHead, RequestParser, ResponseHead
from tulle.http.h1 import Headers
from tulle.proxy.errors import local_response
from tulle.proxy.exchange import Exchange
from tulle.proxy.pool import set_nodelay
from tulle.telemetry.metrics import ResponseStats, TcpStats
from tulle.telemetry.tap import TapHub
from tulle.transport.original_dst import redirected_destination

# Requests a client may pipeline ahead of the one being answered before we stop
# reading from it (they are held in memory until their turn).
MAX_PIPELINED = 16


@dataclass(slots=True)
class ListenerContext:
    """What every connection accepted by one listener shares."""

    loop: asyncio.AbstractEventLoop
    # Measures request latency. Not loop.time(): uvloop's loop clock has
    # millisecond resolution and is read once per loop iteration.
    clock: Callable[[], float]
    direction: str  # "outbound" or "inbound"
    stack: Callable[[Exchange], None]
    tcp: TcpStats
    malformed: ResponseStats  # requests too broken to route
    head_timeout: float
    idle_timeout: float
    tap: TapHub
    connections: set[ClientConnection] = field(default_factory=set)
    draining: bool = False
    # Connections arrive redirected by iptables (tulle init): read each one's original
    # destination once, for the route layer.
    transparent: bool = False


# What a connection's deadline, when set, is waiting for.
_WAITING_HEAD = 1
_IDLE = 2


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_corked",
        "_deadline",
        "_deadline_kind",
        "_half_closed",
        "_pending_error",
        "_reading_paused",
        "_receiving",
        "clock",
        "closing",
        "ctx",
        "loop",
        "original_dst",
        "parser",
        "peer_ip",
        "queue",
        "tcp",
        "transport",
    )

    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.clock = ctx.clock
        self.tcp = ctx.tcp
        self.transport: asyncio.Transport | None = None
        self.parser = RequestParser(self)
        self.queue: deque[Exchange] = deque()
        self.peer_ip = b"unknown"
        self.original_dst: tuple[str, int] | None = None  # (ip, port) before iptables' REDIRECT
        self.closing = False
        self._reading_paused = False
        self._pending_error: RemoteProtocolError | None = None
        self._receiving: Exchange | None = None  # the request whose body is arriving
        self._deadline = 0.0
        self._deadline_kind = 0
        self._corked: list[bytes] | None = None
        self._half_closed = False

    @property
    def draining(self) -> bool:
        return self.ctx.draining

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = str(peer[0]).encode("ascii")
        if self.ctx.transparent:
            self.original_dst = redirected_destination(transport.get_extra_info("socket"))
        self.tcp.opened += 1
        self.ctx.connections.add(self)
        self._expect(_WAITING_HEAD, self.ctx.head_timeout)

    def data_received(self, data: bytes) -> None:
        self.tcp.read_bytes += len(data)
        if self.closing:
            return
        if self._deadline_kind == _IDLE:
            self._expect(_WAITING_HEAD, self.ctx.head_timeout)
        try:
            self.parser.feed(data)
        except RemoteProtocolError as exc:
            self._protocol_error(exc)

    def eof_received(self) -> bool:
        """The client shut its sending side: answer what it asked, then close."""
        self._half_closed = True
        return bool(self.queue)  # True keeps the transport open for our answers

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.tcp.closed += 1
        self.ctx.connections.discard(self)
        queue = self.queue
        while queue:
            queue.popleft().client_lost()

    def pause_writing(self) -> None:
        if self.queue:
            upstream = self.queue[0].upstream
            if upstream is not None:
                upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.queue:
            upstream = self.queue[0].upstream
            if upstream is not None:
                upstream.resume_reading()

    # -- codec callbacks --

    def on_head(self, head: RequestHead | ResponseHead) -> None:
        assert isinstance(head, RequestHead)
        self._deadline_kind = 0  # the request's own timeout covers it from here
        exchange = Exchange(self, head, self.clock())
        self._receiving = exchange
        queue = self.queue
        queue.append(exchange)
        if len(queue) == 1:
            self.ctx.stack(exchange)
        elif len(queue) > MAX_PIPELINED:
            self.pause_reading()

    def on_body(self, data: bytes) -> None:
        assert self._receiving is not None
        self._receiving.request_body(data)

    def on_end(self, trailers: Headers | None) -> None:
        exchange = self._receiving
        assert exchange is not None
        self._receiving = None
        exchange.request_end(trailers)

    # -- used by exchanges --

    def write(self, data: bytes) -> None:
        self.tcp.write_bytes += len(data)
        corked = self._corked
        if corked is not None:
            corked.append(data)
        else:
            assert self.transport is not None
            self.transport.write(data)

    def cork(self) -> None:
        """Hold writes until `uncork`: one send for a head and the body read with it."""
        if self._corked is None and not self.closing:
            self._corked = []

    def uncork(self) -> None:
        corked = self._corked
        if corked is not None:
            self._corked = None
            if corked and self.transport is not None:
                self.transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def pause_reading(self) -> None:
        if not self._reading_paused and not self.closing and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and not self.closing and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        """Cut the connection: the response already begun cannot be completed."""
        self.closing = True
        self._corked = None
        if self.transport is not None:
            self.transport.abort()

    def exchange_done(self, exchange: Exchange) -> None:
        """``exchange`` has answered; start the next request, or close, or wait."""
        queue = self.queue
        if not queue or queue[0] is not exchange:
            return  # the connection was lost and the queue already dropped
        queue.popleft()
        if self.closing:
            return
        if exchange.close_after or self.ctx.draining:
            self._close()
            return
        if queue:
            if self._reading_paused and len(queue) <= MAX_PIPELINED:
                self.resume_reading()
            # From the loop, not from here: a run of pipelined requests the proxy
            # answers at once would otherwise recurse once per request.
            self.loop.call_soon(self._start, queue[0])
        elif self._pending_error is not None:
            self._answer_malformed(self._pending_error)
        elif self._half_closed:
            self._close()  # the client sent its last request and shut its side
        else:
            self._expect(_IDLE, self.ctx.idle_timeout)

    def _start(self, exchange: Exchange) -> None:
        if not self.closing and self.queue and self.queue[0] is exchange:
            self.ctx.stack(exchange)

    # -- timers and shutdown, driven by the listener's sweeper --

    def check_deadline(self, now: float) -> None:
        if self._deadline_kind and now >= self._deadline:
            if self._deadline_kind == _WAITING_HEAD:
                self._answer_malformed(
                    RemoteProtocolError("the request head was not received in time", status=408)
                )
            else:
                self._close()

    def close_if_idle(self) -> None:
        """When draining: close now if no request is in progress."""
        if not self.queue:
            self._close()

    # -- internals --

    def _expect(self, kind: int, timeout: float) -> None:
        self._deadline_kind = kind
        self._deadline = self.loop.time() + timeout

    def _close(self) -> None:
        self.closing = True
        self._deadline_kind = 0
        self.uncork()
        if self.transport is not None:
            self.transport.close()  # after what is already written is flushed

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        """Bytes HTTP forbids: answer 400/431 in turn (or cut off), and read no more."""
        self.pause_reading()
        queue = self.queue
        receiving = self._receiving
        self._receiving = None
        if receiving is None:  # a broken head
            if queue:
                self._pending_error = exc  # answered once the requests before it are
            else:
                self._answer_malformed(exc)
        elif queue and receiving is queue[0]:  # a broken body, being forwarded
            receiving.close_after = True
            receiving.fail(exc.status, "malformed-request", exc.reason)
        elif queue and receiving is queue[-1]:  # a broken body, not yet forwarded
            queue.pop().client_lost()
            self._pending_error = exc
        else:
            self.abort()

    def _answer_malformed(self, exc: RemoteProtocolError) -> None:
        stats = self.ctx.malformed
        stats.requests += 1
        key = (exc.status, "malformed-request")
        stats.responses[key] = stats.responses.get(key, 0) + 1
        self.write(local_response(exc.status, exc.reason, close=True))
        self._close()
