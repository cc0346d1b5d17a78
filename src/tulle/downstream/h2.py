"""One HTTP/2 client connection: many streams, each the client side of its own exchange.

`H2ClientConnection` is an asyncio Protocol over the sans-I/O codec
(`tulle.http.h2.H2Codec`). Each request stream becomes an `Exchange` handed to the
listener's stack, with an `H2ClientStream` as its `ClientStream`; streams run side by
side and answer in any order (no head-of-line blocking, unlike HTTP/1.1 pipelining).
How a client reached HTTP/2 does not matter here: prior knowledge (the preface, found
by the HTTP/1.1 side or by protocol detection) or ``Upgrade: h2c``
(`H2ClientConnection.upgrade`); TLS with ALPN ``h2`` will arrive the same way.

Flow control, end to end. A stream's request body is acknowledged to the client (its
window reopened) only once the exchange has taken it and is not paused, so a slow
endpoint stops the client after one stream window (`STREAM_WINDOW`). A response that
does not fit the client's window waits in the codec, and past `PAUSE_ABOVE` bytes the
endpoint's response is paused (the upstream stops acknowledging, or stops reading), so
a client that reads slowly costs about one window per stream.

Limits (RFC 9113 §10.5, and CVE-2023-44487 "rapid reset"): the codec caps concurrent
streams (`MAX_CONCURRENT_STREAMS`), header lists and CONTINUATION runs (h2). What h2
cannot know is how much work a stream costs the proxy: each stream the client opens and
resets starts an exchange (routing, an upstream stream). So resets by the client are
counted in a token bucket (`RESET_BURST`, refilled at `RESETS_PER_SECOND`, nghttp2's
numbers), and so are frames that make the proxy answer (SETTINGS, PING); a client that
spends the bucket gets GOAWAY(ENHANCE_YOUR_CALM) and is closed.

This module (with the h2 library, ~1.4 MB of a proxy's memory) is imported by the first
HTTP/2 client, not at start-up: where a connection turns out to be HTTP/2 (detection,
the h2c upgrade, ALPN), the side that found out imports it.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import TYPE_CHECKING, Final

from tulle.grpc import local_fields, proxy_error_status
from tulle.http import RemoteProtocolError, RequestHead, ResponseHead
from tulle.http.h2 import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    INTERNAL_ERROR,
    NO_ERROR,
    REFUSED_STREAM,
    H2Codec,
    response_fields,
    trailer_fields,
)
from tulle.proxy import errors
from tulle.proxy.errors import local_parts
from tulle.proxy.exchange import Exchange
from tulle.proxy.streams import ClientStream
from tulle.transport.original_dst import redirected_destination
from tulle.transport.tls import peer_identity

if TYPE_CHECKING:
    from tulle.downstream.listener import ListenerContext
    from tulle.http import Headers
    from tulle.proxy.streams import Tunnel, UpstreamStream

# Response bytes waiting for a stream's window past which the endpoint is paused.
PAUSE_ABOVE: Final = 64 * 1024
# The transport's write buffer marks (as for HTTP/1.1, downstream/h1.py).
WRITE_BUFFER_HIGH: Final = 256 * 1024
WRITE_BUFFER_LOW: Final = 64 * 1024
# Client resets (and control frames that make the proxy answer) allowed in a burst, and
# the refill per second: nghttp2's stream-reset rate limit (1000, 33/s).
RESET_BURST: Final = 1000
RESETS_PER_SECOND: Final = 33.0

# After a GOAWAY for an error, how long the connection is still read (and what is read
# dropped) before it is closed: closing a socket with unread bytes resets it, and the
# client would lose the GOAWAY that says why (RFC 9113 §5.4.1, "linger").
LINGER: Final = 1.0
# Bytes handed to h2 at once: h2 handles every frame of what it is given before the
# proxy sees any, so a read of small frames (SETTINGS, RST_STREAM) is fed in slices.
FEED_SLICE: Final = 16 * 1024


class H2ClientStream(ClientStream):
    """One request stream: the client side of its exchange."""

    __slots__ = (
        "conn",
        "exchange",
        "head_out",
        "original_dst",
        "peer_identity",
        "peer_ip",
        "request_open",
        "request_paused",
        "response_paused",
        "sid",
        "switching",
        "tunnel",
        "unacked",
    )

    def __init__(self, conn: H2ClientConnection, sid: int) -> None:
        self.conn = conn
        self.sid = sid
        self.peer_ip = conn.peer_ip
        self.peer_identity = conn.peer_identity
        self.original_dst = conn.original_dst
        self.exchange: Exchange | None = None
        self.head_out: Headers | None = None  # a response head not written yet
        self.request_open = True  # the client may still send on this stream
        self.request_paused = False
        self.unacked = 0  # request body bytes taken but not acknowledged (paused)
        self.response_paused = False
        # An extended CONNECT (RFC 8441) the endpoint accepted: the upstream stream
        # whose connection becomes this stream's tunnel once the exchange is over.
        self.switching: UpstreamStream | None = None
        self.tunnel: StreamTunnel | None = None

    # -- the client side of the exchange (ClientStream) --

    def send_continue(self) -> None:
        """An HTTP/2 client that sent ``Expect: 100-continue`` gets it as a 1xx head."""
        self.conn.codec.send_head(self.sid, [(b":status", b"100")])

    def send_informational(self, head: ResponseHead) -> None:
        if head.status != 101:  # no 101 in HTTP/2 (RFC 9113 §8.6)
            self.conn.codec.send_head(self.sid, response_fields(head))

    def send_response_head(self, head: ResponseHead, exchange: Exchange) -> None:
        if head.status == 101 and exchange.head.protocol is not None:
            # The endpoint took the WebSocket upgrade made of an extended CONNECT: the
            # client is told 200 (RFC 8441 §5), and the stream becomes a tunnel.
            attempt = exchange.attempt
            self.switching = attempt.stream if attempt is not None else None
            head.status = 200
            head.headers = [(name, value) for name, value in head.headers
                            if name.lower() != b"sec-websocket-accept"]
        # Held until the body, the end or the end of this read: a head followed at once
        # by the end goes out as one HEADERS frame (gRPC's trailers-only responses).
        self.head_out = response_fields(head)

    def send_response_body(self, data: bytes) -> None:
        conn = self.conn
        if self.head_out is not None:
            conn.codec.send_head(self.sid, self.head_out)
            self.head_out = None
        if conn.codec.send_data(self.sid, data) > PAUSE_ABOVE and not self.response_paused:
            self.response_paused = True
            self._upstream_pause(True)

    def send_response_end(self, trailers: Headers | None) -> None:
        codec = self.conn.codec
        head = self.head_out
        if self.switching is not None:  # the tunnel's bytes follow, not an end
            if head is not None:
                self.head_out = None
                codec.send_head(self.sid, head)
            self.conn.write_out()
            return
        if head is not None:
            self.head_out = None
            if not trailers:
                codec.send_head(self.sid, head, end=True)
                self.conn.write_out()
                return
            codec.send_head(self.sid, head)
        codec.send_end(self.sid, trailer_fields(trailers) if trailers else None)
        self.conn.write_out()

    def flush(self) -> None:
        head = self.head_out
        if head is not None:
            self.head_out = None
            self.conn.codec.send_head(self.sid, head)
        self.conn.write_out()

    def send_local(self, status: int, reason: str, exchange: Exchange) -> None:
        """A response the proxy makes: for a gRPC call, a trailers-only response whose
        grpc-status says what happened; for anything else, the status and a line of text."""
        codec = self.conn.codec
        if exchange.head.grpc:
            codec.send_head(self.sid, local_fields(status, reason), end=True)
            exchange.grpc_status = proxy_error_status(status)
        else:
            headers, body = local_parts(status, reason, exchange.retry_after)
            fields = [(b":status", b"%d" % status), *headers]
            if exchange.head.method == b"HEAD":
                codec.send_head(self.sid, fields, end=True)
            else:
                codec.send_head(self.sid, fields)
                codec.send_data(self.sid, body)
                codec.send_end(self.sid, None)
        self.conn.write_out()

    def cut(self) -> None:
        """The response cannot be completed: reset this stream (the others go on)."""
        self.head_out = None
        self.conn.codec.reset(self.sid, INTERNAL_ERROR)
        self.conn.write_out()

    def pause_request(self) -> None:
        self.request_paused = True

    def resume_request(self) -> None:
        self.request_paused = False
        if self.unacked:
            self.conn.codec.ack(self.sid, self.unacked)
            self.unacked = 0
            self.conn.write_out()

    def exchange_finished(self, exchange: Exchange) -> None:
        conn = self.conn
        switching = self.switching
        if switching is not None:
            self.switching = None
            taken = switching.take_tunnel()
            if taken is not None and self.request_open:
                self.exchange = None
                self.tunnel = StreamTunnel(self, taken)
                return
            conn.codec.reset(self.sid, CANCEL)
            conn.write_out()
            self.request_open = False
        if self.request_open:
            # Answered before the request ended: the client may stop sending (RFC 9113
            # §8.1). NO_ERROR keeps the response it has.
            self.request_open = False
            conn.codec.reset(self.sid, NO_ERROR)
            conn.write_out()
        conn.stream_done(self)

    # -- from the connection --

    def window_drained(self) -> None:
        if self.response_paused:
            self.response_paused = False
            self._upstream_pause(False)

    def _upstream_pause(self, pause: bool) -> None:
        exchange = self.exchange
        attempt = exchange.attempt if exchange is not None else None
        stream = attempt.stream if attempt is not None else None
        if stream is not None:
            if pause:
                stream.pause_response()
            else:
                stream.resume_response()


class H2ClientConnection:
    """An asyncio protocol serving one HTTP/2 connection (see the module note)."""

    __slots__ = (
        "_reset_at",
        "_reset_tokens",
        "clock",
        "closing",
        "codec",
        "ctx",
        "goaway_sent",
        "loop",
        "original_dst",
        "peer_identity",
        "peer_ip",
        "streams",
        "tcp",
        "transport",
        "write_soon",
        "writing_paused",
    )

    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        self.clock = ctx.runtime.clock
        self.tcp = ctx.tcp
        self.codec = H2Codec(self, client_side=False)
        self.transport: asyncio.Transport | None = None
        self.peer_ip = b"unknown"
        self.peer_identity: str | None = None  # the client's, over mutual TLS
        self.original_dst: tuple[str, int] | None = None
        self.streams: dict[int, H2ClientStream] = {}
        self.closing = False
        self.goaway_sent = False
        self.writing_paused = False
        self.write_soon = False  # a write of what the codec queued is due this turn
        self.loop = ctx.runtime.loop
        self._reset_tokens = float(RESET_BURST)
        self._reset_at = self.clock()

    # -- how a connection becomes HTTP/2 --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """A fresh connection (prior knowledge: the preface comes in `data_received`)."""
        self._attach(transport)
        self.tcp.opened += 1
        self.codec.initiate(enable_connect_protocol=True)
        self.write_out()

    def take_over(self, transport: asyncio.BaseTransport, received: bytes,
                  counted: bool) -> None:
        """Continue a connection another protocol accepted (HTTP/1.1 saw the preface, or
        protocol detection did): ``received`` is everything read so far."""
        transport.set_protocol(self)  # type: ignore[arg-type]
        self._attach(transport)
        if not counted:
            self.tcp.opened += 1
        self.codec.initiate(enable_connect_protocol=True)
        self.write_out()
        if received:
            self.data_received(received, count=False)

    def upgrade(self, transport: asyncio.BaseTransport, head: RequestHead,
                settings: bytes, rest: bytes) -> None:
        """``Upgrade: h2c`` (RFC 7540 §3.2): after ``101 Switching Protocols`` (sent by the
        HTTP/1.1 side) the request that asked is stream 1, and its response goes out on
        it; ``rest`` is what followed the request (the client's preface)."""
        transport.set_protocol(self)  # type: ignore[arg-type]
        self._attach(transport)
        transport.resume_reading()  # type: ignore[attr-defined]  # HTTP/1.1 paused it
        self.codec.initiate_upgrade(settings)
        self.write_out()
        head.version = "2"
        stream = H2ClientStream(self, 1)
        stream.request_open = False  # the request came whole over HTTP/1.1
        exchange = stream.exchange = Exchange(stream, head, self.clock())
        self.streams[1] = stream
        self.ctx.stack.call(exchange)
        if rest:
            self.data_received(rest, count=False)

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = str(peer[0]).encode("ascii")
        self.peer_identity = peer_identity(transport.get_extra_info("ssl_object"))
        if self.ctx.transparent:
            self.original_dst = redirected_destination(transport.get_extra_info("socket"))
        self.ctx.connections.add(self)

    # -- asyncio.Protocol --

    def data_received(self, data: bytes, count: bool = True) -> None:
        if count:
            self.tcp.read_bytes += len(data)
        if self.closing:
            return
        codec = self.codec
        try:
            if len(data) <= FEED_SLICE:
                codec.feed(data)
            else:  # in slices: a flood is stopped within one slice of the bucket running out
                view = memoryview(data)
                for start in range(0, len(data), FEED_SLICE):
                    codec.feed(bytes(view[start:start + FEED_SLICE]))
                    if self.closing:
                        return
        except RemoteProtocolError as exc:
            self._protocol_error(exc)
            return
        self.write_out()

    def eof_received(self) -> bool:
        return False  # close: HTTP/2 has no half-closed connections

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.tcp.closed += 1
        self.ctx.connections.discard(self)
        self._drop_streams()

    def pause_writing(self) -> None:
        """The client is not reading: pause every stream's endpoint."""
        self.writing_paused = True
        for stream in self.streams.values():
            if not stream.response_paused:
                stream.response_paused = True
                stream._upstream_pause(True)

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiting = self.codec.waiting
        for sid, stream in self.streams.items():
            if stream.response_paused and sid not in waiting:
                stream.window_drained()

    # -- codec callbacks (tulle.http.h2.H2Handler) --

    def stream_head(self, stream_id: int, head: RequestHead | ResponseHead) -> None:
        if not isinstance(head, RequestHead):
            raise AssertionError("a server codec delivers requests")
        if self.goaway_sent:
            self.codec.reset(stream_id, REFUSED_STREAM)
            return
        if head.method == b"CONNECT" and head.protocol is not None:
            websocket_upgrade(head)
        stream = H2ClientStream(self, stream_id)
        exchange = stream.exchange = Exchange(stream, head, self.clock())
        self.streams[stream_id] = stream
        self.ctx.stack.call(exchange)

    def stream_informational(self, stream_id: int, head: ResponseHead) -> None:
        raise AssertionError("a server codec delivers no interim responses")

    def stream_data(self, stream_id: int, data: bytes, flow: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.tunnel is not None:
            stream.tunnel.from_client(data, flow)
            return
        if stream is None or stream.exchange is None:
            self.codec.ack(stream_id, flow)  # answered already: dropped
            return
        stream.exchange.request_body(data)
        if stream.request_paused:
            stream.unacked += flow
        else:
            self.codec.ack(stream_id, flow)

    def stream_end(self, stream_id: int, trailers: Headers | None) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.request_open = False
            if stream.tunnel is not None:
                stream.tunnel.client_ended()
            elif stream.exchange is not None:
                stream.exchange.request_end(trailers)

    def stream_reset(self, stream_id: int, code: int) -> None:
        """The client reset a stream: its exchange lets go of everything."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.request_open = False
            if stream.tunnel is not None:
                stream.tunnel.close()
            if stream.exchange is not None:
                stream.exchange.client_lost()
        self._spend("stream resets")

    def window_opened(self, stream_ids: list[int]) -> None:
        streams = self.streams
        for sid in stream_ids:
            stream = streams.get(sid)
            if stream is None or self.writing_paused:
                continue
            if stream.tunnel is not None:
                stream.tunnel.drained()
            else:
                stream.window_drained()

    def settings_changed(self) -> None:
        self._spend("SETTINGS frames")

    def pinged(self) -> None:
        self._spend("PING frames")

    def goaway(self, last_stream_id: int, code: int) -> None:
        """The client is leaving: finish what is in flight, then close."""
        self.goaway_sent = True
        if not self.streams:
            self._close()

    # -- the streams' side --

    def stream_done(self, stream: H2ClientStream) -> None:
        if self.streams.get(stream.sid) is stream:
            del self.streams[stream.sid]
        stream.exchange = None
        if (self.goaway_sent or self.ctx.draining) and not self.streams:
            self._close()

    def write_out(self) -> None:
        """Send what the codec has queued, once per turn of the loop: many streams that
        answer in one read from their endpoints go out in one write."""
        if not self.write_soon:
            self.write_soon = True
            self.loop.call_soon(self.write_now)

    def write_now(self) -> None:
        self.write_soon = False
        data = self.codec.data_to_send()
        if data:
            self.tcp.write_bytes += len(data)
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.write(data)

    # -- ending --

    def close_if_idle(self) -> None:
        """Draining: GOAWAY (streams in flight finish), then close once none is left."""
        if not self.goaway_sent:
            self.goaway_sent = True
            self.codec.goaway_gracefully()
            self.write_out()
        if not self.streams:
            self._close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def _close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.write_now()
        if self.transport is not None:
            self.transport.close()

    def _spend(self, what: str) -> None:
        """One reset or answered control frame out of the bucket; GOAWAY when it is empty."""
        now = self.clock()
        tokens = min(RESET_BURST, self._reset_tokens + (now - self._reset_at) * RESETS_PER_SECOND)
        self._reset_at = now
        tokens -= 1.0
        self._reset_tokens = tokens
        if tokens < 0 and not self.closing:
            self.tcp.abuse_closes += 1
            self._refuse(ENHANCE_YOUR_CALM, f"too many {what}")

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        """Bytes HTTP/2 forbids: the codec queued GOAWAY; send it and close."""
        stats = self.ctx.malformed
        stats.requests += 1
        stats.count(400, errors.MALFORMED_REQUEST.code)
        self._linger_and_close()

    def _refuse(self, code: int, reason: str) -> None:
        self.codec.goaway(code)
        self._linger_and_close()

    def _linger_and_close(self) -> None:
        """Send what is queued (the GOAWAY), shut our side, drop what the client still
        sends for `LINGER` seconds, then close."""
        self.goaway_sent = True
        self.write_now()
        self._drop_streams()
        self.closing = True
        transport = self.transport
        if transport is None:
            return
        if transport.can_write_eof():
            transport.write_eof()
        self.ctx.runtime.loop.call_later(LINGER, transport.abort)

    def _drop_streams(self) -> None:
        streams = self.streams
        self.streams = {}
        for stream in streams.values():
            if stream.tunnel is not None:
                stream.tunnel.close()
            if stream.exchange is not None:
                stream.exchange.client_lost()


def websocket_upgrade(head: RequestHead) -> None:
    """An extended CONNECT (RFC 8441 §4: ``:method CONNECT``, ``:protocol websocket``) as
    the HTTP/1.1 Upgrade an endpoint understands (RFC 6455 §4.1): ``GET`` the path with
    ``Upgrade: websocket`` (the HTTP/1.1 writer adds it for ``head.protocol``) and a
    ``Sec-WebSocket-Key``, which HTTP/2 clients do not send."""
    head.method = b"GET"
    head.chunked = False  # the stream's bytes are the tunnel's, not a body
    headers = head.headers
    if not any(name == b"sec-websocket-key" for name, _ in headers):
        headers.append((b"sec-websocket-key", base64.b64encode(os.urandom(16))))


class StreamTunnel:
    """An HTTP/2 stream joined to an upstream connection that switched protocols: the
    stream's DATA is written to the connection, and what the connection reads goes out
    as DATA, each way under the other's flow control (the h2 window one way, the
    transport's write buffer the other)."""

    __slots__ = ("paused_acks", "stats", "stream", "transport", "unacked")

    def __init__(self, stream: H2ClientStream, taken: Tunnel) -> None:
        transport, tail, stats = taken
        self.stream = stream
        self.transport = transport
        self.stats = stats
        self.unacked = 0
        self.paused_acks = False  # the endpoint is not reading: the client's DATA waits
        transport.set_protocol(self)  # type: ignore[arg-type]
        transport.set_write_buffer_limits(WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW)
        if tail:
            self.data_received(tail)
        transport.resume_reading()

    # -- the client's side (the stream) --

    def from_client(self, data: bytes, flow: int) -> None:
        self.stats.write_bytes += len(data)
        self.transport.write(data)
        if self.paused_acks:
            self.unacked += flow
        else:
            self.stream.conn.codec.ack(self.stream.sid, flow)

    def client_ended(self) -> None:
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def drained(self) -> None:
        """The client's window took what waited: read from the endpoint again."""
        self.transport.resume_reading()

    def close(self) -> None:
        self.transport.abort()

    # -- asyncio.Protocol of the upstream connection --

    def data_received(self, data: bytes) -> None:
        self.stats.read_bytes += len(data)
        stream = self.stream
        conn = stream.conn
        if conn.codec.send_data(stream.sid, data) > PAUSE_ABOVE:
            self.transport.pause_reading()
        conn.write_out()

    def eof_received(self) -> bool:
        stream = self.stream
        stream.conn.codec.send_end(stream.sid, None)
        stream.conn.write_out()
        return True  # the client may still send; its end closes our side

    def pause_writing(self) -> None:
        self.paused_acks = True

    def resume_writing(self) -> None:
        self.paused_acks = False
        if self.unacked:
            stream = self.stream
            stream.conn.codec.ack(stream.sid, self.unacked)
            self.unacked = 0
            stream.conn.write_out()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        stream = self.stream
        conn = stream.conn
        stream.tunnel = None
        if conn.streams.get(stream.sid) is stream:
            del conn.streams[stream.sid]
            if exc is not None:
                conn.codec.reset(stream.sid, CANCEL)
            elif conn.codec.is_open(stream.sid):
                conn.codec.send_end(stream.sid, None)
            conn.write_out()

