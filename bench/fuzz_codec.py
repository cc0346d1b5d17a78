"""Coverage-guided fuzzing of the HTTP/1 codec (request and response parsers) with atheris.

``python -m bench.fuzz_codec [libFuzzer flags] [CORPUS_DIR ...]`` runs libFuzzer over
`check_one`, with Tulle's Python code instrumented for coverage (llhttp, the C
parser underneath, is not: the seed corpus and the token dictionary written by
`write_seeds` get the mutator past its method and status-line checks).

One input is a flags byte and a byte stream. Bit 0 picks the parser (request or
response), bit 1 tells the response parser the request was HEAD, the other bits
seed where the stream is cut into reads. `check_one` feeds the stream whole and
in pieces and fails (an uncaught exception: libFuzzer's "crash") when:

- anything but `RemoteProtocolError` escapes the parser, or its status is not one
  the proxy answers with (a request's 400/431/501/505, a response's 502);
- the calls the handler gets are out of order (a body or an end with no message
  open, a response under 200 handed on);
- a head or a trailer section it handed on is over the 64 KiB cap (a buffer that
  grows with the input);
- a head it handed on breaks a rule decided before forwarding: a version other
  than 1.0/1.1, userinfo in Host, Transfer-Encoding other than a lone chunked,
  chunked together with Content-Length, a trailer RFC 9110 §6.5.1 forbids, a
  control character in a reason phrase;
- cutting the stream into reads changes what comes out (for responses, up to the
  end of the first one: see `check_one`);
- a request it accepted, written back out by the codec's writer, parses to
  something else (the round trip the proxy performs on every request).

A hang is a run over libFuzzer's ``-timeout``; memory is capped by ``-rss_limit_mb``.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tulle.http import (
    MAX_HEAD_BYTES,
    Headers,
    RemoteProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    encode_chunk,
    encode_head,
    encode_last_chunk,
    permitted_in_trailers,
)

REQUEST_STATUSES = frozenset({400, 431, 501, 505})
RESPONSE_STATUSES = frozenset({502})
MAX_LEN = 4096  # inputs longer than this are cut by libFuzzer (-max_len)


class FuzzFailure(AssertionError):
    """The codec did something no input may make it do."""


@dataclass
class _Message:
    head: RequestHead | ResponseHead
    body: bytearray = field(default_factory=bytearray)
    trailers: Headers | None = None
    ended: bool = False


class _Recorder:
    """A handler that checks the order of calls as they come."""

    def __init__(self) -> None:
        self.messages: list[_Message] = []
        self.switched = False  # after a switch, the bytes are the new protocol's

    def on_head(self, head: RequestHead | ResponseHead) -> None:
        if self.messages and not self.messages[-1].ended:
            raise FuzzFailure("a head while the previous message is still open")
        self.messages.append(_Message(head))

    def on_body(self, data: bytes) -> None:
        if not self.messages or self.messages[-1].ended:
            raise FuzzFailure("body bytes with no message open")
        self.messages[-1].body += data

    def on_end(self, trailers: Headers | None) -> None:
        if not self.messages or self.messages[-1].ended:
            raise FuzzFailure("an end with no message open")
        self.messages[-1].trailers = trailers
        self.messages[-1].ended = True

    def on_informational(self, head: ResponseHead) -> None:
        if not 100 <= head.status < 200 or head.status == 101:
            raise FuzzFailure(f"a {head.status} handed on as an interim response")
        if self.messages and not self.messages[-1].ended:
            raise FuzzFailure("an interim response inside a message")

    def on_upgrade(self, head: RequestHead | ResponseHead, tail: bytes) -> None:
        """A switch ends the message: CONNECT (no head before), or the Upgrade request
        whose head is the open message. No response switches: none asked to."""
        if isinstance(head, ResponseHead):
            raise FuzzFailure("a response switched protocols unasked")
        if head.method == b"CONNECT":
            if self.messages and not self.messages[-1].ended:
                raise FuzzFailure("a CONNECT inside a message")
            self.messages.append(_Message(head))
        elif not self.messages or self.messages[-1].head is not head:
            raise FuzzFailure("an Upgrade that is not the open message")
        if head.has_body:
            raise FuzzFailure("a request that switches protocols with a body")
        self.messages[-1].ended = True
        self.switched = True


def _run(pieces: list[bytes], response: bool, head_request: bool
         ) -> tuple[list[_Message], int | None]:
    """Feed ``pieces`` to a fresh parser: the messages and the refusal status, if any."""
    recorder = _Recorder()
    parser: RequestParser | ResponseParser
    if response:
        parser = ResponseParser(recorder)
        if head_request:
            parser.expect_no_body()
    else:
        parser = RequestParser(recorder)
    allowed = RESPONSE_STATUSES if response else REQUEST_STATUSES
    try:
        for piece in pieces:
            if recorder.switched:
                break  # as the proxy does: later reads go to the tunnel, not the parser
            parser.feed(piece)
        if isinstance(parser, ResponseParser):
            parser.feed_eof()
    except RemoteProtocolError as error:
        if error.status not in allowed or not error.reason:
            raise FuzzFailure(f"refused with {error.status} {error.reason!r}") from error
        return recorder.messages, error.status
    return recorder.messages, None


def _summary(messages: list[_Message]) -> list[tuple[object, ...]]:
    return [
        (tuple(getattr(m.head, name) for name in type(m.head).__slots__), bytes(m.body),
         m.trailers, m.ended)
        for m in messages
    ]


def _first(messages: list[_Message], status: int | None) -> tuple[object, ...]:
    """The first message, and the refusal if it came before that message ended."""
    if messages and messages[0].ended:
        return (_summary(messages[:1]), None)
    return (_summary(messages[:1]), status)


def _size(headers: Headers) -> int:
    return sum(len(name) + len(value) for name, value in headers)


def _check_head_rules(message: _Message) -> None:
    head = message.head
    if head.version not in ("1.0", "1.1"):
        raise FuzzFailure(f"a head in HTTP/{head.version} was handed on")
    if _size(head.headers) > MAX_HEAD_BYTES:
        raise FuzzFailure("a head over the 64 KiB cap was handed on")
    if message.trailers is not None:
        if _size(message.trailers) > MAX_HEAD_BYTES:
            raise FuzzFailure("trailers over the 64 KiB cap were handed on")
        for name, _ in message.trailers:
            if not permitted_in_trailers(name.lower()):
                raise FuzzFailure(f"a forbidden trailer {name!r} was handed on")
    codings = [v for n, v in head.headers if n.lower() == b"transfer-encoding"]
    if codings and not head.chunked:
        raise FuzzFailure(f"Transfer-Encoding {codings!r} handed on without being chunked")
    if head.chunked and head.content_length is not None:
        raise FuzzFailure("chunked and Content-Length both handed on")
    if isinstance(head, RequestHead) and head.host is not None and b"@" in head.host:
        raise FuzzFailure("userinfo in Host handed on")
    if isinstance(head, ResponseHead) and head.status < 200:
        raise FuzzFailure(f"an interim {head.status} response handed on")
    if isinstance(head, ResponseHead) and any((b < 0x20 and b != 0x09) or b == 0x7F
                                              for b in head.reason):
        raise FuzzFailure(f"a control character in the reason {head.reason!r} handed on")


def _reencoded(message: _Message) -> bytes:
    """A request as the proxy's writer would put it back on the wire."""
    head = message.head
    assert isinstance(head, RequestHead)
    data = encode_head(head.method + b" " + head.target + b" HTTP/" + head.version.encode(),
                       head.headers)
    if head.chunked:
        return data + encode_chunk(bytes(message.body)) + encode_last_chunk(message.trailers)
    return data + bytes(message.body)


