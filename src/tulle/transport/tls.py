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

Both ends run over `tulle.transport.tls_stream.TlsStream` (memory BIOs; a fifth of
the cost of the loop's own TLS protocol per request). The server end (`terminate`)
starts on a connection whose ClientHello was already read, to decide what the
connection is; the client end (`connect`) is ``loop.create_connection`` that returns
once the handshake has succeeded, so a certificate that does not verify fails the
connect, as a refusal would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from tulle.transport.tls_stream import TlsStream

if TYPE_CHECKING:
    from tulle.identity.credentials import Credentials

log = logging.getLogger("tulle.tls")

ALPN_H2: Final = "h2"
ALPN_HTTP1: Final = "http/1.1"
# Opaque TCP between meshed proxies (Tulle's own ALPN protocol ID): the inbound side
# passes the plaintext on as TCP to the port the client dialled.
ALPN_OPAQUE: Final = "tulle.opaque/1"


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


# -- both ends of a mesh TLS connection --

OnSecured = Callable[[TlsStream, "str | None", "str | None"], None]
OnFailed = Callable[[BaseException], None]


def terminate(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, received: bytes,
              context: ssl.SSLContext, on_secured: OnSecured, on_failed: OnFailed) -> TlsStream:
    """Run the server side of a TLS handshake on ``transport``, whose first bytes
    (``received``, the ClientHello) were already read: ``on_secured`` gets the stream,
    the client's identity and the ALPN protocol, and attaches what speaks over it."""

    def secured(stream: TlsStream) -> None:
        tls = stream.ssl_object
        on_secured(stream, peer_identity(tls), tls.selected_alpn_protocol())

    stream = TlsStream(loop, context, True, None, secured, on_failed)
    transport.set_protocol(stream)  # type: ignore[arg-type]
    stream.connection_made(transport)
    if received:
        stream.data_received(received)
    return stream


async def connect(loop: asyncio.AbstractEventLoop, factory: Callable[[], Any], host: str,
                  port: int, context: ssl.SSLContext, server_name: str
                  ) -> tuple[TlsStream, Any]:
    """Connect to a meshed proxy, handshake (its certificate must name ``server_name``),
    then give the connection to a protocol from ``factory``: (stream, protocol), as
    ``loop.create_connection`` answers. A failed handshake raises its ``SSLError``."""
    secured: asyncio.Future[None] = loop.create_future()

    def done(stream: TlsStream) -> None:
        if not secured.done():
            secured.set_result(None)

    def failed(exc: BaseException) -> None:
        if not secured.done():
            secured.set_exception(exc)

    raw, stream = await loop.create_connection(
        lambda: TlsStream(loop, context, False, server_name, done, failed), host, port)
    try:
        await secured
    except BaseException:
        raw.abort()
        raise
    protocol = factory()
    stream.attach(protocol)
    return stream, protocol
