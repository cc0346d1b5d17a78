"""One proxied TCP connection: an endpoint picked once, connected, then spliced.

A `TcpSession` is what an opaque connection (or a CONNECT tunnel) becomes once its
target service is known. It takes the client's transport (reading paused, with the
bytes read so far), asks the service's balancer for an endpoint, as an HTTP request
would, and connects to it through the endpoint's pool, so the failover parts that
apply to a connection apply here:

- the service's connect timeout (``timeouts.connect``);
- unreachable endpoints: a connect that fails takes the address out of every balancer
  until it accepts connections again (`tulle.upstream.pool`);
- the circuit breaker: each connect is a try the breaker hears (a refused connect counts
  as Linkerd counts it), and a half-open breaker lets one connection through as its probe;
- a connect that fails is tried again on another endpoint, up to `MAX_CONNECT_TRIES` in
  all: nothing has been sent yet, so this is always safe.

The balancer hears each connect's latency and verdict (``on_response``), and the
endpoint counts the session as in flight for as long as it lasts, so least-request and
peak-EWMA see open connections as load. When no endpoint can be had, the client's
connection is reset: for a protocol Tulle does not understand, that is the only signal
there is (a CONNECT tunnel gets its HTTP answer instead).

Until the endpoint connects, the session itself is the client connection's protocol: it
holds what the client sends (reading is paused, so at most a read or two) and remembers
an early EOF; once connected, the connection is spliced and the session is out of the
way of every read.

Theory of operation::

    CONNECTING ──connected──▶ SPLICED ──both ends closed──▶ ENDED
        │ ▲ connect failed, tries left                        ▲
        └─┘                                                   │
        └──── nothing to connect to / client left ────────────┘
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from tulle.resilience.breaker import CLOSED
from tulle.tcp.splice import Splice, SpliceEnd

if TYPE_CHECKING:
    import asyncio

    from tulle.proxy.targets import Endpoint, ServiceTarget
    from tulle.telemetry.metrics import TcpStats
    from tulle.upstream.pool import ConnectFailure

# Connects per session: the first and two more on other endpoints. Enough to ride over
# an endpoint that just died (its failed connect takes it out of the balancer), few
# enough that a client is not kept waiting while a whole service is down.
MAX_CONNECT_TRIES: Final = 3

CONNECTING: Final = 0
SPLICED: Final = 1
ENDED: Final = 2

# What a session tells its owner when it could not connect: (errno-like code, detail).
Refusal = Callable[[str, str], None]


class _ConnectionView:
    """What a balancer may read of a connection (`tulle.balance.RequestView`): the
    client's address, and no headers (ring-hash hashes the address, or picks at random)."""

    __slots__ = ("client_ip",)

    def __init__(self, client_ip: bytes) -> None:
        self.client_ip = client_ip

    def header(self, name: bytes) -> bytes | None:
        return None


