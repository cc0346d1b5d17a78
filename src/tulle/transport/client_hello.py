"""The server name a TLS ClientHello asks for (SNI), read from the first bytes (sans-I/O).

The inbound listener terminates TLS only when the client asks for this proxy's own
identity (`tulle.identity.spiffe`, the DNS form): that is a meshed proxy calling.
Any other TLS — the application's own HTTPS, reached through iptables capture — is
passed through to the application untouched, as Linkerd does
(linkerd2-proxy's ``linkerd/tls/src/server/client_hello.rs`` makes the same choice).

`server_name` is a pure function of the bytes read so far. It reassembles the
handshake message from as many TLS records as it spans (RFC 8446 §5.1 allows a
ClientHello to be fragmented), walks the ClientHello (§4.1.2) to its extensions, and
returns the ``host_name`` of the ``server_name`` extension (RFC 6066 §3). It answers
`NEED_MORE` until the whole ClientHello is there, `NO_NAME` when it has no SNI, and
`MALFORMED` for bytes that are not a well-formed ClientHello or one larger than
`MAX_CLIENT_HELLO` — never an exception, whatever the bytes.
"""

from __future__ import annotations

from typing import Final

NEED_MORE: Final = 0
NO_NAME: Final = 1
MALFORMED: Final = 2
# A ClientHello is a few hundred bytes (post-quantum key shares make it about 1.5 KB);
# past this the client is not a proxy of this mesh, and we stop reading.
MAX_CLIENT_HELLO: Final = 16 * 1024

_HANDSHAKE: Final = 0x16
_CLIENT_HELLO: Final = 0x01
_SERVER_NAME: Final = 0x0000
_HOST_NAME: Final = 0x00


def server_name(data: bytes) -> str | int:
    """The SNI host name (lower-case), or `NEED_MORE`, `NO_NAME` or `MALFORMED`."""
    handshake = bytearray()
    offset = 0
    while True:
        if len(data) - offset < 5:
            return NEED_MORE
        if data[offset] != _HANDSHAKE or data[offset + 1] != 0x03:
            return MALFORMED
        length = int.from_bytes(data[offset + 3:offset + 5], "big")
        if length == 0:
            return MALFORMED
        if len(data) - offset - 5 < length:
            return NEED_MORE
        handshake += data[offset + 5:offset + 5 + length]
        offset += 5 + length
        if len(handshake) >= 4:
            if handshake[0] != _CLIENT_HELLO:
                return MALFORMED
            message_length = int.from_bytes(handshake[1:4], "big")
            if message_length > MAX_CLIENT_HELLO:
                return MALFORMED
            if len(handshake) >= 4 + message_length:
                return _client_hello(bytes(handshake[4:4 + message_length]))
        if len(handshake) > MAX_CLIENT_HELLO:
            return MALFORMED


def _client_hello(body: bytes) -> str | int:
    """legacy_version(2) random(32) session_id<1> cipher_suites<2> compression<1>
    extensions<2>."""
    at = 34
    for width in (1, 2, 1):
        if at + width > len(body):
            return MALFORMED
        at += width + int.from_bytes(body[at:at + width], "big")
    if at == len(body):
        return NO_NAME  # no extensions at all
    if at + 2 > len(body):
        return MALFORMED
    end = at + 2 + int.from_bytes(body[at:at + 2], "big")
    if end > len(body):
        return MALFORMED
    at += 2
    while at + 4 <= end:
        kind = int.from_bytes(body[at:at + 2], "big")
        size = int.from_bytes(body[at + 2:at + 4], "big")
        at += 4
        if at + size > end:
            return MALFORMED
        if kind == _SERVER_NAME:
            return _host_name(body[at:at + size])
        at += size
    return NO_NAME if at == end else MALFORMED


def _host_name(extension: bytes) -> str | int:
    """server_name_list<2>: name_type(1) HostName<2>; the first host_name counts."""
    if len(extension) < 2 or int.from_bytes(extension[:2], "big") != len(extension) - 2:
        return MALFORMED
    at = 2
    while at + 3 <= len(extension):
        kind = extension[at]
        size = int.from_bytes(extension[at + 1:at + 3], "big")
        name = extension[at + 3:at + 3 + size]
        if len(name) != size:
            return MALFORMED
        if kind == _HOST_NAME:
            try:
                return name.decode("ascii").lower()
            except UnicodeDecodeError:
                return MALFORMED
        at += 3 + size
    return MALFORMED
