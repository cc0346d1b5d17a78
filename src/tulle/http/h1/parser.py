"""Sans-I/O HTTP/1.1 parser over httptools (llhttp).

Bytes go in through ``feed``; the parsed message comes out as calls on a handler
object (``on_head``, ``on_body``, ``on_end``), the push-style equivalent of
h11's events that costs no allocation per event. Nothing here touches a socket
or an event loop, so the codec is tested and fuzzed without a network.

How a head is read, and why. llhttp parses every byte (it validates the head, frames
the body, finds where each message ends), but a Python callback per header would cost
more than everything else the proxy does with a head. So the head is taken from the
bytes as they came: the parser knows where each message begins in the read that holds
it (the start of the read, or where the previous message ended), and when llhttp says
the head is complete, the head is the bytes from there to the blank line. Only what a
proxy acts on — Host, Content-Length, X-Forwarded-For and the hop-by-hop fields — is
looked up in it, by name in the block lower-cased once (`_scan`); the rest is
forwarded as it came, and turned into (name, value) pairs only if something asks.
Where a message begins cannot be known (a request pipelined
in the same read after a chunked body), that one head is collected from llhttp's
per-header callbacks instead: slower, and the same.

Those callbacks (a Python call per header field, and one for the request target or the
reason phrase) are needed only for trailers and for such collected heads, and both come
after a chunked head. So a parser starts without them (httptools installs a callback
only for a method its protocol object has, and is handed `_Callbacks`, which lacks
three); the first chunked head stops llhttp before anything is handed on, and the
message is parsed again from its first byte by a fresh llhttp that has every callback,
which the connection keeps from then on (`_Parser.per_header_callbacks`).

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
from typing import Any, Final, Protocol

import httptools

from tulle.http.errors import RemoteProtocolError
from tulle.http.headers import HOP_BY_HOP, permitted_in_trailers
from tulle.http.message import Head, Headers, RequestHead, ResponseHead

# Same order of magnitude as nginx's large_client_header_buffers (4 x 8k) and
# Envoy's max_request_headers_kb (60 KiB): generous for real clients, small
# enough that a slow or hostile one cannot make us hold much.
MAX_HEAD_BYTES: Final = 64 * 1024

# RFC 9112 §4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ); llhttp lets
# other control characters through, and the proxy forwards the reason as it came.
_REASON_CONTROL: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# The versions this codec speaks; llhttp also parses 0.9 and 2.0 request lines.
_VERSIONS: Final = ("1.1", "1.0")
# Reason phrases seen on most responses, known to be clean (no regex run for them).
_COMMON_REASONS: Final = frozenset(
    {b"OK", b"Created", b"Accepted", b"No Content", b"Moved Permanently", b"Found",
     b"Not Modified", b"Bad Request", b"Unauthorized", b"Forbidden", b"Not Found",
     b"Internal Server Error", b"Bad Gateway", b"Service Unavailable", b"Gateway Timeout", b""}
)
# What llhttp says of a version number it does not know (HTTP/1.2, HTTP/3.0);
# httptools gives no error code, and test_request_parser pins this wording.
_LLHTTP_UNKNOWN_VERSION: Final = "Invalid HTTP version"


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


# Tokens of a Connection header that do not name a field to drop (see headers.py).
_CONNECTION_OPTIONS: Final = HOP_BY_HOP | {b"close", b"", b"content-length", b"host"}

# Bound once: a bytes method looked up by name on every call costs more than the call.
_find: Final = bytes.find
_split: Final = bytes.split
# "@" as a byte value: ``int in bytes`` is a memchr, where ``bytes in bytes`` first costs a
# TypeError (it tries the operand as an int) and ``bytes.find`` parses its arguments.
_AT: Final = 0x40
# ASCII upper-case to lower-case, for bytes.translate (a C call, unlike a per-line lower).
_LOWER_CASE: Final = bytes.maketrans(bytes(range(65, 91)), bytes(range(97, 123)))
# The hop-by-hop fields beginning with k, p, u or e (RFC 9110 §7.6.1; the others are
# tested one by one in `_scan`), as they begin a lower-cased line.
_HOP_BY_HOP_KPUE: tuple[bytes, ...] = tuple(
    name + b":" for name in sorted(HOP_BY_HOP) if name[:1] in (b"k", b"p", b"u", b"e")
)

# The Upgrade token of HTTP/2 over cleartext (RFC 7540 §3.2).
H2C: Final = b"h2c"


class _EndedAtHead(Exception):
    """Raised out of llhttp's callback to stop it after a response to HEAD ended."""


