"""Mesh TLS on a listener: a ClientHello for this proxy's identity is terminated here.

Protocol detection (`tulle.downstream.detect`) hands over a connection whose first
bytes are a TLS ClientHello. `MeshTlsAcceptor` reads the rest of the ClientHello (it
may span several reads) and looks at the server name it asks for
(`tulle.transport.client_hello`):

- **this proxy's identity** (its DNS form: a meshed proxy calling) — the handshake
  runs here (`tulle.transport.tls.terminate`): TLS 1.3, the client's certificate
  required and verified against the trust anchors. The plaintext goes to the HTTP
  side the ALPN protocol names (``h2`` → HTTP/2, else HTTP/1.1, which still hands a
  prior-knowledge preface to HTTP/2; ``tulle.opaque/1`` → opaque TCP to where the
  connection was going), and each request or connection carries the client's identity
  (``ClientStream.peer_identity``) to policy, metrics and tap.
- **anything else** (the application's own TLS, or no SNI) — handed back to
  detection's ``pass_on``, which proxies it as opaque TCP where it has a destination
  and refuses it where it has none; it is never decrypted.

A client that does not finish its ClientHello and then its handshake within
``head_timeout`` each, sends one larger than ``MAX_CLIENT_HELLO`` or fails the
handshake is disconnected and counted (``tulle_tls_handshakes_total{result}``); nothing
of it is kept.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from tulle.downstream.h1 import ClientConnection
from tulle.transport.client_hello import NEED_MORE, server_name
from tulle.transport.timers import HasDeadline
from tulle.transport.tls import ALPN_H2, ALPN_OPAQUE, terminate
from tulle.transport.tls_stream import TlsStream

if TYPE_CHECKING:
    from tulle.downstream.listener import ListenerContext
    from tulle.proxy.targets import ServiceTarget

log = logging.getLogger("tulle.tls")

PassOn = Callable[[asyncio.Transport, bytes], None]


def peer_ip(transport: asyncio.BaseTransport) -> bytes:
    peer = transport.get_extra_info("peername")
    return str(peer[0]).encode("ascii") if peer else b"unknown"


class MeshTlsAcceptor(HasDeadline):
    """An asyncio protocol for the rest of a ClientHello (see the module note)."""

    __slots__ = ("_buffer", "_done", "_pass_on", "ctx", "handshaking",
                 "opaque_target", "transport")

    def __init__(self, ctx: ListenerContext, pass_on: PassOn,
                 opaque_target: ServiceTarget | None = None) -> None:
        self.ctx = ctx
        self._pass_on = pass_on
        self.opaque_target = opaque_target  # where opaque TCP inside the TLS goes
        self.transport: asyncio.Transport | None = None
        self.deadline = 0.0
        self.wheel_slot = 0
        self._buffer = b""
        self._done = False  # the ClientHello was read (or the connection given up)
        self.handshaking = False  # terminated here: the handshake runs, on the deadline

    def take_over(self, transport: asyncio.Transport, received: bytes) -> None:
        """Continue a connection detection accepted; ``received`` is what it read."""
        self.transport = transport
        transport.set_protocol(self)  # type: ignore[arg-type]
        self.ctx.runtime.wheel.arm(self, self.ctx.head_timeout)
        self.data_received(received)

    # -- asyncio.Protocol --

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        self._buffer += data
        name = server_name(self._buffer)
        if name == NEED_MORE:
            return
        self._decided()
        assert self.transport is not None
        tls = self.ctx.tls
        if tls is not None and name == tls.credentials.identity.dns_name:
            self._terminate(self.transport, tls.server)
        else:
            self.ctx.tls_stats.passed_on += 1
            self._pass_on(self.transport, self._buffer)

    def eof_received(self) -> bool:
        self._fail("the client closed before its ClientHello ended")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done:
            self._decided()
            self.ctx.tls_stats.failed += 1

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...

    def expired(self) -> None:
        """The timer wheel: the ClientHello, or then the handshake, did not end in time."""
        if self.handshaking:
            self.handshaking = False
            if self.transport is not None:
                self.transport.abort()  # the stream hears it is lost: counted as failed
            return
        self._fail("no complete ClientHello in time")

    # -- internals --

    def _decided(self) -> None:
        self._done = True
        if self.wheel_slot:
            self.ctx.runtime.wheel.disarm(self)

    def _fail(self, reason: str) -> None:
        if self._done:
            return
        self._decided()
        self.ctx.tls_stats.failed += 1
        log.debug("TLS on the %s listener dropped: %s", self.ctx.direction, reason)
        if self.transport is not None:
            self.transport.abort()

    def _terminate(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        ctx = self.ctx
        stats = ctx.tls_stats
        opaque_target = self.opaque_target
        self.handshaking = True
        ctx.runtime.wheel.arm(self, ctx.head_timeout)

        def secured(stream: TlsStream, identity: str | None, alpn: str | None) -> None:
            self._handshake_over()
            stats.terminated += 1
            if alpn == ALPN_OPAQUE:
                if ctx.opaque is None or opaque_target is None:
                    stream.abort()  # opaque TCP to a listener that has nowhere to send it
                    return
                plain = cast("asyncio.Transport", stream)
                ctx.opaque.start(plain, opaque_target, b"", peer_ip(plain), identity=identity)
                stream.deliver()
            elif alpn == ALPN_H2:
                from tulle.downstream.h2 import H2ClientConnection  # h2: loaded on first use

                H2ClientConnection(ctx).take_over(cast("asyncio.Transport", stream), b"",
                                                  counted=False)
                stream.deliver()
            else:
                stream.attach(ClientConnection(ctx))

        def failed(exc: BaseException) -> None:
            self._handshake_over()
            stats.failed += 1
            log.debug("TLS handshake on the %s listener failed: %s", ctx.direction, exc)

        terminate(ctx.runtime.loop, transport, self._buffer, context, secured, failed)
        self._buffer = b""

    def _handshake_over(self) -> None:
        self.handshaking = False
        if self.wheel_slot:
            self.ctx.runtime.wheel.disarm(self)
