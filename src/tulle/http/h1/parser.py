"""Sans-I/O HTTP/1.1 parser over httptools (llhttp).

Bytes go in through ``feed``; the parsed message comes out as calls on a handler
object (``on_head``, ``on_body``, ``on_end``), the push-style equivalent of
h11's events that costs no allocation per event. Nothing here touches a socket
or an event loop, so the codec is tested and fuzzed without a network.

Theory of operation: llhttp already refuses the request-smuggling shapes
(Content-Length together with Transfer-Encoding, two Content-Length headers),
bare LF line ends and invalid tokens. This module adds what llhttp leaves to its
embedder: a cap on the size of a message head (431), a missing Host on HTTP/1.1
(400), trailers told apart from headers (and stripped of the fields RFC 9110
§6.5.1 keeps out of trailers), the "no body" rule for responses to HEAD, and the
end of a read-until-close response body at EOF.

Everything that decides whether a head may be forwarded at all is decided in
``on_headers_complete``, before the handler's ``on_head``: the proxy forwards a
head as soon as it has one, so a refusal that llhttp raises later (it checks
Transfer-Encoding only after that callback returns) would come after the head
had reached the backend. Those decisions are:

- the version: HTTP/1.0 and 1.1 only; a request in any other (HTTP/0.9's bare
  ``GET /``, ``HTTP/2.0``) is 505 (RFC 9110 §15.6.6), a response 502;
- Transfer-Encoding, one rule from RFC 9112 §6.1 and §6.3 — see `_request_codings`
  and `_response_codings`: the only coding Tulle forwards is a lone ``chunked``;
- userinfo in the authority (``http://user@host/``, ``Host: a@b``): 400
  (RFC 9110 §4.2.4).
"""

from __future__ import annotations

import re
from typing import Protocol

import httptools

from tulle.http.errors import RemoteProtocolError
from tulle.http.headers import permitted_in_trailers
from tulle.http.message import Headers, RequestHead, ResponseHead

# Same order of magnitude as nginx's large_client_header_buffers (4 x 8k) and
# Envoy's max_request_headers_kb (60 KiB): generous for real clients, small
# enough that a slow or hostile one cannot make us hold much.
MAX_HEAD_BYTES = 64 * 1024

# RFC 9112 §4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ); llhttp lets
# other control characters through, and the proxy forwards the reason as it came.
_REASON_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# The versions this codec speaks; llhttp also parses 0.9 and 2.0 request lines.
_VERSIONS = ("1.1", "1.0")
# What llhttp says of a version number it does not know (HTTP/1.2, HTTP/3.0);
# httptools gives no error code, and test_request_parser pins this wording.
_LLHTTP_UNKNOWN_VERSION = "Invalid HTTP version"


def _codings(field: bytes) -> list[bytes]:
    """The transfer codings of a Transfer-Encoding value, in order, lower-case.

    Several header lines were joined with commas (RFC 9110 §5.3); empty list
    elements are allowed and skipped (RFC 9110 §5.6.1).
    """
    return [c for c in (part.strip(b" \t").lower() for part in field.split(b",")) if c]


def _quoted(field: bytes) -> str:
    return field.decode("latin-1")[:80]


def _request_codings(field: bytes, version: str) -> None:
    """Refuse a request whose Transfer-Encoding Tulle cannot forward faithfully.

    - on HTTP/1.0 the framing is faulty (RFC 9112 §6.1): 400;
    - chunked not the final coding, or there twice (``gzip``, ``xchunked``,
      ``chunked, gzip``): the body's length cannot be known, 400 (RFC 9112 §6.3
      ¶4 says MUST);
    - another coding before a final chunked (``gzip, chunked``): 501, RFC 9112
      §6.1's answer to a coding the server does not implement, and nginx's. Tulle
      decodes chunked and re-frames the body; passing the other coding on would
      need a writer that keeps it, and dropping it would change the content.
    HAProxy 2.6 answers 422 to these; 422 says the content was understood but
    not processable, which is not the case here.
    """
    if version == "1.0":
        raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)")
    codings = _codings(field)
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise RemoteProtocolError(
            f"Transfer-Encoding {_quoted(field)!r} does not end in a single chunked: "
            "the body's length cannot be known (RFC 9112 §6.3)"
        )
    if len(codings) > 1:
        raise RemoteProtocolError(
            f"Transfer-Encoding {_quoted(field)!r} is not implemented: chunked is the only "
            "transfer coding Tulle forwards", 501,
        )