class _PerHeaderCallbacksNeeded(Exception):
    """Raised out of llhttp's callback to stop it at a chunked head parsed without the
    per-header callbacks its trailers need (see the module note)."""


# Where the parser is in the current message.
_IDLE: Final = 0  # between messages
_HEAD: Final = 1  # a message began; its head is not complete
_BODY: Final = 2  # the head was handed on; the body (or the end) follows


class MessageHandler(Protocol):
    """What a parser calls as a message goes by."""

    def on_head(self, head: RequestHead | ResponseHead) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_end(self, trailers: Headers | None) -> None: ...

    def on_informational(self, head: ResponseHead) -> None:
        """An interim (1xx) response, before the final one (responses only)."""

    def on_upgrade(self, head: RequestHead | ResponseHead, tail: bytes) -> None:
        """``head`` switched the connection to another protocol and is complete (in place
        of ``on_end``): a CONNECT request (which gets no ``on_head``), an Upgrade request
        (after its ``on_head``), or the 101 that accepts one. ``tail`` is what followed it
        in the read; nothing more is parsed."""


def _version_at_end(request_line: bytes) -> str | None:
    """The version a request line that llhttp has checked ends with, if this codec
    speaks it: read from the line, since httptools' get_http_version formats a str per
    call (and compared in place: a slice and a dict lookup cost more)."""
    if request_line.endswith(b"HTTP/1.1"):
        return "1.1"
    if request_line.endswith(b"HTTP/1.0"):
        return "1.0"
    return None


def _version_at_start(status_line: bytes) -> str | None:
    """The same for a status line, which begins with its version."""
    if status_line.startswith(b"HTTP/1.1"):
        return "1.1"
    if status_line.startswith(b"HTTP/1.0"):
        return "1.0"
    return None


def _value_span(block: bytes, start: int, end: int) -> tuple[int, int]:
    """Where a header's value lies in ``block[start:end]``, without surrounding white space."""
    while start < end and (block[start] == 32 or block[start] == 9):  # SP, HTAB
        start += 1
    while end > start and (block[end - 1] == 32 or block[end - 1] == 9):
        end -= 1
    return start, end


def _decimal(block: bytes, start: int, end: int) -> int:
    """The number written in ``block[start:end]``: a Content-Length, which llhttp has
    checked (one or more digits, within 64 bits; anything else it refuses before the
    head is complete). Read digit by digit: compiled, a few instructions a digit, where
    ``int()`` of a slice is a call that parses a string (~900 a response)."""
    value = 0
    for index in range(start, end):
        value = value * 10 + block[index] - 48  # b"0" is 48
    return value


def _split_head(raw: bytes) -> tuple[bytes, bytes, bytes, list[bytes]]:
    """A head's start line, its header block (each line after its "\r\n"), that block
    lower-cased, and the head's lines lower-cased, the start line first: one translate
    and one split of the whole head, which also say where its start line ends."""
    low = raw.translate(_LOWER_CASE)
    lines = _split(low, b"\r\n")
    line_end = len(lines[0])
    return raw[:line_end], raw[line_end:], low[line_end:], lines


