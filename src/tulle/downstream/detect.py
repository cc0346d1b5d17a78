"""The first protocol of every accepted connection: which protocol it speaks, then hand-off.

A listener's connections start here. `ProtocolDetector` reads the client's first bytes,
asks `tulle.transport.detect` what they are, and hands the transport to the protocol
object that speaks it (``transport.set_protocol``), replaying the bytes read so far. It
runs once per connection: after the hand-off the transport calls the new protocol
directly, so detection costs nothing per read, and an HTTP/1 keep-alive connection's
requests never pass through here.

Where each answer goes:

- **HTTP/1** → `tulle.downstream.h1.ClientConnection`.
- **HTTP/2 preface** → `tulle.downstream.h2.H2ClientConnection`, which takes over the
  transport with the bytes so far, preface included.
- **TLS ClientHello** → when this proxy has an identity, `tulle.downstream.tls`: a
  ClientHello naming this proxy (a meshed proxy calling) is terminated there and its
  plaintext served by what ALPN names (HTTP/2, HTTP/1.1, or opaque TCP). Any other TLS —
  one the app made itself (``https://`` through iptables capture) — is passed on as
  opaque TCP where there is a destination for it, and refused with a TLS
  ``handshake_failure`` alert where there is none. On an opaque port, a proxy with an
  identity still looks for a ClientHello (meshed clients speak first, in TLS); anything
  else, or nothing within ``detect_timeout``, is opaque TCP.
- **Opaque** → `tulle.tcp` (a session balanced over the destination's endpoints) when
  the connection has a destination (`tulle.tcp.TcpProxy.destination`); otherwise it can
  only be HTTP, and the HTTP/1 side answers it (400 for bytes that are not HTTP).

Waiting: a client that says nothing gets ``detect_timeout`` (default 1 s; Linkerd waits
10 s) before its connection is taken as opaque TCP, so a server that speaks first (SMTP,
MySQL) is reached after that delay. Ports listed as opaque and services declared
``protocol: tcp`` skip detection and the wait altogether.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, cast

from tulle.downstream.h1 import ClientConnection
from tulle.downstream.tls import MeshTlsAcceptor
from tulle.transport.detect import HTTP2, NEED_MORE, OPAQUE, TLS, detect
from tulle.transport.original_dst import redirected_destination
from tulle.transport.timers import HasDeadline

if TYPE_CHECKING:
    import asyncio

    from tulle.downstream.listener import ListenerContext
    from tulle.proxy.targets import ServiceTarget

log: Final = logging.getLogger("tulle.proxy")

# RFC 8446 §6: a fatal (2) handshake_failure (40) alert in a TLS 1.2-versioned record.
TLS_REFUSAL: Final = b"\x15\x03\x03\x00\x02\x02\x28"


class ProtocolDetector(HasDeadline):
    """An asyncio protocol for a connection's first bytes (see the module note)."""

    __slots__ = ("_buffer", "_done", "_opaque_port", "ctx", "original_dst",
                 "peer_ip", "target",
                 "transport")

    def __init__(self, ctx: ListenerContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.original_dst: tuple[str, int] | None = None
        self.target: ServiceTarget | None = None  # where opaque bytes would go
        self.peer_ip = b"unknown"
        self.deadline = 0.0
        self.wheel_slot = 0
        self._buffer = b""
        self._done = False
        self._opaque_port = False  # an opaque port with mesh TLS: TLS or opaque TCP

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ctx = self.ctx
        budget = ctx.budget
        if budget is not None and budget.full():
            self._done = True
            ctx.tcp.local_exhaustion += 1
            if budget.log.allow(ctx.runtime.clock()):
                log.error("%s: refusing client connections: %d are open, as many as the "
                          "open-files limit leaves room for (raise `ulimit -n`)",
                          ctx.direction, budget.limit)
            cast("asyncio.Transport", transport).abort()
            return
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = str(peer[0]).encode("ascii")
        if ctx.transparent:
            self.original_dst = redirected_destination(transport.get_extra_info("socket"))
        opaque = ctx.opaque
        if opaque is not None:
            self.target = target = opaque.destination(self.original_dst)
            if opaque.is_opaque(self.original_dst, target):
                if ctx.tls is None:
                    self._hand_off(OPAQUE, b"")  # the server may speak first: no waiting
                    return
                # A meshed proxy's mTLS may come: look for a ClientHello, and take
                # anything else (or silence, after the wait) as opaque TCP.
                self._opaque_port = True
        ctx.connections.add(self)
        ctx.runtime.wheel.arm(self, ctx.detect_timeout)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        buffer = self._buffer + data if self._buffer else data
        kind = detect(buffer)
        if kind == NEED_MORE:
            self._buffer = buffer
        else:
            self._hand_off(kind, buffer)

    def eof_received(self) -> bool:
        """The client shut its side before we knew: decide on what it sent."""
        if self._done:
            return False
        protocol = self._hand_off(detect(self._buffer, final=True), self._buffer)
        return bool(protocol is not None and protocol.eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done:
            return
        self._done = True
        self._leave()
        tcp = self.ctx.tcp
        tcp.opened += 1  # a connection that came and went before it said anything
        tcp.closed += 1

    def pause_writing(self) -> None:
        """Nothing is written before the hand-off but a refusal."""

    def resume_writing(self) -> None: ...

    # -- the wait (the timer wheel) --

    def expired(self) -> None:
        """The client said nothing (or not enough) in time: decide on what it sent."""
        if not self._done:
            self._hand_off(detect(self._buffer, final=True), self._buffer)

    # -- draining --

    def close_if_idle(self) -> None:
        if not self._done and self.transport is not None:
            self._done = True
            self._leave()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- the hand-off --

    def _hand_off(self, kind: int, data: bytes) -> asyncio.Protocol | None:
        """Give the transport to the protocol that speaks ``kind``; None if it was refused."""
        self._done = True
        self._buffer = b""
        self._leave()
        transport = self.transport
        assert transport is not None
        ctx = self.ctx
        target = self.target
        if self._opaque_port and kind != TLS:
            kind = OPAQUE
        if kind == TLS and ctx.tls is not None:
            # Mesh TLS naming this proxy is terminated (tulle.downstream.tls); any other
            # TLS comes back here, to be passed on or refused as below.
            MeshTlsAcceptor(ctx, self._tls_not_ours, target).take_over(transport, data)
            return None
        return self._not_mesh_tls(kind, transport, data)

    def _tls_not_ours(self, transport: asyncio.Transport, data: bytes) -> None:
        self._not_mesh_tls(TLS, transport, data)

    def _not_mesh_tls(self, kind: int, transport: asyncio.Transport,
                      data: bytes) -> asyncio.Protocol | None:
        ctx = self.ctx
        target = self.target
        if kind == HTTP2:
            ctx.tcp.read_bytes += len(data)  # what take_over replays is not counted again
            from tulle.downstream.h2 import H2ClientConnection  # h2: loaded on first use

            h2 = H2ClientConnection(ctx)
            h2.take_over(transport, data, counted=False)
            return cast("asyncio.Protocol", h2)
        if kind == TLS and target is None:
            # mTLS termination (the identity issue) goes here; for now nothing here can
            # read TLS, and there is nowhere to pass it on to.
            log.debug("TLS ClientHello on the %s listener, with no destination: refused",
                      ctx.direction)
            self._refuse(transport, TLS_REFUSAL)
            return None
        if kind in (OPAQUE, TLS) and target is not None and ctx.opaque is not None:
            ctx.opaque.start(transport, target, data, self.peer_ip)
            return None
        # A plain class, not asyncio.Protocol: asyncio and uvloop call protocols by name.
        return _replay(transport, cast("asyncio.Protocol", ClientConnection(ctx)), data)

    def _refuse(self, transport: asyncio.Transport, answer: bytes) -> None:
        tcp = self.ctx.tcp
        tcp.opened += 1
        tcp.closed += 1
        tcp.write_bytes += len(answer)
        transport.write(answer)
        transport.close()

    def _leave(self) -> None:
        ctx = self.ctx
        ctx.connections.discard(self)
        if self.wheel_slot:
            ctx.runtime.wheel.disarm(self)


def _replay(transport: asyncio.Transport, protocol: asyncio.Protocol,
            data: bytes) -> asyncio.Protocol:
    """Make ``protocol`` the connection's, as if it had been from the start."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if data:
        protocol.data_received(data)
    return protocol
