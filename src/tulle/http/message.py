"""Version-neutral message heads: what a request or response says, as parsed.

The HTTP/1.1 parser fills these in (``h1.parser``); the proxy reads them to
route, balance and forward. Framing facts that only HTTP/1 has (chunked,
keep-alive) are kept here too, because the request path reads them to decide
whether a body can be replayed and whether a connection can be reused.
"""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]


class RequestHead:
    """A parsed request line and headers, as received."""

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "host",
        "keep_alive",
        "method",
        "target",
        "version",
    )

    def __init__(self) -> None:
        self.method: bytes = b""
        self.target: bytes = b""
        self.version: str = "1.1"
        self.headers: Headers = []
        self.host: bytes | None = None
        self.content_length: int | None = None
        self.chunked: bool = False
        self.keep_alive: bool = True
        self.expect_continue: bool = False

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class ResponseHead:
    """A parsed status line and headers, as received."""

    __slots__ = (
        "chunked", "content_length", "headers", "keep_alive", "reason", "status", "version",
    )

    def __init__(self) -> None:
        self.status: int = 0
        self.reason: bytes = b""
        self.version: str = "1.1"
        self.headers: Headers = []
        self.content_length: int | None = None
        self.chunked: bool = False
        self.keep_alive: bool = True