def _scan(head: Head, block: bytes, low: bytes, lines: list[bytes], request: bool
          ) -> bytes | None:
    """Read what a proxy acts on from a header block into ``head``, and set the block it
    forwards (the same, without hop-by-hop fields, RFC 9110 §7.6.1).

    One pass over the lines of the block lower-cased once (``low``, and ``lines`` from
    `_split_head`): a line is looked at only when its first letter could begin a field
    the proxy acts on (Host, Content-Length, X-Forwarded-For, the hop-by-hop fields),
    and then compared by prefix. Returns the Transfer-Encoding lines joined, for the
    caller to judge (None: none).
    """
    codings: bytes | None = None
    drop: list[tuple[int, int]] | None = None  # (start, end) of lines not forwarded
    named: list[bytes] | None = None  # fields the Connection header names
    forwarded_for = -1  # where the last X-Forwarded-For line ends
    at = 0  # where the current line's "\r\n" is in ``block``
    for index in range(1, len(lines)):  # (lines[0] is the start line)
        line = lines[index]
        at += 2
        end = at + len(line)
        first = line[0] if line else 0
        dropped = False
        if first == 99:  # c
            if line.startswith(b"content-length:"):
                start, stop = _value_span(block, at + 15, end)
                head.content_length = _decimal(block, start, stop)
            elif line.startswith(b"connection:"):
                dropped = True
                start, stop = _value_span(low, at + 11, end)
                value = low[start:stop]
                if value not in _CONNECTION_OPTIONS:  # (most say keep-alive or close)
                    for token in _split(value, b","):
                        token = token.strip(b" \t")
                        if token not in _CONNECTION_OPTIONS:
                            named = ([token + b":"] if named is None
                                     else [*named, token + b":"])
        elif first == 104:  # h
            if request and line.startswith(b"host:"):
                assert isinstance(head, RequestHead)
                if head.host is not None:
                    raise RemoteProtocolError("more than one Host header")
                start, stop = _value_span(block, at + 5, end)
                host = block[start:stop]
                if _AT in host:
                    raise RemoteProtocolError(
                        "userinfo (user@) in the Host header (RFC 9110 §4.2.4)"
                    )
                head.host = host
        elif first == 116:  # t
            if line.startswith(b"transfer-encoding:"):
                dropped = True
                start, stop = _value_span(block, at + 18, end)
                value = block[start:stop]
                codings = value if codings is None else codings + b"," + value
            elif line.startswith(b"te:"):
                dropped = True
        elif first == 118:  # v
            if line.startswith(b"via:"):
                start, stop = _value_span(block, at + 4, end)
                via = head.via
                head.via = block[start:stop] if via is None else via + b", " + block[start:stop]
        elif first == 120:  # x
            if request and line.startswith(b"x-forwarded-for:"):
                forwarded_for = end
        elif ((first == 107 or first == 112 or first == 117 or first == 101)  # k p u e
              and line.startswith(_HOP_BY_HOP_KPUE)):
            dropped = True
            if request and line.startswith(b"expect:"):
                start, stop = _value_span(low, at + 7, end)
                if low[start:stop] == b"100-continue":
                    assert isinstance(head, RequestHead)
                    head.expect_continue = True
        if dropped:
            drop = [(at - 2, end)] if drop is None else [*drop, (at - 2, end)]
        at = end
    if named is not None:
        drop = _drop_named(lines, named, drop or [])
    if drop is None:
        forward = block
    elif len(drop) == 1 and drop[0][1] == len(block):
        forward = block[:drop[0][0]]  # one field dropped, the last (nginx's Connection)
    else:
        kept: list[bytes] = []
        position = 0
        chain_end = forwarded_for
        for start, stop in drop:
            if start >= position:
                kept.append(block[position:start])
            if stop > position:
                position = stop
            if 0 <= stop <= chain_end:
                forwarded_for -= stop - start  # the chain's end moves with what goes
        kept.append(block[position:])
        forward = b"".join(kept)
    head.set_block(block, forward)
    if request:
        assert isinstance(head, RequestHead)
        head.forwarded_for = forwarded_for
    return codings


