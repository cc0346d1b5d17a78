"""One HTTP/1.1 client connection: a thin asyncio Protocol over the request parser.

It parses requests as they arrive (pipelined ones included), makes one `Exchange` per
request and runs them one after another, so that responses go back in request order
(RFC 9112 §9.3.2). For the exchange at the head of the queue it is the client side
(`tulle.proxy.streams.ClientStream`): it frames each response for this client
(chunked, ``Connection: close``, HTTP/1.0 keep-alive) and writes what one read from
the endpoint delivered in one send.

It owns the connection's deadlines, one at a time on the timer wheel: the request head
must arrive within ``head_timeout`` (else 408), a keep-alive connection may sit idle
``idle_timeout``, and a client must read what it is sent within ``send_timeout``. The
idle deadline is armed once and then left in place while requests come and go (only
when it passes is it moved, to ``idle_timeout`` after the connection last went idle):
per request, that is a clock read instead of arming and disarming it.

Flow control (what a connection may hold unsent is bounded): reading from the client
stops while too many requests are pipelined ahead of the one being answered, while a
request body has nowhere to go yet, and while the client is not reading what it is
sent — then the endpoint's response is paused too, and no further pipelined request is
started. So a client that never reads costs one transport buffer (`WRITE_BUFFER_HIGH`)
plus one read from the endpoint, whatever it sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from tulle.http import CONTINUE, RemoteProtocolError, RequestHead, RequestParser, ResponseHead
from tulle.http.h1.parser import H2C
from tulle.http.h1.writer import (
    add_response_head,
    encode_chunk,
    encode_last_chunk,
    informational_head,
    switching_head,
)
from tulle.proxy import errors
from tulle.proxy.errors import local_response
from tulle.proxy.exchange import RESPONDING, Exchange
from tulle.proxy.streams import ClientStream
from tulle.tcp.splice import Splice
from tulle.transport.original_dst import redirected_destination
from tulle.transport.timers import HasDeadline
from tulle.transport.tls import peer_identity

if TYPE_CHECKING:
    from tulle.downstream.listener import ListenerContext
    from tulle.http import Headers
    from tulle.proxy.streams import UpstreamStream

# Requests a client may pipeline ahead of the one being answered before we stop reading
# from it (they are held in memory until their turn).
MAX_PIPELINED: Final = 16
# The transport's write buffer: past the high mark the client is "not reading" (its
# response is paused, and so is reading from it); below the low mark it is again.
WRITE_BUFFER_HIGH: Final = 64 * 1024
WRITE_BUFFER_LOW: Final = 16 * 1024

# What a connection's deadline, when set, is waiting for.
_WAITING_HEAD: Final = 1
_IDLE: Final = 2
_SENDING: Final = 3

# Why reading from the client is paused (a bit each; reading resumes when none is left).
_PIPELINE: Final = 1  # too many requests queued
_BODY: Final = 2  # a request body has nowhere to go yet, or the endpoint is not reading it
_WRITING: Final = 4  # the client is not reading what it is sent
_ERROR: Final = 8  # a protocol error: nothing more is read
_SWITCHING: Final = 16  # the request switches protocols: the rest is not HTTP

_H2C_SWITCH: Final = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
)


class ClientConnection(HasDeadline, ClientStream):
    """An asyncio protocol (uvloop calls it by name; it needs no base class), and the
    client side of the exchange at the head of its queue."""

    __slots__ = (
        "_deadline_kind",
        "_half_closed",
        "_idle_since",
        "_out",
        "_paused",
        "_pending_error",
        "_receiving",
        "_response_chunked",
        "_response_written",
        "_send",
        "_started",
        "_tail",
        "_tunnel",
        "clock",
        "closing",
        "ctx",
        "original_dst",
        "parser",
        "peer_identity",
        "peer_ip",
        "queue",
        "tcp",
        "transport",
        "wheel",
    )

    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        runtime = ctx.runtime
        self.clock = runtime.clock
        self.wheel = runtime.wheel
        self.tcp = ctx.tcp
        self.transport: asyncio.Transport | None = None
        self.parser = RequestParser(self)
        # A list, not a deque: compiled, a list's [0], append and pop are primitives (a
        # deque's are calls by name), and it holds at most MAX_PIPELINED + 1.
        self.queue: list[Exchange] = []
        self.peer_ip = b"unknown"
        self.peer_identity: str | None = None  # the client's, over mutual TLS
        self.original_dst: tuple[str, int] | None = None  # (ip, port) before iptables' REDIRECT
        self.closing = False
        self.deadline = 0.0
        self.wheel_slot = 0
        self._deadline_kind = 0
        self._idle_since = 0.0  # when the connection last went idle (see `_idle`)
        self._paused = 0
        self._pending_error: RemoteProtocolError | None = None
        self._receiving: Exchange | None = None  # the request whose body is arriving
        self._half_closed = False
        self._out: list[bytes] = []  # response bytes of the current read, not yet written
        self._response_chunked = False
        self._response_written = False  # some of the current response reached the socket
        self._started: Exchange | None = None  # the latest exchange handed to the stack
        self._send: Callable[[bytes], None] = _unconnected  # transport.write, bound once
        # A request that switches protocols: what followed it, and the endpoint's side
        # once it answered 101 (the two are spliced when the exchange finishes).
        self._tail = b""
        self._tunnel: UpstreamStream | None = None

    @property
    def draining(self) -> bool:
        return self.ctx.draining

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send = transport.write  # type: ignore[attr-defined]
        transport.set_write_buffer_limits(WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = str(peer[0]).encode("ascii")
        self.peer_identity = peer_identity(transport.get_extra_info("ssl_object"))
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
            self._deadline_kind = 0  # the deadline stays armed (see `_idle`)
        try:
            self.parser.feed(data)
        except RemoteProtocolError as exc:
            self._protocol_error(exc)
            return
        if not self.queue and not self._deadline_kind and not self.closing:
            # Part of a head is here and the rest is not: it must come in time.
            self._expect(_WAITING_HEAD, self.ctx.head_timeout)

    def eof_received(self) -> bool:
        """The client shut its sending side: answer what it asked, then close."""
        self._half_closed = True
        return bool(self.queue)  # True keeps the transport open for our answers

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.tcp.closed += 1
        self.ctx.connections.discard(self)
        if self.wheel_slot:
            self.wheel.disarm(self)
        queue = self.queue
        while queue:
            queue.pop(0).client_lost()

    def pause_writing(self) -> None:
        """The client is not reading: pause its response, stop reading from it, and give
        it ``send_timeout`` to catch up."""
        self._pause(_WRITING)
        if self.queue:
            attempt = self.queue[0].attempt
            if attempt is not None and attempt.stream is not None:
                attempt.stream.pause_response()
        self._expect(_SENDING, self.ctx.send_timeout)

    def resume_writing(self) -> None:
        if self._deadline_kind == _SENDING:
            self._expect(0, 0.0)
        self._resume(_WRITING)
        queue = self.queue
        if queue:
            exchange = queue[0]
            attempt = exchange.attempt
            if attempt is not None and attempt.stream is not None:
                attempt.stream.resume_response()
            elif exchange is not self._started:
                self.ctx.runtime.loop.call_soon(self._start, exchange)
        elif not self.closing:
            self._after_last()

    # -- request parser callbacks --

    def on_head(self, head: RequestHead | ResponseHead) -> None:
        assert isinstance(head, RequestHead)
        if self._deadline_kind:
            self._expect(0, 0.0)  # the request's own timeout covers it from here
        exchange = Exchange(self, head, self.clock())
        self._receiving = exchange
        queue = self.queue
        queue.append(exchange)
        if len(queue) == 1:
            if not self._paused & _WRITING:
                self._start(exchange)
        elif len(queue) > MAX_PIPELINED:
            self._pause(_PIPELINE)

    def on_body(self, data: bytes) -> None:
        assert self._receiving is not None
        self._receiving.request_body(data)

    def on_end(self, trailers: Headers | None) -> None:
        exchange = self._receiving
        assert exchange is not None
        self._receiving = None
        exchange.request_end(trailers)

    def on_informational(self, head: ResponseHead) -> None:
        raise AssertionError("a request parser delivers no interim responses")

    def on_upgrade(self, head: RequestHead | ResponseHead, tail: bytes) -> None:
        """The request switches protocols (WebSocket, CONNECT): nothing more is read as
        HTTP. An Upgrade goes through the request path like any request, and becomes a
        splice if the endpoint answers 101; a CONNECT goes to opaque TCP."""
        assert isinstance(head, RequestHead)
        self._pause(_SWITCHING)
        self._tail = tail
        if head.method == b"CONNECT":
            self._connect(head)
            return
        if head.protocol == H2C:
            self._to_h2c(head)
            return
        exchange = self._receiving
        assert exchange is not None
        exchange.close_after = True  # declined or not, this connection's HTTP ends here
        self.on_end(None)
        if exchange.finished and not self.queue:
            self._close()  # the proxy answered it already (404, 503): nothing can follow

    # -- the client side of the exchange being answered (ClientStream) --

    def send_continue(self) -> None:
        head = self.queue[0].head if self.queue else None
        if head is not None and head.version == "1.1":
            self._write(CONTINUE)

    def send_informational(self, head: ResponseHead) -> None:
        # Never to an HTTP/1.0 client (RFC 9110 §15.2).
        if self.queue and self.queue[0].head.version == "1.1":
            self._write(informational_head(head))

    def send_response_head(self, head: ResponseHead, exchange: Exchange) -> None:
        request = exchange.head
        status = head.status
        if status == 101:
            self._switching(head, exchange)
            return
        has_body = request.method != b"HEAD" and status != 204 and status != 304
        chunked = False
        if has_body and head.content_length is None:
            if request.version == "1.1":
                chunked = True  # re-chunked: framed by the upstream's close, or chunked
            else:
                exchange.close_after = True  # HTTP/1.0: the close ends the body
        if self.ctx.draining or not exchange.request_complete:
            exchange.close_after = True
        self._response_chunked = chunked
        self._response_written = False
        add_response_head(
            self._out, head, chunked, exchange.close_after,
            keep_alive=request.version == "1.0" and not exchange.close_after,
        )

    def send_response_body(self, data: bytes) -> None:
        self._out.append(encode_chunk(data) if self._response_chunked else data)

    def send_response_end(self, trailers: Headers | None) -> None:
        if self._response_chunked:
            self._out.append(encode_last_chunk(trailers))
        self.flush()

    def flush(self) -> None:
        """Write what the current read from the endpoint delivered, in one send."""
        out = self._out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()  # (kept for the next response: a list less made per response)
            self._response_written = True
            self._write(data)

    def send_local(self, status: int, reason: str, exchange: Exchange) -> None:
        if self.ctx.draining:
            exchange.close_after = True
        self._write(local_response(status, reason, exchange.close_after,
                                   exchange.head.method == b"HEAD", exchange.retry_after))

    def retract(self) -> bool:
        if self._response_written:
            return False
        self._out = []
        self._response_chunked = False
        return True

    def cut(self) -> None:
        """Cut the connection: the response already begun cannot be completed."""
        self.closing = True
        self._out = []
        if self.transport is not None:
            self.transport.abort()

    def pause_request(self) -> None:
        self._pause(_BODY)

    def resume_request(self) -> None:
        self._resume(_BODY)

    def exchange_finished(self, exchange: Exchange) -> None:
        """``exchange`` is answered; start the next request, or close, or wait."""
        queue = self.queue
        if not queue or queue[0] is not exchange:
            return  # the connection was lost and the queue already dropped
        queue.pop(0)
        if self.closing:
            return
        if exchange.close_after or self.ctx.draining:
            if self._tunnel is not None:
                self._splice()
            else:
                self._close()
            return
        if self._paused & _PIPELINE and len(queue) <= MAX_PIPELINED:
            self._resume(_PIPELINE)
        if queue:
            if not self._paused & _WRITING:
                # From the loop, not from here: a run of pipelined requests the proxy
                # answers at once would otherwise recurse once per request.
                self.ctx.runtime.loop.call_soon(self._start, queue[0])
        else:
            self._after_last()

    # -- internals --

    def _start(self, exchange: Exchange) -> None:
        """Hand the exchange at the head of the queue to the request path, once."""
        if (not self.closing and self.queue and self.queue[0] is exchange
                and self._started is not exchange):
            self._started = exchange
            self.ctx.stack.call(exchange)

    def _after_last(self) -> None:
        """Nothing left to answer: a pending error, a half-closed client, or idle."""
        if self._pending_error is not None:
            self._answer_malformed(self._pending_error)
        elif self._half_closed:
            self._close()  # the client sent its last request and shut its side
        elif not self._paused & _WRITING:
            self._idle()

    def _write(self, data: bytes) -> None:
        if self._out:
            self.flush()
        self.tcp.write_bytes += len(data)
        if not self.closing:
            self._send(data)

    def _pause(self, reason: int) -> None:
        was = self._paused
        self._paused = was | reason
        if not was and self.transport is not None and not self.closing:
            self.transport.pause_reading()

    def _resume(self, reason: int) -> None:
        was = self._paused
        if was & reason:
            self._paused = was & ~reason
            if not self._paused and self.transport is not None and not self.closing:
                self.transport.resume_reading()

    def _idle(self) -> None:
        """Wait ``idle_timeout`` for the next request. An idle deadline still armed from
        an earlier wait is kept: it passes sooner, and `expired` then moves it on."""
        self._deadline_kind = _IDLE
        now = self._idle_since = self.clock()
        timeout = self.ctx.idle_timeout
        if not self.wheel_slot or self.deadline > now + timeout:
            self.wheel.arm(self, timeout)

    def _expect(self, kind: int, timeout: float) -> None:
        """Wait for ``kind`` for ``timeout`` seconds (kind 0: for nothing)."""
        self._deadline_kind = kind
        if kind:
            self.wheel.arm(self, timeout)
        elif self.wheel_slot:
            self.wheel.disarm(self)

    def expired(self) -> None:
        """The timer wheel: the deadline of ``_deadline_kind`` passed."""
        kind = self._deadline_kind
        self._deadline_kind = 0
        if kind == _WAITING_HEAD:
            self._answer_malformed(
                RemoteProtocolError("the request head was not received in time", status=408)
            )
        elif kind == _IDLE:
            left = self._idle_since + self.ctx.idle_timeout - self.clock()
            if left > 0.0:  # armed for an earlier wait: requests came since
                self._deadline_kind = _IDLE
                self.wheel.arm(self, left)
            else:
                self._close()
        elif kind == _SENDING:
            self.tcp.send_timeouts += 1
            self.cut()  # the exchanges' upstreams are let go as the connection is lost

    def close_if_idle(self) -> None:
        """When draining: close now if no request is in progress."""
        if not self.queue:
            self._close()

    def abort(self) -> None:
        """The shutdown's grace period is over: close now."""
        self.cut()

    def _close(self) -> None:
        self._expect(0, 0.0)
        self.flush()
        self.closing = True
        if self.transport is not None:
            self.transport.close()  # after what is already written is flushed

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        """Bytes HTTP forbids: answer 400/431 in turn (or cut off), and read no more."""
        self._pause(_ERROR)
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
            if receiving.state == RESPONDING:
                receiving.cut(errors.MALFORMED_REQUEST.code)
            else:
                receiving.answer(exc.status, errors.MALFORMED_REQUEST.code, exc.reason)
        elif queue and receiving is queue[-1]:  # a broken body, not yet forwarded
            queue.pop().client_lost()
            self._pending_error = exc
        else:
            self.cut()

    # -- switching protocols --

    def _switching(self, head: ResponseHead, exchange: Exchange) -> None:
        """The endpoint accepted the Upgrade: forward its 101, and splice once it is out."""
        attempt = exchange.attempt
        self._tunnel = attempt.stream if attempt is not None else None
        self._response_chunked = False
        protocol = head.header(b"upgrade") or exchange.head.protocol or b""
        self._out.append(switching_head(head, protocol))

    def _splice(self) -> None:
        """Join this connection to the endpoint's that answered 101: bytes both ways."""
        stream = self._tunnel
        assert stream is not None
        self._tunnel = None
        taken = stream.take_tunnel()
        transport = self.transport
        if taken is None or transport is None:
            self._close()
            return
        self.flush()
        self.closing = True
        self._expect(0, 0.0)
        connections = self.ctx.connections
        connections.discard(self)
        connections.add(Splice.join((transport, self._tail, self.tcp), taken, self.clock,
                                    connections.discard))

    def _to_h2c(self, head: RequestHead) -> None:
        """``Upgrade: h2c`` (RFC 7540 §3.2): answer 101, then serve HTTP/2, the request
        that asked being its stream 1."""
        settings = head.header(b"http2-settings")
        transport = self.transport
        if self.queue or settings is None or transport is None:
            self._answer_malformed(RemoteProtocolError(
                "Upgrade: h2c needs HTTP2-Settings and no request before it"))
            return
        self.closing = True
        self._expect(0, 0.0)
        self.ctx.connections.discard(self)
        self.tcp.write_bytes += len(_H2C_SWITCH)
        transport.write(_H2C_SWITCH)
        head.protocol = None  # an ordinary request from here on
        from tulle.downstream.h2 import H2ClientConnection  # h2: loaded on first use

        H2ClientConnection(self.ctx).upgrade(transport, head, settings, self._tail)

    def _connect(self, head: RequestHead) -> None:
        """A CONNECT: the connection is handed to opaque TCP, which answers it."""
        if self.queue:
            self._pending_error = RemoteProtocolError("CONNECT behind requests not yet answered")
            return
        opaque = self.ctx.opaque
        transport = self.transport
        if opaque is None or transport is None:
            self._answer_malformed(RemoteProtocolError("CONNECT is not served here", 405))
            return
        self.closing = True
        self._expect(0, 0.0)
        self.ctx.connections.discard(self)
        opaque.tunnel(transport, head, self._tail, self.peer_ip)

    def _answer_malformed(self, exc: RemoteProtocolError) -> None:
        stats = self.ctx.malformed
        stats.requests += 1
        stats.count(exc.status, errors.MALFORMED_REQUEST.code)
        self._write(local_response(exc.status, exc.reason, close=True))
        self._close()


def _unconnected(data: bytes) -> None:
    raise RuntimeError("a write before the connection was made")
