"""One connection to an upstream endpoint: an asyncio Protocol over the response codec.

It carries one exchange at a time (no pipelining upstream, as Envoy and
Linkerd do for HTTP/1.1) and hands every parsed piece of the response to that
exchange. Between exchanges it sits idle in its pool.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tulle.http import RemoteProtocolError, RequestHead, ResponseHead, ResponseParser
from tulle.telemetry.metrics import TcpStats

if TYPE_CHECKING:
    from tulle.proxy.exchange import Exchange
    from tulle.proxy.pool import EndpointPool


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "closed",
        "exchange",
        "idle_since",
        "parser",
        "pool",
        "reused",
        "tcp",
        "transport",
    )

    def __init__(self, pool: EndpointPool, tcp: TcpStats) -> None:
        self.pool = pool
        self.tcp = tcp
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser(self)
        self.exchange: Exchange | None = None
        self.reused = False
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.tcp.opened += 1

    def data_received(self, data: bytes) -> None:
        self.tcp.read_bytes += len(data)
        exchange = self.exchange
        if exchange is None:
            # Bytes on an idle connection: the upstream is out of step with us.
            self.close()
            return
        client = exchange.conn
        client.cork()  # the response head and the body bytes read with it: one send
        try:
            self.parser.feed(data)
        except RemoteProtocolError as exc:
            self.exchange = None
            self.close()
            exchange.upstream_failed(exc.reason, "bad-response")
        finally:
            client.uncork()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.tcp.closed += 1
        exchange = self.exchange
        if exchange is None:
            self.pool.forget(self)
            return
        if self.parser.feed_eof():
            return  # that EOF ended a read-until-close body; on_end ran
        self.exchange = None
        exchange.upstream_lost(self)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.conn.pause_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.conn.resume_reading()

    # -- codec callbacks --

    # The exchange may let go of this connection mid-read (a retried status, a
    # timeout): what the parser still delivers after that is dropped.

    def on_head(self, head: RequestHead | ResponseHead) -> None:
        assert isinstance(head, ResponseHead)
        if self.exchange is not None:
            self.exchange.response_head(head)

    def on_body(self, data: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(data)

    def on_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.response_end(trailers, self)

    # -- used by the exchange --

    @property
    def mid_response(self) -> bool:
        return self.parser.mid_message

    def begin(self, exchange: Exchange, data: bytes, no_body: bool) -> None:
        """Start carrying ``exchange``: send its request head (and what body is buffered)."""
        self.exchange = exchange
        if no_body:
            self.parser.expect_no_body()
        self.send(data)

    def send(self, data: bytes) -> None:
        self.tcp.write_bytes += len(data)
        assert self.transport is not None
        self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        """Close now; an exchange still attached is detached first."""
        self.exchange = None
        if self.transport is not None and not self.closed:
            self.transport.abort()