def _drop_named(lines: list[bytes], named: list[bytes], drop: list[tuple[int, int]]
                ) -> list[tuple[int, int]]:
    """``drop`` with the lines of the fields a Connection header names, in order."""
    at = 0
    for index in range(1, len(lines)):  # (lines[0] is the start line)
        line = lines[index]
        at += 2
        end = at + len(line)
        for prefix in named:
            if line.startswith(prefix):
                drop.append((at - 2, end))
                break
        at = end
    drop.sort()
    return drop


class _Parser:
    """Shared state of the request and response parsers (see the module note).

    The head-size cap counts the head's bytes as they arrive: the bytes held from
    earlier reads while a head is incomplete, and the whole head once complete (for
    a collected head, the pieces llhttp delivered and every byte of a read that left
    the head incomplete).
    """

    __slots__ = (
        "_body_pos",
        "_codings",
        "_collect",
        "_data",
        "_delivered",
        "_get_version",
        "_handler",
        "_head",
        "_head_bytes",
        "_keep_alive",
        "_next",
        "_on_body",
        "_on_end",
        "_on_head",
        "_parse",
        "_parser",
        "_per_header",
        "_pieces",
        "_prefix",
        "_raw_head_bytes",
        "_start",
        "_state",
        "_switching",
        "_too_large",
        "_trailers",
        "_url",
    )

    _parser: Any  # the subclass's llhttp parser (httptools has no common base to name)
    _parse: Any  # its feed_data, bound once (a method looked up per read costs)
    _get_version: Any  # its get_http_version, bound once
    _keep_alive: Any  # its should_keep_alive, bound once

    def __init__(self, handler: MessageHandler, too_large: int) -> None:
        self._handler = handler
        # The handler's callbacks, bound once: called per message, looked up never.
        self._on_head = handler.on_head
        self._on_body = handler.on_body
        self._on_end = handler.on_end
        self._too_large = too_large  # the status for a head over the cap
        self._state = _IDLE
        self._head: Head | None = None
        self._data = b""  # the read being parsed
        self._next = 0  # where the next message begins in it (-1: not known)
        self._start = 0  # where the current head begins in it (-1: collected instead)
        self._prefix: bytes | None = None  # the current head's bytes from earlier reads
        self._body_pos = 0  # where the body's bytes begin in this read (-1: not known)
        self._delivered = 0  # body bytes handed on from this read
        self._collect = False  # this head is collected from llhttp's callbacks
        self._pieces: Headers = []
        self._url = b""
        self._codings: bytes | None = None
        self._head_bytes = 0
        self._raw_head_bytes = 0
        self._trailers: Headers | None = None
        self._switching: RequestHead | ResponseHead | None = None  # see on_upgrade
        self._per_header = False  # llhttp calls back per header (see the module note)

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
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _PerHeaderCallbacksNeeded):
                pass  # parsed again below, outside this handler
            elif isinstance(cause, _EndedAtHead):
                # The response to HEAD ended at its head and its llhttp was replaced:
                # what else this read holds, no request asked for.
                if self._body_pos < len(data):
                    raise RemoteProtocolError("bytes after a response that has no body",
                                              502) from None
                return
            elif isinstance(cause, RemoteProtocolError):
                raise cause from None
            else:
                raise
        except httptools.HttpParserUpgrade as exc:
            head = self._switching
            if head is None:
                raise RemoteProtocolError(self._UPGRADE, self._BAD_STATUS) from None
            self._switching = None
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self._handler.on_upgrade(head, data[offset:])
            return
        except httptools.HttpParserError as exc:
            reason = str(exc) or type(exc).__name__
            if reason == _LLHTTP_UNKNOWN_VERSION:
                raise RemoteProtocolError(
                    "unsupported HTTP version (1.0 and 1.1 are)", self._BAD_VERSION_STATUS
                ) from None
            raise RemoteProtocolError(f"{self._MALFORMED}: {reason}", self._BAD_STATUS) from None
        # Outside the handler, so that what the second parse raises is not chained to it.
        self._parse_again_per_header(data)

    @property
    def per_header_callbacks(self) -> bool:
        """llhttp calls back once per header field: since the first chunked head."""
        return self._per_header

    def _parse_again_per_header(self, data: bytes) -> None:
        """The head llhttp just completed is chunked and was parsed without per-header
        callbacks: parse its message again from its first byte (held in ``_prefix``
        when it began in an earlier read), with a fresh llhttp that has them, and keep
        that one. Nothing of the message had been handed on."""
        prefix = self._prefix
        again = data[self._start:] if prefix is None else prefix + data
        self._per_header = True
        self._bind(self._new_llhttp())
        self._state = _IDLE
        self.feed(again)

    def _llhttp_protocol(self) -> object:
        """What a new llhttp calls back (see the module note)."""
        return self if self._per_header else _Callbacks(self)

    def _new_llhttp(self) -> Any:
        raise NotImplementedError

    def _bind(self, parser: Any) -> None:
        """Use ``parser`` (an httptools parser) from now on."""
        self._parser = parser
        self._parse = parser.feed_data
        self._get_version = parser.get_http_version
        self._keep_alive = parser.should_keep_alive

    def _feed(self, data: bytes) -> None:
        state = self._state
        self._data = data
        if state == _IDLE:
            self._next = 0
        elif state == _BODY:
            self._body_pos = 0  # the body goes on from the start of this read
            self._delivered = 0
        else:
            self._start = 0  # the head goes on from the start of this read
        self._parse(data)
        if self._state != _HEAD:
            return
        # The read ended inside a head: keep its bytes, within the cap.
        if self._collect:
            if state == _HEAD:
                self._raw_head_bytes += len(data)
            if max(self._head_bytes, self._raw_head_bytes) > MAX_HEAD_BYTES:
                raise RemoteProtocolError("message head larger than 64 KiB", self._too_large)
            return
        piece = data[self._start:] if self._start else data
        prefix = self._prefix
        prefix = self._prefix = piece if prefix is None else prefix + piece
        if len(prefix) > MAX_HEAD_BYTES:
            raise RemoteProtocolError("message head larger than 64 KiB", self._too_large)

    # -- callbacks shared by both directions (names fixed by httptools) --

    def on_message_begin(self) -> None:
        self._state = _HEAD
        self._head = self._new_head()
        start = self._start = self._next
        self._prefix = None
        self._codings = None
        self._trailers = None
        self._collect = collect = start < 0
        if collect:
            self._pieces = []
            self._url = b""
            self._head_bytes = 0
            self._raw_head_bytes = 0

    def on_url(self, url: bytes) -> None:
        if self._collect:
            self._url += url
            self._head_bytes += len(url)
            if self._head_bytes > MAX_HEAD_BYTES:
                raise RemoteProtocolError("request target larger than 64 KiB", 431)

    def on_status(self, reason: bytes) -> None:
        if self._collect:
            self._url += reason  # the reason phrase, for a collected response head

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state == _BODY:
            # Trailers count against the same cap as the head they extend.
            self._head_bytes += len(name) + len(value) + 4
            if self._head_bytes > MAX_HEAD_BYTES:
                raise RemoteProtocolError("trailers larger than 64 KiB", self._too_large)
            if not permitted_in_trailers(name.lower()):
                return  # RFC 9110 §6.5.1: not a field a trailer may carry
            if self._trailers is None:
                self._trailers = []
            self._trailers.append((name, value))
        elif self._collect:
            self._head_bytes += len(name) + len(value) + 4
            if self._head_bytes > MAX_HEAD_BYTES:
                raise RemoteProtocolError("message head larger than 64 KiB", self._too_large)
            self._pieces.append((name, value.strip(b" \t")))

    def _head_block(self) -> tuple[bytes, bytes, bytes, list[bytes]]:
        """The start line and the header block of the head llhttp just completed, and
        what `_scan` reads them from (see `_split_head`)."""
        if self._collect:
            self._body_pos = -1
            return _split_head(
                b"".join([b"\r\n" + name + b": " + value for name, value in self._pieces]))
        data = self._data
        start = self._start
        prefix = self._prefix
        if prefix is None:
            if start < len(data) and (data[start] == 13 or data[start] == 10):
                # Empty lines before a request line are skipped (RFC 9112 §2.2).
                start = len(data) - len(data[start:].lstrip(b"\r\n"))
            if start == 0 and len(data) <= MAX_HEAD_BYTES and data.endswith(b"\r\n\r\n"):
                # The read is one message head, as a request without a body usually is,
                # unless a blank line comes sooner (pipelined requests): a line of its
                # split is then empty. Else the head is found without a search. (Only
                # for a read's first message: each costs a split of the rest of it.)
                split = _split_head(data[:len(data) - 4])
                if b"" not in split[3]:
                    self._body_pos = len(data)
                    return split
            end = _find(data, b"\r\n\r\n", start)
            raw = data[start:end]
            self._body_pos = end + 4
        else:
            # (``_prefix`` stays until the next message begins: a parse again needs it.)
            tail = prefix[-3:]  # the blank line may straddle the two reads
            end = _find(tail + data, b"\r\n\r\n") - len(tail)
            raw = (prefix + data[:end]) if end > 0 else prefix[:len(prefix) + end]
            self._body_pos = end + 4
            raw = raw.lstrip(b"\r\n")  # empty lines before a request line (RFC 9112 §2.2)
        if len(raw) > MAX_HEAD_BYTES:
            raise RemoteProtocolError("message head larger than 64 KiB", self._too_large)
        return _split_head(raw)

    def on_body(self, body: bytes) -> None:
        if self._state != _BODY:
            # Only after a response to HEAD, which we end at its head: the peer
            # sent bytes no request asked for (we never pipeline upstream).
            raise RemoteProtocolError("bytes after a response that has no body", 502)
        self._delivered += len(body)
        self._on_body(body)

    def on_message_complete(self) -> None:
        if self._state != _BODY:
            return  # the end of an interim (1xx) response, or of one ended at its head
        head = self._head
        assert head is not None
        body_pos = self._body_pos
        self._next = -1 if body_pos < 0 or head.chunked else body_pos + self._delivered
        self._state = _IDLE
        self._head = None
        trailers = self._trailers
        self._trailers = None
        self._on_end(trailers)

    def _new_head(self) -> Head:
        raise NotImplementedError

    def on_headers_complete(self) -> None:
        raise NotImplementedError


