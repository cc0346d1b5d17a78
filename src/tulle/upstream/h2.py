"""HTTP/2 to an endpoint: connections that carry many streams, and the pool that lends
one stream per attempt.

`H2Pool` keeps a few `H2UpstreamConnection`s per address (h2c, prior knowledge) and
lends each attempt an `H2UpstreamStream` (`tulle.proxy.streams.UpstreamStream`) on the
first connection with room: fewer streams open than the endpoint's
SETTINGS_MAX_CONCURRENT_STREAMS, and not going away. When every connection is full it
opens another, so a burst is never queued behind the endpoint's limit; requests that
arrive while a connection is being made wait for it (up to the limit it will have).
Connection failures and reachability are the address's `EndpointPool`'s, which this
pool belongs to.

Theory of operation, per stream: the attempt's request head is sent when the stream is
lent (its ID allocated then, since HTTP/2 wants them in order); the response arrives as
codec calls routed by stream ID to the stream's sink (the attempt); the stream ends
when the response ends (`release`) or the attempt lets go (`reset`, RST_STREAM(CANCEL)).

Failures that say the request was never processed — RST_STREAM(REFUSED_STREAM), or a
GOAWAY whose last stream ID is below the stream's (RFC 9113 §8.7) — are told to the
sink as `upstream_refused`, and the attempt sends the request again on a fresh stream.
A connection that got GOAWAY takes no new streams and closes when its last one ends.

Flow control: a response's data is acknowledged to the endpoint once passed to the
client, except while the client is paused (`pause_response`): then the endpoint stops
after one stream window. A request body beyond the endpoint's window waits in the codec;
past `PAUSE_ABOVE` the client's side is paused.

Imported by the first `EndpointPool.h2` (the h2 library is loaded then, not at start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import TYPE_CHECKING, Final, cast

from tulle.http import RemoteProtocolError, RequestHead, ResponseHead
from tulle.http.h2 import CANCEL, NO_ERROR, REFUSED_STREAM, H2Codec, request_fields
from tulle.http.h2.heads import trailer_fields
from tulle.proxy.streams import UpstreamStream
from tulle.transport.tls import ALPN_H2

if TYPE_CHECKING:
    from collections.abc import Callable

    from tulle.http import Headers
    from tulle.proxy.streams import LeaseWaiter, ResponseSink
    from tulle.telemetry.metrics import TcpStats
    from tulle.upstream.pool import EndpointPool

# Request bytes waiting for the endpoint's window past which the client is paused.
PAUSE_ABOVE: Final = 64 * 1024
# Streams assumed allowed on a new connection before its SETTINGS arrive (RFC 9113
# §6.5.2 says unlimited; 100 is what servers commonly set).
ASSUMED_MAX_STREAMS: Final = 100
# Streams the proxy puts on one connection even when the endpoint allows more (an
# endpoint that sets no limit gets another connection past this).
MAX_STREAMS_PER_CONNECTION: Final = 1000


class H2UpstreamStream(UpstreamStream):
    """One attempt's stream on an upstream HTTP/2 connection."""

    __slots__ = ("conn", "delivered", "request_ended", "responded", "response_paused",
                 "reused", "sid", "sink", "unacked")

    def __init__(self, conn: H2UpstreamConnection, sink: ResponseSink) -> None:
        self.conn = conn
        self.sink: ResponseSink | None = sink
        self.sid = 0  # allocated when the head is sent
        self.reused = False  # a stream is never reused; refusals are told explicitly
        self.request_ended = False
        self.responded = False
        self.response_paused = False
        self.unacked = 0
        self.delivered = False  # the current read gave its sink something to write out

    # -- UpstreamStream --

    def send_request_head(
        self,
        head: RequestHead,
        client_ip: bytes,
        body: list[bytes] | None,
        trailers: Headers | None,
        complete: bool,
    ) -> None:
        conn = self.conn
        codec = conn.codec
        sid = self.sid = codec.next_stream_id()
        conn.streams[sid] = self
        fields = request_fields(head, client_ip, conn.authority)
        end = complete and not body and not trailers
        codec.send_head(sid, fields, end)
        if body:
            for piece in body:
                codec.send_data(sid, piece)
        if end:
            self.request_ended = True
        elif complete:
            self.send_request_end(trailers)
        conn.write_out()

    def send_request_body(self, data: bytes) -> None:
        if self.sid and not self.request_ended:
            conn = self.conn
            if conn.codec.send_data(self.sid, data) > PAUSE_ABOVE and self.sink is not None:
                conn.paused_requests.add(self.sid)
                self.sink.pause_request()
            conn.write_out()

    def send_request_end(self, trailers: Headers | None) -> None:
        if self.sid and not self.request_ended:
            self.request_ended = True
            self.conn.codec.send_end(self.sid, trailer_fields(trailers) if trailers else None)
            self.conn.write_out()

    def pause_response(self) -> None:
        self.response_paused = True

    def resume_response(self) -> None:
        self.response_paused = False
        if self.unacked:
            conn = self.conn
            conn.codec.ack(self.sid, self.unacked)
            self.unacked = 0
            conn.write_out()

    def release(self, reusable: bool) -> None:
        """The response ended. A request still being sent is cut short (RST_STREAM
        NO_ERROR would do; CANCEL says it plainly)."""
        self.sink = None
        if not self.request_ended:
            self.conn.codec.reset(self.sid, CANCEL)
            self.conn.write_out()
        self.conn.stream_over(self)

    def reset(self) -> None:
        """The attempt lets go: RST_STREAM(CANCEL) if the stream is still open."""
        self.sink = None
        conn = self.conn
        if self.sid and conn.codec.is_open(self.sid):
            conn.codec.reset(self.sid, CANCEL)
            conn.write_out()
        conn.stream_over(self)


