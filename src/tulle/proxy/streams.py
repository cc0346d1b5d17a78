"""The interfaces the request core speaks through: the client's side, the upstream's side.

The exchange, its attempts and the layers never touch a socket or a codec. The client
side of one request (`ClientStream`: an HTTP/1.1 connection answering one request at a
time, or an HTTP/2 stream) and the upstream side of one attempt (`UpstreamStream`: a
pooled HTTP/1.1 connection, or an HTTP/2 stream) are reached only through these
methods, so every HTTP/1-versus-HTTP/2 difference lives in `tulle.downstream` and
`tulle.upstream` (DESIGN.md, "Code layout").

Events flow the other way through `ResponseSink` (what an upstream stream tells the
attempt it carries) and `LeaseWaiter` (what a pool tells the attempt that asked it
for a stream). A pool never sees an exchange: only a waiter, which says through
`LeaseWaiter.wants_lease` whether it still wants what it asked for.

They are *traits* (mypy_extensions): abstract base classes the sides inherit, which
mypyc calls through a table instead of looking methods up by name (setup.py); in pure
Python a trait is an ordinary base class (mypy_extensions is a runtime dependency for this).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy_extensions import trait

if TYPE_CHECKING:
    import asyncio

    from tulle.http import Headers, RequestHead, ResponseHead
    from tulle.proxy.exchange import Exchange
    from tulle.telemetry.metrics import TcpStats

    # A connection handed over for a splice: its transport (reading paused), the bytes
    # that followed the last HTTP message in its last read, and the stats it counts on.
    Tunnel = tuple[asyncio.Transport, bytes, TcpStats]


@trait
class ClientStream:
    """The client's side of one request: where its response goes."""

    __slots__ = ()

    peer_ip: bytes  # the client's address, for X-Forwarded-For and hashing
    # The client's verified identity (a SPIFFE ID) when it came over mutual TLS, else None.
    peer_identity: str | None
    # Where the connection was going before iptables redirected it, as (ip, port); None
    # when it was not captured.
    original_dst: tuple[str, int] | None

    def send_continue(self) -> None:
        """Tell the client to send its body (``100 Continue``)."""

    def send_informational(self, head: ResponseHead) -> None:
        """Forward an interim (1xx) response from the endpoint."""

    def send_response_head(self, head: ResponseHead, exchange: Exchange) -> None:
        """Start the response: the endpoint's head, framed for this client."""

    def send_response_body(self, data: bytes) -> None: ...

    def send_response_end(self, trailers: Headers | None) -> None: ...

    def flush(self) -> None:
        """One read from the endpoint has been passed on: write it out together."""

    def send_local(self, status: int, reason: str, exchange: Exchange) -> None:
        """A whole response the proxy makes itself (404, 502, 503, 504 …)."""

    def cut(self) -> None:
        """The response began and cannot be completed: end it the only honest way left."""

    def retract(self) -> bool:
        """Take back the response begun, if none of it has reached the client yet (its
        head is still held): True when it was taken back and the client can still be
        answered (a retry, a 502)."""
        return False

    def pause_request(self) -> None:
        """Stop reading the request body: it has nowhere to go yet."""

    def resume_request(self) -> None: ...

    def exchange_finished(self, exchange: Exchange) -> None:
        """``exchange`` is answered (or cut): the client side may move on."""


@trait
class UpstreamStream:
    """An attempt's lease on an upstream connection: where its request goes."""

    __slots__ = ()

    reused: bool  # it carried a request before this one (a stale keep-alive may be closed)

    def send_request_head(
        self,
        head: RequestHead,
        client_ip: bytes,
        body: list[bytes] | None,
        trailers: Headers | None,
        complete: bool,
    ) -> None:
        """Send the request head, the body held so far, and its end if ``complete``."""

    def send_request_body(self, data: bytes) -> None: ...

    def send_request_end(self, trailers: Headers | None) -> None: ...

    def pause_response(self) -> None:
        """Stop reading the response: the client is not keeping up."""

    def resume_response(self) -> None: ...

    def release(self, reusable: bool) -> None:
        """The response ended: give the connection back (reused only if it is clean)."""

    def reset(self) -> None:
        """Abandon this lease: whatever the endpoint still sends is not wanted."""

    def take_tunnel(self) -> Tunnel | None:
        """After the endpoint switched protocols (101 to an Upgrade request, whose
        response then ended): the connection, for the client side to splice to its own.
        None when this stream cannot be one (HTTP/2: an extended CONNECT stream)."""
        return None


@trait
class ResponseSink:
    """What an upstream stream reports to the attempt it carries."""

    __slots__ = ()

    def response_informational(self, head: ResponseHead) -> None: ...

    def response_head(self, head: ResponseHead) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_end(self, trailers: Headers | None) -> None: ...

    def response_flush(self) -> None:
        """The end of one read from the endpoint: what it delivered may be written out."""

    def upstream_lost(self, mid_response: bool) -> None:
        """The connection closed or reset before the response ended."""

    def upstream_failed(self, reason: str) -> None:
        """The endpoint sent bytes that are not HTTP."""

    def upstream_refused(self) -> None:
        """The endpoint did not process the request (HTTP/2 REFUSED_STREAM, or a stream
        above a GOAWAY's last stream ID): it may be sent again, whatever its method."""

    def pause_request(self) -> None:
        """The endpoint is not reading the request body fast enough."""

    def resume_request(self) -> None: ...


@trait
class ConnectFailure:
    """Why a pool could not lend a stream: the error the client will see, if any."""

    __slots__ = ()

    code: str  # connect-refused, connect-timeout, connect-failed, local-exhaustion
    detail: str


@trait
class LeaseWaiter(ResponseSink):
    """What a pool lends a stream to (and the stream then reports to)."""

    __slots__ = ()

    def wants_lease(self) -> bool:
        """False once the waiter is over (its try timed out, was retried, its client left):
        a connection made for it is then kept idle for the next request."""
        raise NotImplementedError

    def leased(self, stream: UpstreamStream) -> None: ...

    def lease_failed(self, failure: ConnectFailure) -> None: ...