class _Callbacks:
    """The protocol object of an llhttp without per-header callbacks: the parser's own
    callbacks, bound once, less ``on_header``, ``on_url`` and ``on_status``, which only
    trailers and collected heads need (see the module note)."""

    __slots__ = ("on_body", "on_headers_complete", "on_message_begin", "on_message_complete")

    def __init__(self, parser: _Parser) -> None:
        self.on_message_begin = parser.on_message_begin
        self.on_headers_complete = parser.on_headers_complete
        self.on_body = parser.on_body
        self.on_message_complete = parser.on_message_complete


class RequestParser(_Parser):
    """Parses a stream of (possibly pipelined) requests from one client."""

    __slots__ = ("_get_method", "_should_upgrade")
    _MALFORMED = "malformed request"

    _get_method: Any  # llhttp's getters, bound once like the base class's
    _should_upgrade: Any

    def __init__(self, handler: MessageHandler) -> None:
        super().__init__(handler, too_large=431)
        self._bind(self._new_llhttp())

    def _new_llhttp(self) -> httptools.HttpRequestParser:
        return httptools.HttpRequestParser(self._llhttp_protocol())

    def _bind(self, parser: httptools.HttpRequestParser) -> None:
        super()._bind(parser)
        self._get_method = parser.get_method
        self._should_upgrade = parser.should_upgrade

    def _new_head(self) -> RequestHead:
        return RequestHead()

    def on_headers_complete(self) -> None:
        head = self._head
        assert isinstance(head, RequestHead)
        start_line, block, low, lines = self._head_block()
        # llhttp checked the line, "METHOD SP target SP HTTP/1.x": when it ends so, the
        # target ends 9 bytes before it (``target_end``; 0: find it, for a collected head
        # or another line). Without that space, "HTTP/1.1" ends an HTTP/0.9 target.
        version = (_version_at_end(start_line)
                   if len(start_line) > 9 and start_line[-9] == 32 else None)
        target_end = -9
        if version is None:  # a collected head, or a version this codec does not speak
            target_end = 0
            version = self._get_version()
            if version not in _VERSIONS:
                raise RemoteProtocolError(
                    f"HTTP version {version} is not supported (1.0 and 1.1 are)", 505
                )
        head.version = version
        head.method = method = self._get_method()
        if self._collect:
            target = self._url
        else:
            if not target_end:
                target_end = start_line.rindex(b" ")
            target = start_line[len(method) + 1:target_end]
            if target and (target[0] == 32 or target[-1] == 32):
                target = target.strip(b" ")  # llhttp lets more than one space separate
        head.target = target
        head.keep_alive = self._keep_alive()
        switching = self._should_upgrade()  # CONNECT, or Upgrade with Connection: upgrade
        codings = _scan(head, block, low, lines, request=True)
        if head.host is None and version == "1.1":
            raise RemoteProtocolError("HTTP/1.1 request without a Host header")
        if target[:1] != b"/" and _AT in target and _userinfo_in_target(target):
            raise RemoteProtocolError(
                "userinfo (user@) in the request target's authority (RFC 9110 §4.2.4)"
            )
        if codings is not None:
            _request_codings(codings, version)
            head.chunked = True
            if not self._per_header:
                raise _PerHeaderCallbacksNeeded
        self._head_bytes = 0
        self._delivered = 0
        if switching:
            self._switch(head)
            return
        self._state = _BODY
        self._on_head(head)

    def _switch(self, head: RequestHead) -> None:
        """A request that switches protocols: a CONNECT tunnel (RFC 9110 §9.3.6), or an
        Upgrade (§7.8) such as WebSocket, whose token goes in ``head.protocol`` (as
        HTTP/2's ``:protocol``, RFC 8441). Neither may have a body: llhttp stops at the
        head, and the bytes after it belong to the new protocol. An ``Upgrade: h2c``
        (RFC 7540 §3.2) is the proxy's own to answer: like a CONNECT, its head goes to
        ``on_upgrade`` only (``head.protocol`` b"h2c")."""
        if head.has_body:
            raise RemoteProtocolError("a request that switches protocols has a body")
        if head.method != b"CONNECT":
            offer = head.header(b"upgrade") or b""
            if b"h2c" in (token.strip().lower() for token in offer.split(b",")):
                head.protocol = H2C
            else:
                head.protocol = offer
        self._state = _IDLE  # the end is on_upgrade, once llhttp says where the head ended
        self._switching = head
        if head.method != b"CONNECT" and head.protocol != H2C:
            self._on_head(head)


