"""Sans-I/O HTTP/1.1 parser over httptools (llhttp).

Bytes go in through ``feed``; the parsed message comes out as calls on a handler
object (``on_head``, ``on_body``, ``on_end``), the push-style equivalent of
h11's events that costs no allocation per event. Nothing here touches a socket
or an event loop, so the codec is tested and fuzzed without a network.

Theory of operation: llhttp already refuses the request-smuggling shapes
(Content-Length together with Transfer-Encoding, two Content-Length headers, a
Transfer-Encoding that does not end in ``chunked``), bare LF line ends and
invalid tokens. This module adds what llhttp leaves to its embedder: a cap on
the size of a message head (431), a missing Host on HTTP/1.1 (400), trailers told
apart from headers, the "no body" rule for responses to HEAD, and the end of a
read-until-close response body at EOF.
"""

from __future__ import annotations

from typing import Protocol

import httptools

from tulle.http.errors import RemoteProtocolError
from tulle.http.message import Headers, RequestHead, ResponseHead

# Same order of magnitude as nginx's large_client_header_buffers (4 x 8k) and
# Envoy's max_request_headers_kb (60 KiB): generous for real clients, small
# enough that a slow or hostile one cannot make us hold much.
MAX_HEAD_BYTES = 64 * 1024


class MessageHandler(Protocol):
    """What a parser calls as a message goes by."""

    def on_head(self, head: RequestHead | ResponseHead) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_end(self, trailers: Headers | None) -> None: ...


