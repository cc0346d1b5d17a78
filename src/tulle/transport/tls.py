"""TLS between meshed proxies: contexts made from the proxy's credentials, the server
side's termination of a connection already read from, and the peer's identity.

Every context is TLS 1.3 only (RFC 8446: one round trip, forward secrecy, no
renegotiation) and verifies the peer against the mesh's trust anchors: a server
context requires a client certificate (mutual TLS), a client context checks that the
server's certificate names the identity the destination said to expect (its DNS form,
checked by OpenSSL during the handshake; `tulle.identity.spiffe`). ALPN offers ``h2``
and ``http/1.1``; each client context offers the one protocol its pool speaks.

`MeshTls` holds the current contexts. A renewed certificate makes new ones
(`MeshTls.update`); connections open on the old ones carry on untouched, new
connections use the new ones, so a rotation drops nothing.

Termination (`terminate`): the inbound listener has already read the ClientHello to
decide what the connection is, so the loop's own TLS protocol (uvloop's, in C; or
asyncio's) is put under the transport by hand, fed the bytes read so far, and runs the
handshake; once it completes, ``on_secured`` gets the plaintext transport, the peer's
identity and the negotiated ALPN protocol. A handshake that fails or takes longer
than the timeout closes the connection and is counted; nothing of it stays behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from tulle.identity.credentials import Credentials

log = logging.getLogger("tulle.tls")

ALPN_H2: Final = "h2"
ALPN_HTTP1: Final = "http/1.1"
# Opaque TCP between meshed proxies (Tulle's own ALPN protocol ID): the inbound side
# passes the plaintext on as TCP to the port the client dialled.
ALPN_OPAQUE: Final = "tulle.opaque/1"
# How long a client gets to finish its handshake (Linkerd's detect timeout is 10 s;
# a meshed proxy finishes in one round trip).
HANDSHAKE_TIMEOUT = 10.0


def _load_chain(context: ssl.SSLContext, credentials: Credentials) -> None:
    """Load the leaf, its chain and its key into ``context`` without writing them to disk:
    ``load_cert_chain`` reads only files, so they go through anonymous memory files."""
    files = []
    try:
        for name, data in (("cert", credentials.cert_pem + credentials.chain_pem),
                           ("key", credentials.key_pem)):
            fd = os.memfd_create(f"tulle-{name}", os.MFD_CLOEXEC)
            files.append(fd)
            os.write(fd, data)
        context.load_cert_chain(f"/proc/self/fd/{files[0]}", f"/proc/self/fd/{files[1]}")
    finally:
        for fd in files:
            os.close(fd)


def _context(purpose: int, credentials: Credentials) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=credentials.anchors_pem.decode("ascii"))
    _load_chain(context, credentials)
    return context


def server_context(credentials: Credentials) -> ssl.SSLContext:
    """What the inbound side terminates mesh TLS with: client certificates required."""
    context = _context(ssl.PROTOCOL_TLS_SERVER, credentials)
    context.set_alpn_protocols([ALPN_H2, ALPN_HTTP1, ALPN_OPAQUE])
    # No session tickets: the client side never resumes (each connection is pooled and
    # kept), so they would be bytes and work for nothing.
    context.num_tickets = 0
    return context


def client_context(credentials: Credentials, alpn: str) -> ssl.SSLContext:
    """What the outbound side connects to meshed endpoints with, offering ``alpn``."""
    context = _context(ssl.PROTOCOL_TLS_CLIENT, credentials)
    context.check_hostname = True  # against the expected identity's DNS form (SNI)
    context.set_alpn_protocols([alpn])
    return context


class MeshTls:
    """The proxy's current TLS contexts, replaced whenever its certificate is renewed."""

    __slots__ = ("clients", "credentials", "renewals", "server")

    def __init__(self, credentials: Credentials) -> None:
        self.renewals = -1
        self.update(credentials)

    def update(self, credentials: Credentials) -> None:
        """Use ``credentials`` for every connection from now on."""
        self.server = server_context(credentials)
        # One client context per protocol a pool speaks: ALPN is set per context.
        self.clients = {alpn: client_context(credentials, alpn)
                        for alpn in (ALPN_HTTP1, ALPN_H2, ALPN_OPAQUE)}
        self.credentials = credentials
        self.renewals += 1

    @property
    def identity(self) -> str:
        return self.credentials.identity.uri


def peer_identity(ssl_object: Any) -> str | None:
    """The SPIFFE ID (URI SAN) of the verified peer certificate, or None."""
    if ssl_object is None:
        return None
    certificate = ssl_object.getpeercert()
    if not certificate:
        return None
    for kind, value in certificate.get("subjectAltName", ()):
        if kind == "URI" and value.startswith("spiffe://"):
            return str(value)
    return None


# -- termination --

OnSecured = Callable[[asyncio.Transport, str | None, str | None], None]
OnFailed = Callable[[BaseException], None]


class _Handshaken:
    """The plaintext side of a terminated connection until the handshake completes: it
    reports the result and is then replaced by the protocol that speaks what was
    negotiated (``on_secured`` sets it)."""

    __slots__ = ("_on_secured",)

    def __init__(self, on_secured: OnSecured) -> None:
        self._on_secured = on_secured

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        self._on_secured(transport, peer_identity(ssl_object), alpn)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        """Nothing arrives before ``on_secured`` hands the transport on."""

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


def _ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's own TLS protocol: uvloop's (compiled) on a uvloop loop, else asyncio's."""
    try:
        import uvloop

        if isinstance(loop, uvloop.Loop):
            from uvloop.loop import SSLProtocol

            return SSLProtocol
    except ImportError:
        pass
    from asyncio.sslproto import SSLProtocol as AsyncioSSLProtocol

    return AsyncioSSLProtocol


def terminate(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, received: bytes,
              context: ssl.SSLContext, on_secured: OnSecured, on_failed: OnFailed,
              handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
    """Run the server side of a TLS handshake on ``transport``, whose first bytes
    (``received``, the ClientHello) were already read (see the module note)."""
    waiter = loop.create_future()
    protocol = _ssl_protocol_class(loop)(
        loop, _Handshaken(on_secured), context, waiter, server_side=True,
        ssl_handshake_timeout=handshake_timeout)

    def finished(future: asyncio.Future[None]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            on_failed(exc)

    waiter.add_done_callback(finished)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    while received:  # the TLS protocol reads into its own buffer, of a size it chooses
        view = protocol.get_buffer(len(received))
        size = min(len(view), len(received))
        view[:size] = received[:size]
        protocol.buffer_updated(size)
        received = received[size:]