class TcpSession:
    """One client connection proxied to an endpoint of ``target`` (see the module note)."""

    __slots__ = ("_clock", "_greeting", "_pending", "_probe", "_refuse", "_sent_at",
                 "_upstream_stats", "_view", "endpoint", "on_end", "splice", "state",
                 "target", "tries")

    def __init__(
        self,
        target: ServiceTarget,
        client_stats: TcpStats,
        upstream_stats: TcpStats,
        clock: Callable[[], float],
        on_end: Callable[[TcpSession], None],
    ) -> None:
        self.target = target
        self._clock = clock
        self._upstream_stats = upstream_stats
        self.on_end = on_end
        self.splice = Splice(client_stats, upstream_stats, clock, self._spliced_end)
        self.state = CONNECTING
        self.endpoint: Endpoint | None = None
        self.tries = 0
        self._probe = False
        self._sent_at = 0.0
        self._pending = b""
        self._greeting = b""
        self._refuse: Refusal | None = None
        self._view = _ConnectionView(b"unknown")

    def start(
        self,
        transport: asyncio.Transport,
        pending: bytes,
        client_ip: bytes,
        *,
        counted: bool = False,
        greeting: bytes = b"",
        refuse: Refusal | None = None,
    ) -> None:
        """Take over ``transport`` (reading is paused until the endpoint connects) and
        connect. ``pending``: what the client sent already, for the endpoint;
        ``greeting``: what the client is sent once connected (a CONNECT's 200);
        ``refuse``: who answers the client when no connection can be made (default: the
        client's connection is reset). ``counted``: the client connection's open and the
        bytes read so far were counted already (it was accepted as HTTP)."""
        self._pending = pending
        self._greeting = greeting
        self._refuse = refuse
        self._view = _ConnectionView(client_ip)
        client = self.splice.client
        client.attach(transport, counted=counted)
        transport.set_protocol(self)  # type: ignore[arg-type]  # until connected
        if not counted:
            client.stats.read_bytes += len(pending)
        transport.pause_reading()
        self._try()

    # -- the client's connection while connecting (asyncio.Protocol) --

    def data_received(self, data: bytes) -> None:
        """A read that was under way as reading paused: held for the endpoint."""
        self.splice.client.stats.read_bytes += len(data)
        self._pending += data

    def eof_received(self) -> bool:
        self.splice.client.eof = True
        return True  # the endpoint's sending side is shut once connected

    def connection_lost(self, exc: Exception | None) -> None:
        self.splice.end_lost(self.splice.client, exc)

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...

    # -- connecting --

    def _try(self) -> None:
        target = self.target
        balancer = target.balancer
        endpoint = balancer.pick(self._view)
        if endpoint is not None and self.tries and endpoint is self.endpoint:
            endpoint = balancer.pick(self._view) or endpoint  # a retry prefers another
        if endpoint is None:
            code = "no-endpoints" if not target.endpoints else "unavailable"
            self._fail(code, f"no endpoint of {target.key} is available")
            return
        self.endpoint = endpoint
        endpoint.in_flight += 1
        breaker = endpoint.breaker
        self._probe = breaker is not None and breaker.state != CLOSED and breaker.on_dispatch()
        upstream = self.splice.upstream
        if upstream.transport is not None or upstream.lost:
            # The previous try's protocol connected after it was given up on: start clean.
            upstream = self.splice.upstream = SpliceEnd(self.splice, self._upstream_stats)
            upstream.peer = self.splice.client
            self.splice.client.peer = upstream
        self._sent_at = self._clock()
        endpoint.pool.open_raw(upstream, lambda failure: self._connected(
            endpoint, upstream, failure))

    def _connected(self, endpoint: Endpoint, upstream: SpliceEnd,
                   failure: ConnectFailure | None) -> None:
        ok = failure is None
        self.target.balancer.on_response(endpoint, self._clock() - self._sent_at, ok)
        breaker = endpoint.breaker
        if breaker is not None:
            breaker.record(ok, self._probe,
                           refused=failure is not None and failure.code == "connect-refused")
        self._probe = False
        if self.state != CONNECTING or upstream is not self.splice.upstream:
            # The client left while connecting: nobody wants this connection.
            endpoint.in_flight -= 1
            if upstream.transport is not None:
                upstream.transport.abort()
            return
        if failure is not None:
            endpoint.in_flight -= 1
            self.tries += 1
            if self.tries < MAX_CONNECT_TRIES:
                self._try()
            else:
                self._fail(failure.code, failure.detail)
            return
        self.state = SPLICED
        client = self.splice.client
        assert client.transport is not None and upstream.transport is not None
        client.transport.set_protocol(client)  # type: ignore[arg-type]
        if self._greeting:
            client.stats.write_bytes += len(self._greeting)
            client.transport.write(self._greeting)
        if self._pending:
            upstream.stats.write_bytes += len(self._pending)
            upstream.transport.write(self._pending)
            self._pending = b""
        if client.eof:  # the client shut its side while we were connecting
            upstream.transport.write_eof()
        else:
            client.transport.resume_reading()

    def _fail(self, code: str, detail: str) -> None:
        """No connection can be made: tell the client, and end."""
        self.endpoint = None
        refuse = self._refuse
        client = self.splice.client
        if refuse is not None and not client.lost:
            refuse(code, detail)
        else:
            client.close(_ERRNO_OF.get(code, "ECONNREFUSED"))
        if self.state == CONNECTING and client.lost:
            self._end()

    # -- ending --

    def _spliced_end(self, splice: Splice) -> None:
        self._end()

    def _end(self) -> None:
        if self.state == ENDED:
            return
        was_connected = self.state == SPLICED
        self.state = ENDED
        endpoint = self.endpoint
        if endpoint is not None and was_connected:
            endpoint.in_flight -= 1
        self.on_end(self)

    def close_if_idle(self) -> None:
        """The proxy is draining: a TCP session is never known to be idle; it ends when
        its peers end it, or when the grace period runs out."""

    def abort(self) -> None:
        self.splice.abort()


# How a failed session's client close is counted (Linkerd's errno label).
_ERRNO_OF = {
    "connect-refused": "ECONNREFUSED",
    "connect-timeout": "ETIMEDOUT",
    "connect-failed": "EHOSTUNREACH",
    "local-exhaustion": "EMFILE",
    "no-endpoints": "ECONNREFUSED",
    "unavailable": "ECONNREFUSED",
}
