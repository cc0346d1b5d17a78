"""A handler that records what the HTTP/1.1 parsers push, and helpers to drive them.

The parsers call ``on_head``/``on_body``/``on_end``; `Recorder` turns those calls
into `Message` values (body bytes joined, trailers kept apart from headers) and an
ordered event log, so tests compare whole messages and the order calls came in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from tulle.http import Headers, RequestHead, RequestParser, ResponseHead, ResponseParser


@dataclass
class Message:
    """One message as the handler saw it."""

    head: RequestHead | ResponseHead
    body: bytes = b""
    trailers: Headers | None = None
    ended: bool = False


@dataclass
class Recorder:
    """A `MessageHandler` that keeps everything it is told."""

    messages: list[Message] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    interim: list[ResponseHead] = field(default_factory=list)  # 1xx responses
    # Body bytes that arrived when no message was open: always a codec bug.
    stray_body: bytes = b""
    tail: bytes | None = None  # what followed a message that switched protocols

    def on_head(self, head: RequestHead | ResponseHead) -> None:
        self.events.append("head")
        self.messages.append(Message(head))

    def on_body(self, data: bytes) -> None:
        self.events.append("body")
        if self.messages and not self.messages[-1].ended:
            self.messages[-1].body += data
        else:
            self.stray_body += data

    def on_end(self, trailers: Headers | None) -> None:
        self.events.append("end")
        message = self.messages[-1]
        message.trailers = trailers
        message.ended = True

    def on_informational(self, head: ResponseHead) -> None:
        self.events.append("interim")
        self.interim.append(head)

    def on_upgrade(self, head: RequestHead | ResponseHead, tail: bytes) -> None:
        self.events.append("upgrade")
        if not self.messages or self.messages[-1].head is not head:
            self.messages.append(Message(head))  # a CONNECT has no on_head
        self.messages[-1].ended = True
        self.tail = tail

    def summary(self) -> list[tuple[object, ...]]:
        """Every message as plain, comparable values (heads have no ``__eq__``)."""
        return [(head_fields(m.head), m.body, m.trailers, m.ended) for m in self.messages]


_REQUEST_FIELDS = ("method", "target", "version", "headers", "host", "content_length", "chunked",
                   "keep_alive", "expect_continue")
_RESPONSE_FIELDS = ("status", "reason", "version", "headers", "content_length", "chunked",
                    "keep_alive")


def head_fields(head: RequestHead | ResponseHead) -> tuple[object, ...]:
    """What a head says, as comparable values (however it was parsed)."""
    names = _REQUEST_FIELDS if isinstance(head, RequestHead) else _RESPONSE_FIELDS
    return tuple(getattr(head, name) for name in names)


def parse_requests(*pieces: bytes) -> Recorder:
    """Feed ``pieces`` to one RequestParser, in order; return what it pushed."""
    recorder = Recorder()
    parser = RequestParser(recorder)
    for piece in pieces:
        parser.feed(piece)
    return recorder


def parse_responses(*pieces: bytes, eof: bool = False) -> Recorder:
    """Feed ``pieces`` to one ResponseParser (then EOF if asked)."""
    recorder = Recorder()
    parser = ResponseParser(recorder)
    for piece in pieces:
        parser.feed(piece)
    if eof:
        parser.feed_eof()
    return recorder


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (out-of-range and repeated cuts ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def lines(*parts: bytes | str) -> bytes:
    """A message head from its lines, each ended by CRLF, plus the blank line."""
    encoded: Sequence[bytes] = [p.encode() if isinstance(p, str) else p for p in parts]
    return b"".join(p + b"\r\n" for p in encoded) + b"\r\n"