def _cuts(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, start = [], 0
    while start < len(data):
        size = rng.choice((1, 2, 3, 7, 16, 64, 500))
        pieces.append(data[start:start + size])
        start += size
    return pieces


def check_one(data: bytes) -> None:
    """Run one fuzz input (see the module note); raise FuzzFailure on a finding."""
    if not data:
        return
    flags, stream = data[0], data[1:]
    response, head_request = bool(flags & 1), bool(flags & 2)
    whole, status = _run([stream], response, head_request)
    for message in whole:
        _check_head_rules(message)
    pieces, piece_status = _run(_cuts(stream, flags >> 2), response, head_request)
    if response:
        # The proxy sends one request at a time upstream, so what follows a
        # complete response is unsolicited: it is the upstream connection's to
        # refuse (issue 15 #1), and what the codec makes of it may depend on
        # where a read ends (after a HEAD response it swaps llhttp instances).
        # Up to the end of the first response, nothing may depend on the cuts.
        if _first(whole, status) != _first(pieces, piece_status):
            raise FuzzFailure("cutting the stream into reads changed the first response")
        return
    # The head cap counts a read that arrives mid-head whole, so near the cap a
    # 431 can come sooner in pieces; anything else must not depend on the cuts.
    if 431 not in (status, piece_status) and (
        (status, _summary(whole)) != (piece_status, _summary(pieces))
    ):
        raise FuzzFailure("cutting the stream into reads changed what came out")
    for message in whole:
        if not message.ended:
            continue
        again, again_status = _run([_reencoded(message)], False, False)
        if again_status is not None or _summary(again) != _summary([message]):
            raise FuzzFailure(f"a request written back out parses differently ({again_status})")


# -- seeds and dictionary ---------------------------------------------------------

_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://web:80/p?q=1 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nX-Sum: 1\r\nHost: evil\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"GET /\r\n\r\n",
]
_RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nGrpc-Status: 0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nread until close",
    b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
]
_TOKENS = [
    b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"GET", b"POST", b"HEAD", b"CONNECT", b"\r\n",
    b"\r\n\r\n", b": ", b"Host", b"Content-Length", b"Transfer-Encoding", b"chunked",
    b"gzip", b"identity", b"Connection", b"close", b"keep-alive", b"Upgrade", b"Expect",
    b"100-continue", b"0\r\n\r\n", b"ffffffffffffffff", b"http://", b"@", b"Trailer",
    b"Authorization", b"200 OK", b"100 Continue", b"101 Switching Protocols", b"204",
    b"304", b";", b",", b" ", b"\t", b"\x00", b"\xff",
]


def write_seeds(corpus: Path) -> None:
    """Seed inputs (each parser, each flag) into ``corpus``."""
    corpus.mkdir(parents=True, exist_ok=True)
    number = 0
    for flags, messages in ((0, _REQUESTS), (1, _RESPONSES), (3, _RESPONSES)):
        for message in messages:
            for cut_seed in (0, 5):
                (corpus / f"seed-{number:03d}").write_bytes(
                    bytes([flags | cut_seed << 2]) + message)
                number += 1


def write_dictionary(path: Path) -> None:
    """libFuzzer's ``-dict`` file: tokens the mutator splices in."""
    lines = ['"' + "".join(f"\\x{b:02x}" for b in token) + '"' for token in _TOKENS]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    import atheris

    atheris.instrument_all()  # the codec, already imported above, and this module
    atheris.Setup(sys.argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
