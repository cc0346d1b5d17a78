"""Version-neutral message heads: what a request or response says, as parsed.

The HTTP/1.1 parser fills these in (``h1.parser``); the proxy reads them to route,
balance and forward. Framing facts that only HTTP/1 has (chunked, keep-alive) are kept
here too, because the request path reads them to decide whether a body can be replayed
and whether a connection can be reused.

A head parsed from the wire keeps its header lines as they came (``lines``) and the
ones a proxy forwards (``forward_lines``: all but the hop-by-hop ones), so forwarding
a head is joining lines, not rebuilding each header; the ``headers`` list of
(name, value) pairs is made only when something asks for it (a route that matches on
a header, a hash on one). Assigning ``headers`` drops the lines: the head is then
written from the list.
"""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]


def split_lines(lines: list[bytes]) -> Headers:
    """(name, value) pairs of raw header lines, values without surrounding white space."""
    return [(name, value.strip(b" \t")) for name, _, value in (line.partition(b":")
                                                                 for line in lines)]


class _Head:
    __slots__ = (
        "_headers",
        "chunked",
        "content_length",
        "forward_lines",
        "keep_alive",
        "lines",
        "version",
    )

    def __init__(self) -> None:
        self.version: str = "1.1"
        self._headers: Headers | None = []
        # As received, and those forwarded (None: write from ``headers`` instead).
        self.lines: list[bytes] | None = None
        self.forward_lines: list[bytes] | None = None
        self.content_length: int | None = None
        self.chunked: bool = False
        self.keep_alive: bool = True

    @property
    def headers(self) -> Headers:
        headers = self._headers
        if headers is None:
            assert self.lines is not None
            headers = self._headers = split_lines(self.lines)
        return headers

    @headers.setter
    def headers(self, value: Headers) -> None:
        self._headers = value
        self.lines = self.forward_lines = None

    def set_lines(self, lines: list[bytes], forward: list[bytes] | None) -> None:
        """The head's header lines as received (``headers`` is made from them on demand)."""
        self._headers = None
        self.lines = lines
        self.forward_lines = forward

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class RequestHead(_Head):
    """A parsed request line and headers, as received."""

    __slots__ = ("expect_continue", "forwarded_for", "grpc", "host", "method", "protocol",
                 "target")

    def __init__(self) -> None:
        super().__init__()
        self.method: bytes = b""
        self.target: bytes = b""
        self.host: bytes | None = None
        self.expect_continue: bool = False
        # Which of ``forward_lines`` ends the X-Forwarded-For chain (-1: none).
        self.forwarded_for = -1
        # A gRPC call (content-type application/grpc; only HTTP/2 carries one).
        self.grpc: bool = False
        # HTTP/2's ``:protocol`` of an extended CONNECT (RFC 8441), e.g. b"websocket".
        self.protocol: bytes | None = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class ResponseHead(_Head):
    """A parsed status line and headers, as received."""

    __slots__ = ("reason", "status")

    def __init__(self) -> None:
        super().__init__()
        self.status: int = 0
        self.reason: bytes = b""