class ResponseParser(_Parser):
    """Parses the responses arriving on one upstream connection, one at a time.

    The caller says when the response answers a HEAD request
    (``expect_no_body``) because only it knows; and calls ``feed_eof`` when the
    connection closes, which ends a body framed by the connection's close.
    """

    __slots__ = ("_get_status", "_no_body", "_until_close", "_upgrade_asked")
    _MALFORMED = "malformed response"
    _UPGRADE = "upstream switched protocols"
    _BAD_STATUS = 502
    _BAD_VERSION_STATUS = 502

    _get_status: Any  # llhttp's getter, bound once like the base class's

    def __init__(self, handler: MessageHandler) -> None:
        super().__init__(handler, too_large=502)
        self._bind(self._new_llhttp())
        self._no_body = False
        self._until_close = False
        self._upgrade_asked = False

    def _new_head(self) -> ResponseHead:
        return ResponseHead()

    def _new_llhttp(self) -> httptools.HttpResponseParser:
        return httptools.HttpResponseParser(self._llhttp_protocol())

    def _bind(self, parser: httptools.HttpResponseParser) -> None:
        super()._bind(parser)
        self._get_status = parser.get_status_code

    def expect_no_body(self) -> None:
        """The next response answers a HEAD request: it ends with its head."""
        self._no_body = True

    def expect_upgrade(self) -> None:
        """The next response answers an Upgrade request: a 101 switches protocols (it ends
        with ``on_upgrade``); without this, a 101 is a protocol error (502)."""
        self._upgrade_asked = True

    def feed_eof(self) -> bool:
        """The peer closed. True when that ended a read-until-close body."""
        if self._state == _BODY and self._until_close:
            self._until_close = False
            self.on_message_complete()
            return True
        return False

    @property
    def mid_message(self) -> bool:
        """True between the first byte of a response and its end."""
        return self._state != _IDLE

    def on_headers_complete(self) -> None:
        head = self._head
        assert isinstance(head, ResponseHead)
        status: int = self._get_status()
        head.status = status
        start_line, block, low, lines = self._head_block()
        version = _version_at_start(start_line)
        if version is None:  # a collected head, or a version this codec does not speak
            version = self._get_version()
            if version not in _VERSIONS:
                raise RemoteProtocolError(f"the endpoint answered in HTTP version {version}",
                                          502)
        head.version = version
        if not 100 <= status <= 599:  # RFC 9110 §15: anything else is invalid
            raise RemoteProtocolError(f"invalid status code {status}", 502)
        if self._collect:
            head.reason = self._url
        else:
            # llhttp checked the line: "HTTP/x.y NNN" and, after a space, the reason.
            head.reason = start_line[13:]
        reason = head.reason
        if reason not in _COMMON_REASONS and _REASON_CONTROL.search(reason) is not None:
            raise RemoteProtocolError("a control character in the status line's reason", 502)
        head.keep_alive = self._keep_alive()
        codings = _scan(head, block, low, lines, request=False)
        if codings is not None:
            _response_codings(codings, version)
            head.chunked = True
            if not self._per_header:
                raise _PerHeaderCallbacksNeeded
        if status == 101 and self._upgrade_asked:
            self._upgrade_asked = False
            self._state = _IDLE  # ended by on_upgrade, with the bytes that followed
            self._switching = head
            self._on_head(head)
            return
        if status < 200:
            # Interim response (100 Continue, 103 Early Hints): llhttp parses it as a
            # message of its own; it is handed on (a proxy forwards it, RFC 9110
            # §15.2) and the final response follows right after its head.
            if head.chunked or head.content_length:
                # RFC 9112 §6.3: a 1xx ends at its head whatever its fields say, but
                # llhttp reads the body they describe: framing we and llhttp would see
                # differently (found by the codec fuzzer). Refused, as a bad response.
                raise RemoteProtocolError("an interim (1xx) response with a body", 502)
            self._state = _IDLE
            self._next = self._body_pos
            if status != 101:  # a switch is an upgrade, refused by llhttp below
                self._handler.on_informational(head)
            return
        self._state = _BODY
        self._head_bytes = 0
        self._delivered = 0
        self._upgrade_asked = False  # declined: an ordinary response
        no_body = self._no_body or status == 204 or status == 304
        self._until_close = not no_body and head.content_length is None and not head.chunked
        if self._until_close:
            head.keep_alive = False
        self._on_head(head)
        if self._no_body:
            # llhttp cannot be told the request was HEAD; end the message here and
            # start a fresh parser for the next response on this connection.
            self._no_body = False
            self._bind(self._new_llhttp())
            self.on_message_complete()
            # Stop the replaced llhttp here: it believes a body follows, and must not
            # go on parsing this read as one (or as more responses) behind our back.
            raise _EndedAtHead
