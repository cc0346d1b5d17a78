"""Two connections joined into one byte stream each way: what opaque TCP and tunnels become.

A `Splice` owns two transports, the client's and the upstream's, each driven by a
`SpliceEnd` (the asyncio protocol of that transport). What one end reads is written to
the other's transport as it came: no copy, no buffer of our own, two integer additions
per read for the byte counters. Opaque TCP connections are spliced once their upstream
connects (`tulle.tcp.session`); a WebSocket or CONNECT tunnel is spliced once its HTTP
exchange has switched protocols (the two transports are handed over, each with the
bytes that followed the HTTP message in its last read).

Theory of operation:

- **Flow control.** Each transport's write buffer has the marks of the HTTP side (64 KiB
  high, 16 KiB low). When an end's transport is past the high mark (its reader is slow),
  reading from the *other* end stops until the buffer drains below the low mark. So a
  slow reader costs at most one write buffer plus one read per direction, however fast
  the other side sends.
- **Half-close.** An end that reads EOF shuts the other end's sending side
  (``write_eof``) and keeps its own transport open for what still comes back: a client
  that sends its request and shuts down (``nc -q``, HTTP/1.0-style) still gets the whole
  answer. Once both directions have ended, both transports close.
- **Loss.** An end whose connection is lost closes the other: gracefully (after what is
  buffered is sent) when it ended cleanly, at once (``abort``, a reset) when it ended in
  an error, so a reset travels through the proxy as a reset.
- **Accounting.** Each end counts its bytes and its close (with the connection's lifetime
  and the errno of a failure) on its own `TcpStats`; the splice ends — ``on_end`` runs —
  once both connections are gone.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import asyncio

    from tulle.telemetry.metrics import TcpStats

# The HTTP side's marks (tulle.downstream.h1): the most a slow reader makes us hold.
WRITE_BUFFER_HIGH: Final = 64 * 1024
WRITE_BUFFER_LOW: Final = 16 * 1024


def errno_name(exc: BaseException | None) -> str:
    """The errno name of a connection's end ("" when it ended cleanly)."""
    if exc is None:
        return ""
    number = getattr(exc, "errno", None)
    if isinstance(number, int) and number in errno.errorcode:
        return errno.errorcode[number]
    return "EIO"


class SpliceEnd:
    """The protocol of one transport of a splice: what it reads goes to its peer."""

    __slots__ = ("close_reason", "eof", "lost", "opened_at", "peer", "splice", "stats",
                 "transport")

    def __init__(self, splice: Splice, stats: TcpStats) -> None:
        self.splice = splice
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.peer: SpliceEnd | None = None
        self.eof = False  # this end read EOF: its peer's sending side is shut
        self.lost = False
        self.opened_at = 0.0
        # Why the splice closes this end itself when it does (an errno name), for its close.
        self.close_reason = ""

    def attach(self, transport: asyncio.Transport, counted: bool = False) -> None:
        """Drive ``transport`` from now on (``counted``: its open was counted already, as
        a client connection's is when it was accepted as HTTP)."""
        self.transport = transport
        self.opened_at = self.splice.clock()
        transport.set_write_buffer_limits(WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW)
        if not counted:
            self.stats.opened += 1

    # -- asyncio.Protocol (an upstream end is made by connecting with it) --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        size = len(data)
        self.stats.read_bytes += size
        peer = self.peer
        assert peer is not None and peer.transport is not None
        peer.stats.write_bytes += size
        peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        assert peer is not None
        if peer.transport is None or peer.lost:
            return False
        if peer.eof:  # both directions have ended
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True  # keep reading what the peer still sends back our way
        peer.transport.close()
        return False

    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.splice.end_lost(self, exc)

    def close(self, reason: str) -> None:
        """Close this end now (``reason``: the errno name its close is counted under)."""
        self.close_reason = reason
        if self.transport is not None and not self.lost:
            self.transport.abort()


class Splice:
    """A client connection and an upstream connection, joined (see the module note)."""

    __slots__ = ("client", "clock", "on_end", "upstream")

    def __init__(
        self,
        client_stats: TcpStats,
        upstream_stats: TcpStats,
        clock: Callable[[], float],
        on_end: Callable[[Splice], None] | None,
    ) -> None:
        self.clock = clock
        self.on_end = on_end
        self.client = SpliceEnd(self, client_stats)
        self.upstream = SpliceEnd(self, upstream_stats)
        self.client.peer = self.upstream
        self.upstream.peer = self.client

    @classmethod
    def join(
        cls,
        client: tuple[asyncio.Transport, bytes, TcpStats],
        upstream: tuple[asyncio.Transport, bytes, TcpStats],
        clock: Callable[[], float],
        on_end: Callable[[Splice], None],
    ) -> Splice:
        """Splice two connections that were HTTP until now (each: its transport, the bytes
        read past the HTTP message, and the stats its open was counted on), and let each
        read again."""
        (client_transport, client_tail, client_stats) = client
        (upstream_transport, upstream_tail, upstream_stats) = upstream
        splice = cls(client_stats, upstream_stats, clock, on_end)
        for end, transport in ((splice.client, client_transport),
                               (splice.upstream, upstream_transport)):
            transport.set_protocol(end)  # type: ignore[arg-type]
            end.attach(transport, counted=True)
        # The tails were counted as read by the HTTP sides: only their writes count here.
        if client_tail:
            upstream_stats.write_bytes += len(client_tail)
            upstream_transport.write(client_tail)
        if upstream_tail:
            client_stats.write_bytes += len(upstream_tail)
            client_transport.write(upstream_tail)
        client_transport.resume_reading()
        upstream_transport.resume_reading()
        return splice

    def end_lost(self, end: SpliceEnd, exc: Exception | None) -> None:
        if end.lost:
            return
        end.lost = True
        if end.transport is not None:
            end.stats.record_close((self.clock() - end.opened_at) * 1000.0,
                                   end.close_reason or errno_name(exc))
        if end is not self.client and end is not self.upstream:
            return  # a connect given up on that completed anyway, now closed
        peer = end.peer
        assert peer is not None
        if peer.transport is not None and not peer.lost:
            if exc is not None or end.close_reason:
                peer.transport.abort()  # a reset travels on as a reset
            else:
                peer.transport.close()  # after what is buffered for it is sent
        if self.client.lost and (self.upstream.lost or self.upstream.transport is None):
            on_end = self.on_end
            if on_end is not None:
                self.on_end = None
                on_end(self)

    def close_if_idle(self) -> None:
        """The proxy is draining: a splice is never known to be idle; it ends when its
        peers end it, or when the grace period runs out (`abort`)."""

    def abort(self) -> None:
        """Close both connections at once (the proxy is stopping)."""
        for end in (self.client, self.upstream):
            if end.transport is not None and not end.lost:
                end.transport.abort()