class H2UpstreamConnection:
    """An asyncio protocol: one h2c connection to an endpoint, carrying many streams."""

    __slots__ = ("authority", "closed", "codec", "going_away", "idle_since", "paused_requests",
                 "pool", "settled", "streams", "tcp", "touched", "transport", "write_soon")
    # ``touched``: the streams that delivered something to their sinks in the current
    # read; each is told `response_flush` once at its end, so what one read brought goes
    # to the client in one write.

    def __init__(self, pool: H2Pool, tcp: TcpStats) -> None:
        self.pool = pool
        self.tcp = tcp
        self.codec = H2Codec(self, client_side=True)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2UpstreamStream] = {}
        self.closed = False
        self.going_away = False
        self.settled = False  # the endpoint's first SETTINGS arrived
        self.write_soon = False  # a write of what the codec queued is due this turn
        self.idle_since = 0.0
        self.authority = pool.authority
        self.paused_requests: set[int] = set()
        self.touched: list[H2UpstreamStream] = []  # streams that got something this read

    @property
    def capacity(self) -> int:
        """Streams it may still open."""
        if self.closed or self.going_away:
            return 0
        limit = self.codec.max_concurrent_streams if self.settled else ASSUMED_MAX_STREAMS
        return min(limit, MAX_STREAMS_PER_CONNECTION) - len(self.streams)

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.tcp.opened += 1
        self.codec.initiate()
        self.write_out()

    def data_received(self, data: bytes) -> None:
        self.tcp.read_bytes += len(data)
        try:
            self.codec.feed(data)
        except RemoteProtocolError as exc:
            self.write_out()
            self._fail_all(exc.reason)
            self.close()
            return
        touched = self.touched
        if touched:
            self.touched = []
            for stream in touched:
                stream.delivered = False
                if stream.sink is not None:
                    stream.sink.response_flush()
        self.write_out()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.tcp.closed += 1
        streams = self.streams
        self.streams = {}
        for stream in streams.values():
            sink = stream.sink
            if sink is not None:
                stream.sink = None
                sink.upstream_lost(stream.responded)
        self.pool.forget(self)

    def pause_writing(self) -> None:
        for stream in self.streams.values():
            if stream.sink is not None:
                stream.sink.pause_request()

    def resume_writing(self) -> None:
        for stream in self.streams.values():
            if stream.sink is not None and stream.sid not in self.paused_requests:
                stream.sink.resume_request()

    # -- codec callbacks (tulle.http.h2.H2Handler) --

    def stream_head(self, stream_id: int, head: RequestHead | ResponseHead) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.sink is None:
            return
        assert isinstance(head, ResponseHead)
        stream.responded = True
        if not stream.delivered:
            stream.delivered = True
            self.touched.append(stream)
        stream.sink.response_head(head)

    def stream_informational(self, stream_id: int, head: ResponseHead) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.sink is not None:
            stream.sink.response_informational(head)

    def stream_data(self, stream_id: int, data: bytes, flow: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.sink is None:
            self.codec.ack(stream_id, flow)
            return
        if not stream.delivered:
            stream.delivered = True
            self.touched.append(stream)
        stream.sink.response_body(data)
        if stream.response_paused:
            stream.unacked += flow
        else:
            self.codec.ack(stream_id, flow)

    def stream_end(self, stream_id: int, trailers: Headers | None) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.sink is not None:
            stream.sink.response_end(trailers)

    def stream_reset(self, stream_id: int, code: int) -> None:
        stream = self.streams.pop(stream_id, None)
        self.paused_requests.discard(stream_id)
        if stream is None:
            return
        sink = stream.sink
        stream.sink = None
        if sink is not None:
            if code == REFUSED_STREAM and not stream.responded:
                sink.upstream_refused()
            elif code == NO_ERROR and stream.responded:
                pass  # the endpoint answered and does not want the rest of the request
            else:
                sink.upstream_lost(stream.responded)
        self.pool.stream_freed(self)

    def window_opened(self, stream_ids: list[int]) -> None:
        paused = self.paused_requests
        for sid in stream_ids:
            if sid in paused:
                paused.discard(sid)
                stream = self.streams.get(sid)
                if stream is not None and stream.sink is not None:
                    stream.sink.resume_request()

    def settings_changed(self) -> None:
        self.settled = True
        self.pool.stream_freed(self)

    def pinged(self) -> None:
        pass  # h2 answers; an endpoint may ping as it likes

    def goaway(self, last_stream_id: int, code: int) -> None:
        """The endpoint is leaving: streams above ``last_stream_id`` were never processed
        (sent again elsewhere); the rest finish; no new ones start here."""
        self.going_away = True
        for sid in [sid for sid in self.streams if sid > last_stream_id]:
            stream = self.streams.pop(sid)
            sink = stream.sink
            stream.sink = None
            if sink is not None:
                sink.upstream_refused()
        if not self.streams:
            self.close()

    # -- the streams' side --

    def lend(self, waiter: LeaseWaiter) -> None:
        """A new stream for ``waiter``, which sends its request head at once."""
        waiter.leased(H2UpstreamStream(self, waiter))

    def stream_over(self, stream: H2UpstreamStream) -> None:
        if self.streams.get(stream.sid) is stream:
            del self.streams[stream.sid]
            self.paused_requests.discard(stream.sid)
        if self.going_away and not self.streams:
            self.close()
            return
        self.pool.stream_freed(self)

    def write_out(self) -> None:
        """Send what the codec has queued, once per turn of the loop (see downstream/h2)."""
        if not self.write_soon:
            self.write_soon = True
            self.pool.loop.call_soon(self.write_now)

    def write_now(self) -> None:
        self.write_soon = False
        data = self.codec.data_to_send()
        if data:
            self.tcp.write_bytes += len(data)
            transport = self.transport
            if transport is not None and not self.closed:
                transport.write(data)

    def close(self) -> None:
        """GOAWAY and close (streams still open hear `upstream_lost`)."""
        if self.closed:
            return
        with contextlib.suppress(Exception):  # h2 may have ended the connection already
            self.codec.goaway(NO_ERROR)
        self.write_now()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail_all(self, reason: str) -> None:
        streams = self.streams
        self.streams = {}
        for stream in streams.values():
            sink = stream.sink
            if sink is not None:
                stream.sink = None
                sink.upstream_failed(reason)


class H2Pool:
    """HTTP/2 connections to one address, lending streams (see the module note)."""

    __slots__ = ("_connecting", "_waiters", "address", "authority", "conns", "loop")

    def __init__(self, address: EndpointPool) -> None:
        self.address = address
        self.loop = address.loop
        self.authority = f"{address.host}:{address.port}".encode()
        self.conns: list[H2UpstreamConnection] = []
        self._connecting = 0
        self._waiters: list[LeaseWaiter] = []  # for connections being made

    def lease(self, waiter: LeaseWaiter) -> None:
        """Lend ``waiter`` a stream: on a connection with room, or on a new one."""
        for conn in self.conns:
            if conn.capacity > 0:
                conn.lend(waiter)
                return
        self._waiters.append(waiter)
        if len(self._waiters) > self._connecting * ASSUMED_MAX_STREAMS:
            self._open()

    def connect(self, waiter: LeaseWaiter) -> None:
        """Lend ``waiter`` a stream on a new connection."""
        self._waiters.append(waiter)
        self._open()

    def _open(self) -> None:
        self._connecting += 1
        factory = cast("Callable[[], asyncio.Protocol]",
                       partial(H2UpstreamConnection, self, self.address.tcp))
        task, timer = self.address.open_connection(factory, ALPN_H2)
        task.add_done_callback(partial(self._connected, timer))

    def _connected(self, timer: asyncio.TimerHandle, task: asyncio.Task) -> None:
        timer.cancel()
        self._connecting -= 1
        failure = self.address.failure_of(task)
        if failure is not None:
            if not self._connecting:
                waiters, self._waiters = self._waiters, []
                for waiter in waiters:
                    if waiter.wants_lease():
                        waiter.lease_failed(failure)
            return  # else: the waiters wait for the connection still being made
        conn = cast(H2UpstreamConnection, task.result()[1])
        if self.address.retired:
            conn.close()
            return
        self.conns.append(conn)
        self._serve_waiters()

    def _serve_waiters(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters[0]
            if not waiter.wants_lease():
                waiters.pop(0)
                continue
            conn = next((c for c in self.conns if c.capacity > 0), None)
            if conn is None:
                if not self._connecting:
                    self._open()
                return
            waiters.pop(0)
            conn.lend(waiter)

    def stream_freed(self, conn: H2UpstreamConnection) -> None:
        if conn.closed:
            return
        if not conn.streams:
            conn.idle_since = self.loop.time()
        if self._waiters:
            self._serve_waiters()

    def forget(self, conn: H2UpstreamConnection) -> None:
        if conn in self.conns:
            self.conns.remove(conn)

    def close_idle_before(self, deadline: float) -> None:
        for conn in list(self.conns):
            if not conn.streams and conn.idle_since < deadline:
                self.conns.remove(conn)
                conn.close()

    def retire(self) -> None:
        for conn in list(self.conns):
            if not conn.streams:
                self.conns.remove(conn)
                conn.close()
            else:
                conn.going_away = True

    @property
    def open_streams(self) -> int:
        return sum(len(conn.streams) for conn in self.conns)