def _response_codings(field: bytes, version: str) -> None:
    """Refuse a response whose Transfer-Encoding Tulle cannot forward faithfully (502).

    The same rule as requests, for the same reason: Transfer-Encoding is
    hop-by-hop, Tulle re-frames the body for its client, and a coding other than
    chunked would reach that client undeclared. A response without a final
    chunked would be read until the connection closes (RFC 9112 §6.3); that
    too is refused, since the client would get the coded bytes as the content.
    """
    if version == "1.0" or _codings(field) != [b"chunked"]:
        raise RemoteProtocolError(
            f"the endpoint sent Transfer-Encoding {_quoted(field)!r} in HTTP/{version}, "
            "which Tulle cannot forward as it came (only a lone chunked)", 502,
        )


def _userinfo_in_target(target: bytes) -> bool:
    """True when an absolute-form target's authority has userinfo (``user@``)."""
    scheme_end = target.find(b"://")
    if scheme_end < 0:
        return False
    authority = target[scheme_end + 3:]
    for stop in (b"/", b"?", b"#"):
        cut = authority.find(stop)
        if cut >= 0:
            authority = authority[:cut]
    return b"@" in authority


class MessageHandler(Protocol):
    """What a parser calls as a message goes by."""

    def on_head(self, head: RequestHead | ResponseHead) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_end(self, trailers: Headers | None) -> None: ...

    def on_informational(self, head: ResponseHead) -> None:
        """An interim (1xx) response, before the final one (responses only)."""


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
        "_codings",
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
        self._codings: bytes | None = None  # the head's Transfer-Encoding lines, joined
        self._too_large = too_large  # the status for a head over the cap

    # Per direction: how bytes llhttp rejects are described, and the status they
    # earn (a client's: 400; an upstream's: 502).
    _MALFORMED = "malformed message"
    _UPGRADE = "protocol upgrades are not supported"
    _BAD_STATUS = 400
    _BAD_VERSION_STATUS = 505

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
            if reason == _LLHTTP_UNKNOWN_VERSION:
                raise RemoteProtocolError(
                    "unsupported HTTP version (1.0 and 1.1 are)", self._BAD_VERSION_STATUS
                ) from None
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
        self._codings = None
        self._began = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:
            # Trailers count against the same cap as the head they extend.
            self._head_bytes += len(name) + len(value) + 4
            if self._head_bytes > MAX_HEAD_BYTES:
                raise RemoteProtocolError("trailers larger than 64 KiB", self._too_large)
            if not permitted_in_trailers(name.lower()):
                return  # RFC 9110 §6.5.1: not a field a trailer may carry
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
            # Judged whole in on_headers_complete (see _request_codings).
            codings = self._codings
            self._codings = value if codings is None else codings + b"," + value

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
        head.version = version = parser.get_http_version()
        if version not in _VERSIONS:
            raise RemoteProtocolError(
                f"HTTP version {version} is not supported (1.0 and 1.1 are)", 505
            )
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
                if b"@" in value:
                    raise RemoteProtocolError(
                        "userinfo (user@) in the Host header (RFC 9110 §4.2.4)"
                    )
            elif lname == b"expect" and value.strip(b" \t").lower() == b"100-continue":
                head.expect_continue = True
        if head.host is None and version == "1.1":
            raise RemoteProtocolError("HTTP/1.1 request without a Host header")
        target = head.target
        if target[:1] != b"/" and b"@" in target and _userinfo_in_target(target):
            raise RemoteProtocolError(
                "userinfo (user@) in the request target's authority (RFC 9110 §4.2.4)"
            )
        if self._codings is not None:
            _request_codings(self._codings, version)
            head.chunked = True
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
    _BAD_VERSION_STATUS = 502

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
        head.version = version = parser.get_http_version()
        if version not in _VERSIONS:
            raise RemoteProtocolError(f"the endpoint answered in HTTP version {version}", 502)
        if not 100 <= head.status <= 599:  # RFC 9110 §15: anything else is invalid
            raise RemoteProtocolError(f"invalid status code {head.status}", 502)
        if _REASON_CONTROL.search(head.reason) is not None:
            raise RemoteProtocolError("a control character in the status line's reason", 502)
        head.keep_alive = parser.should_keep_alive()
        if self._codings is not None:
            _response_codings(self._codings, version)
            head.chunked = True
        if head.status < 200:
            # Interim response (100 Continue, 103 Early Hints): llhttp parses it as a
            # message of its own; it is handed on (a proxy forwards it, RFC 9110
            # §15.2) and the final response follows.
            self._head = None
            if head.status != 101:  # a switch is an upgrade, refused below
                self._handler.on_informational(head)
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