class _Parser:
    """Shared state of the request and response parsers.

    The head-size cap counts two ways, because llhttp reports no offsets: the
    bytes of the request line and headers as their callbacks deliver them, and
    every byte of a read that arrives while a head begun earlier is still
    incomplete (which catches one enormous header line sent slowly, before any
    callback could count it).
    """

    __slots__ = (
        "_began",
        "_handler",
        "_head",
        "_head_bytes",
        "_in_body",
        "_parser",
        "_raw_head_bytes",
        "_too_large",
        "_trailers",
    )

    def __init__(self, handler: MessageHandler, too_large: int) -> None:
        self._handler = handler
        self._head: RequestHead | ResponseHead | None = None
        self._head_bytes = 0
        self._raw_head_bytes = 0
        self._began = False
        self._in_body = False
        self._trailers: Headers | None = None
        self._too_large = too_large  # the status for a head over the cap

    # Per direction: how bytes llhttp rejects are described, and the status they
    # earn (a client's: 400; an upstream's: 502).
    _MALFORMED = "malformed message"
    _UPGRADE = "protocol upgrades are not supported"
    _BAD_STATUS = 400

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raise RemoteProtocolError on bytes HTTP forbids."""
        try:
            self._feed(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, RemoteProtocolError):
                raise cause from None
            raise
        except httptools.HttpParserUpgrade:
            raise RemoteProtocolError(self._UPGRADE, self._BAD_STATUS) from None
        except httptools.HttpParserError as exc:
            reason = str(exc) or type(exc).__name__
            raise RemoteProtocolError(f"{self._MALFORMED}: {reason}", self._BAD_STATUS) from None

    def _feed(self, data: bytes) -> None:
        mid_head = self._head is not None and not self._in_body
        self._began = False
        self._parser.feed_data(data)
        if self._head is not None and not self._in_body:
            if mid_head and not self._began:
                self._raw_head_bytes += len(data)
            if max(self._head_bytes, self._raw_head_bytes) > MAX_HEAD_BYTES:
                raise RemoteProtocolError("message head larger than 64 KiB", self._too_large)

    # -- callbacks shared by both directions (names fixed by httptools) --

    def _begin(self, head: RequestHead | ResponseHead) -> None:
        self._head = head
        self._head_bytes = 0
        self._raw_head_bytes = 0
        self._began = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:
            # Trailers count against the same cap as the head they extend.
            self._head_bytes += len(name) + len(value) + 4
            if self._head_bytes > MAX_HEAD_BYTES:
                raise RemoteProtocolError("trailers larger than 64 KiB", self._too_large)
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name, value))
            return
        head = self._head
        assert head is not None
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            raise RemoteProtocolError("message head larger than 64 KiB", self._too_large)
        head.headers.append((name, value))
        lname = name.lower()
        if lname == b"content-length":
            head.content_length = int(value)
        elif lname == b"transfer-encoding":
            # Chunked only when it is the final coding (RFC 9112 §6.3); llhttp
            # refuses anything else in a request, and in a response any other
            # final coding means the body runs until the connection closes.
            head.chunked = value.rstrip(b" \t").lower().endswith(b"chunked")

    def on_body(self, body: bytes) -> None:
        if self._head is None:
            # Only after a response to HEAD, which we end at its head: the peer
            # sent bytes no request asked for (we never pipeline upstream).
            raise RemoteProtocolError("bytes after a response that has no body", 502)
        self._handler.on_body(body)

    def on_message_complete(self) -> None:
        trailers = self._trailers
        self._trailers = None
        self._in_body = False
        self._head = None
        self._handler.on_end(trailers)


class RequestParser(_Parser):
    """Parses a stream of (possibly pipelined) requests from one client."""

    __slots__ = ()
    _MALFORMED = "malformed request"

    def __init__(self, handler: MessageHandler) -> None:
        super().__init__(handler, too_large=431)
        self._parser = httptools.HttpRequestParser(self)

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        self._begin(RequestHead())

    def on_url(self, url: bytes) -> None:
        head = self._head
        assert head is not None
        head.target += url
        self._head_bytes += len(url)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise RemoteProtocolError("request target larger than 64 KiB", 431)

    def on_headers_complete(self) -> None:
        head = self._head
        assert isinstance(head, RequestHead)
        parser = self._parser
        head.method = parser.get_method()
        head.version = parser.get_http_version()
        head.keep_alive = parser.should_keep_alive()
        if parser.should_upgrade():
            raise RemoteProtocolError("protocol upgrades (WebSocket, h2c) are not supported")
        if head.method == b"CONNECT":
            raise RemoteProtocolError("CONNECT tunnels are not supported")
        for name, value in head.headers:
            lname = name.lower()
            if lname == b"host":
                if head.host is not None:
                    raise RemoteProtocolError("more than one Host header")
                head.host = value.strip(b" \t")  # llhttp keeps trailing white space
            elif lname == b"expect" and value.strip(b" \t").lower() == b"100-continue":
                head.expect_continue = True
        if head.host is None and head.version == "1.1":
            raise RemoteProtocolError("HTTP/1.1 request without a Host header")
        self._in_body = True
        self._handler.on_head(head)


class ResponseParser(_Parser):
    """Parses the responses arriving on one upstream connection, one at a time.

    The caller says when the response answers a HEAD request
    (``expect_no_body``) because only it knows; and calls ``feed_eof`` when the
    connection closes, which ends a body framed by the connection's close.
    """

    __slots__ = ("_no_body", "_until_close")
    _MALFORMED = "malformed response"
    _UPGRADE = "upstream switched protocols"
    _BAD_STATUS = 502

    def __init__(self, handler: MessageHandler) -> None:
        super().__init__(handler, too_large=502)
        self._parser = httptools.HttpResponseParser(self)
        self._no_body = False
        self._until_close = False

    def expect_no_body(self) -> None:
        """The next response answers a HEAD request: it ends with its head."""
        self._no_body = True

    def feed_eof(self) -> bool:
        """The peer closed. True when that ended a read-until-close body."""
        if self._head is not None and self._in_body and self._until_close:
            self._until_close = False
            self.on_message_complete()
            return True
        return False

    @property
    def mid_message(self) -> bool:
        """True between the first byte of a response and its end."""
        return self._head is not None

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        self._begin(ResponseHead())

    def on_status(self, reason: bytes) -> None:
        head = self._head
        assert isinstance(head, ResponseHead)
        head.reason += reason

    def on_headers_complete(self) -> None:
        head = self._head
        assert isinstance(head, ResponseHead)
        parser = self._parser
        head.status = parser.get_status_code()
        head.version = parser.get_http_version()
        head.keep_alive = parser.should_keep_alive()
        if head.status < 200:
            # Interim response (100 Continue, 103 Early Hints): llhttp parses it
            # as a message of its own; we drop it and wait for the final one.
            self._head = None
            return
        self._in_body = True
        no_body = self._no_body or head.status in (204, 304)
        self._until_close = not no_body and head.content_length is None and not head.chunked
        if self._until_close:
            head.keep_alive = False
        self._handler.on_head(head)
        if self._no_body:
            # llhttp cannot be told the request was HEAD; end the message here and
            # start a fresh parser for the next response on this connection.
            self._no_body = False
            self._parser = httptools.HttpResponseParser(self)
            self.on_message_complete()

    def on_message_complete(self) -> None:
        if self._head is None:
            return  # end of an interim (1xx) response
        super().on_message_complete()
