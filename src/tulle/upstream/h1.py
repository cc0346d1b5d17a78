"""One HTTP/1.1 connection to an endpoint: an asyncio Protocol over the response parser.

It carries one request at a time (no pipelining upstream, as Envoy and Linkerd do for
HTTP/1.1) and reports every parsed piece of the response to the attempt it is lent to
(its *sink*, `tulle.proxy.streams.ResponseSink`). Between requests it sits idle in its
pool; it goes back there only when it is clean — the response ended at a message
boundary, keep-alive, its parser idle, nothing unread — otherwise it is closed, because
bytes left over from one response must never reach the next request's client (HAProxy
and nginx close such connections too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from tulle.http import RemoteProtocolError, RequestHead, ResponseHead, ResponseParser
from tulle.http.h1.writer import encode_chunk, encode_last_chunk, request_head
from tulle.proxy.streams import UpstreamStream
from tulle.telemetry.metrics import TcpStats

if TYPE_CHECKING:
    from tulle.http import Headers
    from tulle.proxy.streams import ResponseSink, Tunnel
    from tulle.upstream.pool import EndpointPool


class UpstreamConnection(UpstreamStream):
    """An asyncio protocol (uvloop calls it by name; it needs no base class) and the
    stream an attempt leases."""

    __slots__ = (
        "_authority",
        "_chunked",
        "_keep_alive",
        "_reading_paused",
        "_switched",
        "_unsolicited",
        "closed",
        "idle_since",
        "parser",
        "pool",
        "reused",
        "send",
        "sink",
        "tcp",
        "transport",
    )

    def __init__(self, pool: EndpointPool, tcp: TcpStats) -> None:
        self.pool = pool
        self.tcp = tcp
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser(self)
        self.sink: ResponseSink | None = None  # the attempt this connection is lent to
        self.reused = False
        self.closed = False
        self.idle_since = 0.0
        self._chunked = False  # the request body goes chunked
        self._keep_alive = True  # the latest response allows another request
        self._reading_paused = False
        self.send: Callable[[bytes], None] = _unconnected  # transport.write, bound once
        self._unsolicited = False  # a response arrived that no request asked for
        # After a 101: what followed it, kept for the splice (None: still HTTP).
        self._switched: bytes | None = None
        # The Host sent when a request has none (HTTP/1.0 forwarded as HTTP/1.1).
        self._authority = f"{pool.host}:{pool.port}".encode()

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send = transport.write  # type: ignore[attr-defined]
        self.tcp.opened += 1

    def data_received(self, data: bytes) -> None:
        self.tcp.read_bytes += len(data)
        sink = self.sink
        if sink is None:
            # Bytes on an idle connection: the endpoint is out of step with us.
            self.close()
            return
        try:
            self.parser.feed(data)
        except RemoteProtocolError as exc:
            if self.sink is not None:
                self.sink = None
                self.close()
                sink.upstream_failed(exc.reason)
            else:
                self.close()  # after the response it was lent for: not reusable
            return
        if self.sink is None and (self._unsolicited or self.parser.mid_message):
            # The response ended and more bytes followed it in the same read: the
            # connection is out of step and must not carry another request.
            self.close()
            return
        sink.response_flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.tcp.closed += 1
        sink = self.sink
        if sink is None:
            self.pool.forget(self)
            return
        if self.parser.feed_eof():
            return  # that EOF ended a read-until-close body; response_end ran
        self.sink = None
        sink.upstream_lost(self.parser.mid_message)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.pause_request()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.resume_request()

    # -- response parser callbacks --

    def on_informational(self, head: ResponseHead) -> None:
        if self.sink is not None:
            self.sink.response_informational(head)

    def on_head(self, head: RequestHead | ResponseHead) -> None:
        assert isinstance(head, ResponseHead)
        sink = self.sink
        if sink is None:
            self._unsolicited = True
            return
        self._keep_alive = head.keep_alive
        sink.response_head(head)

    def on_body(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.response_body(data)

    def on_end(self, trailers: Headers | None) -> None:
        sink = self.sink
        if sink is not None:
            sink.response_end(trailers)

    def on_upgrade(self, head: RequestHead | ResponseHead, tail: bytes) -> None:
        """The endpoint accepted the Upgrade (101): the response ends here, and the
        connection waits, paused, for the client side to take it (`take_tunnel`)."""
        self._switched = tail
        self._reading_paused = True
        if self.transport is not None:
            self.transport.pause_reading()
        sink = self.sink
        if sink is not None:
            sink.response_end(None)
        if not self.closed:  # nobody took it: the client left, or its side cannot splice
            self._switched = None
            self.close()

    # -- the stream an attempt leases (tulle.proxy.streams.UpstreamStream) --

    def send_request_head(
        self,
        head: RequestHead,
        client_ip: bytes,
        body: list[bytes] | None,
        trailers: Headers | None,
        complete: bool,
    ) -> None:
        chunked = self._chunked = head.chunked
        if head.method == b"HEAD":
            self.parser.expect_no_body()
        elif head.protocol is not None:
            self.parser.expect_upgrade()
        data = request_head(head, client_ip, self._authority)
        if not body and not (complete and chunked):
            self._send(data)  # a request without a body (most): the head alone
            return
        parts = [data]
        if body:
            if chunked:
                parts.extend(encode_chunk(piece) for piece in body)
            else:
                parts.extend(body)
        if complete and chunked:
            parts.append(encode_last_chunk(trailers))
        self._send(b"".join(parts))

    def send_request_body(self, data: bytes) -> None:
        self._send(encode_chunk(data) if self._chunked else data)

    def send_request_end(self, trailers: Headers | None) -> None:
        if self._chunked:
            self._send(encode_last_chunk(trailers))

    def pause_response(self) -> None:
        if self.transport is not None and not self.closed and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_response(self) -> None:
        if self.transport is not None and not self.closed and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def release(self, reusable: bool) -> None:
        """The response ended: back to the pool if clean, closed otherwise."""
        self.sink = None
        if self._switched is not None:
            return  # a tunnel now, for the client side to take
        if (reusable and self._keep_alive and not self.parser.mid_message
                and not self._reading_paused):
            self.pool.release(self)
        else:
            self.close()

    def reset(self) -> None:
        self.close()

    def take_tunnel(self) -> Tunnel | None:
        tail = self._switched
        transport = self.transport
        if tail is None or transport is None or self.closed:
            return None
        self.closed = True  # no longer this object's (nor the pool's): the splice's
        return transport, tail, self.tcp

    # -- internals --

    def _send(self, data: bytes) -> None:
        self.tcp.write_bytes += len(data)
        self.send(data)

    def close(self) -> None:
        """Close now; a sink still attached hears nothing more."""
        self.sink = None
        if self.transport is not None and not self.closed:
            self.transport.abort()


def _unconnected(data: bytes) -> None:
    raise RuntimeError("a write before the connection was made")
