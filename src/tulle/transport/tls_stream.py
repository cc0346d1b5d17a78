"""TLS over a connection, as a thin protocol-and-transport pair on OpenSSL's memory BIOs.

`TlsStream` sits between a raw transport and the protocol that speaks HTTP (or opaque
TCP) over it: to the raw transport it is the protocol (``data_received`` feeds the
ciphertext in), to the HTTP side it is the transport (``write`` encrypts and sends). It
is what asyncio's and uvloop's ``SSLProtocol`` are, minus what the proxy never uses
(renegotiation, a state machine of shutdown timeouts, buffered-protocol plumbing):
measured on loopback, a 200-byte request and answer over it cost about a fifth of
what they cost over uvloop's (bench/results/mtls.md). Reads ask OpenSSL for plaintext
only while it may have some (bytes left in the incoming BIO, or decrypted and pending),
so a read does not end in a raised ``SSLWantReadError`` every time.

Theory of operation::

    HANDSHAKING --handshake done--> OPEN --close/abort/lost--> CLOSED
         └───────── failure / lost ──────────────────────────────┘

While HANDSHAKING, bytes in go to ``do_handshake`` and its output goes out; once it
completes, ``on_secured`` hears of it (and attaches the protocol that speaks over it,
``set_protocol``), and any application data that arrived with the last handshake
message is decrypted and delivered. A failed handshake (a certificate that does not
verify, garbage, the peer gone) calls ``on_failed`` once and aborts the connection.

Flow control: the HTTP side's ``pause_reading`` pauses the raw transport, and what is
already decrypted stays in OpenSSL until ``resume_reading`` (delivered then, from the
loop); the raw transport's ``pause_writing``/``resume_writing`` are passed to the HTTP
side as they are, since every write goes straight through. ``write_eof`` sends TLS's
close_notify and then the TCP half-close; a close_notify received is the peer's EOF.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, Final

# Plaintext read per call: OpenSSL returns at most one record (16 KiB) each time.
READ_SIZE: Final = 65536

HANDSHAKING: Final = 0
OPEN: Final = 1
CLOSED: Final = 2

OnSecured = Callable[["TlsStream"], None]
OnFailed = Callable[[BaseException], None]


class TlsStream:
    """TLS on one connection (see the module note): a protocol below, a transport above."""

    __slots__ = ("_incoming", "_on_failed", "_on_secured", "_outgoing", "_read_paused",
                 "_resume_scheduled", "app", "loop", "raw", "ssl_object", "state")

    def __init__(self, loop: asyncio.AbstractEventLoop, context: ssl.SSLContext,
                 server_side: bool, server_hostname: str | None, on_secured: OnSecured,
                 on_failed: OnFailed) -> None:
        self.loop = loop
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing,
                                           server_side=server_side,
                                           server_hostname=server_hostname)
        self._on_secured = on_secured
        self._on_failed = on_failed
        self.raw: asyncio.Transport | None = None
        self.app: Any = None  # the protocol speaking over this stream (once secured)
        self.state = HANDSHAKING
        self._read_paused = False
        self._resume_scheduled = False

    # -- the raw side: an asyncio protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        self._handshake()  # a client sends its ClientHello; a server waits for one

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if self.state == HANDSHAKING:
            self._handshake()
        if self.state == OPEN and self.app is not None and not self._read_paused:
            self._deliver()

    def eof_received(self) -> bool:
        app = self.app
        if self.state == OPEN and app is not None:
            return bool(app.eof_received())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        self.state = CLOSED
        if state == HANDSHAKING:
            self._on_failed(exc or ConnectionResetError("closed during the TLS handshake"))
        elif state == OPEN and self.app is not None:
            self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # -- the handshake and the reads --

    def _handshake(self) -> None:
        try:
            self.ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._fail(exc)
            return
        self._flush()
        self.state = OPEN
        self._on_secured(self)

    def attach(self, protocol: Any) -> None:
        """``protocol`` speaks over this stream from now on (after ``on_secured``)."""
        self.app = protocol
        protocol.connection_made(self)
        self.deliver()

    def deliver(self) -> None:
        """Hand the HTTP side what arrived before it was attached (or while paused)."""
        if self.state == OPEN and self.app is not None and not self._read_paused:
            self._deliver()

    def _deliver(self) -> None:
        """Hand the HTTP side the plaintext OpenSSL can give now."""
        incoming = self._incoming
        tls = self.ssl_object
        while self.state == OPEN and not self._read_paused and (
                incoming.pending or tls.pending()):
            try:
                data = tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break  # the rest of a record has not arrived yet
            except ssl.SSLZeroReturnError:
                self._peer_closed()
                return
            except (ssl.SSLError, OSError) as exc:
                self._abort_with(exc)
                return
            if not data:
                break
            self.app.data_received(data)
        if self._outgoing.pending:  # a key update or an alert to answer
            self._flush()

    def _peer_closed(self) -> None:
        """The peer's close_notify: its end of the stream, as a TCP FIN would be."""
        app = self.app
        if app is not None and not app.eof_received() and self.raw is not None:
            self.raw.close()

    def _fail(self, exc: BaseException) -> None:
        self.state = CLOSED
        self._flush()  # the alert saying why, if OpenSSL made one
        if self.raw is not None:
            self.raw.abort()
        self._on_failed(exc)

    def _abort_with(self, exc: BaseException) -> None:
        if self.raw is not None:
            self.raw.abort()  # connection_lost tells the HTTP side

    def _flush(self) -> None:
        outgoing = self._outgoing
        if outgoing.pending and self.raw is not None:
            self.raw.write(outgoing.read())

    # -- the HTTP side's transport --

    def set_protocol(self, protocol: Any) -> None:
        self.app = protocol

    def get_protocol(self) -> Any:
        return self.app

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.state != OPEN or self.raw is None:
            return
        try:
            self.ssl_object.write(data)
        except (ssl.SSLError, OSError) as exc:
            self._abort_with(exc)
            return
        self.raw.write(self._outgoing.read())

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """close_notify, then the TCP half-close: the peer reads an end, and may answer."""
        if self.state != OPEN or self.raw is None:
            return
        try:
            self.ssl_object.unwrap()
        except ssl.SSLWantReadError:
            pass  # the peer's close_notify is not waited for
        except (ssl.SSLError, OSError):
            pass
        self._flush()
        if self.raw.can_write_eof():
            self.raw.write_eof()

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()  # what is written already goes out first

    def abort(self) -> None:
        if self.raw is not None:
            self.raw.abort()

    def is_closing(self) -> bool:
        return self.raw is None or self.raw.is_closing()

    def pause_reading(self) -> None:
        self._read_paused = True
        if self.raw is not None:
            self.raw.pause_reading()

    def resume_reading(self) -> None:
        if not self._read_paused:
            return
        self._read_paused = False
        if self.raw is not None:
            self.raw.resume_reading()
        if not self._resume_scheduled and (self._incoming.pending or self.ssl_object.pending()):
            # What arrived while paused is delivered from the loop, as a read would be.
            self._resume_scheduled = True
            self.loop.call_soon(self._resumed)

    def _resumed(self) -> None:
        self._resume_scheduled = False
        self.deliver()

    def is_reading(self) -> bool:
        return not self._read_paused

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self.raw is not None:
            self.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size() if self.raw is not None else 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.ssl_object
        if name == "peercert":
            return self.ssl_object.getpeercert()
        if name == "cipher":
            return self.ssl_object.cipher()
        if name == "sslcontext":
            return self.ssl_object.context
        return self.raw.get_extra_info(name, default) if self.raw is not None else default
