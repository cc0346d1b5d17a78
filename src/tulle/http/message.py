"""Version-neutral message heads: what a request or response says, as parsed.

The HTTP/1.1 parser fills these in (``h1.parser``); the proxy reads them to route,
balance and forward. Framing facts that only HTTP/1 has (chunked, keep-alive) are kept
here too, because the request path reads them to decide whether a body can be replayed
and whether a connection can be reused.

A head parsed from the wire keeps its header block as it came (``block``: every header
line, each after its ``\\r\\n``) and the block a proxy forwards (``forward``: the same
without the hop-by-hop fields), so forwarding a head is joining a few byte strings, not
rebuilding each header. The ``headers`` list of (name, value) pairs is made only when
something asks for it (a route that matches on a header, a hash on one). Assigning
``headers`` drops the blocks: the head is then written from the list.
"""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]


def split_block(block: bytes) -> Headers:
    """(name, value) pairs of a header block, values without surrounding white space."""
    if not block:
        return []
    lines = block[2:].split(b"\r\n")
    return [(name, value.strip(b" \t")) for name, _, value in (line.partition(b":")
                                                                 for line in lines)]


class Head:
    """What a request head and a response head share (the parser fills it in through this
    type, so that, compiled, it sets the fields directly, not by name)."""

    __slots__ = (
        "_headers",
        "block",
        "chunked",
        "content_length",
        "forward",
        "keep_alive",
        "version",
        "via",
    )

    def __init__(self) -> None:
        self.version: str = "1.1"
        self._headers: Headers | None = None  # made when first asked for (see ``headers``)
        # As received, and as forwarded (None: written from ``headers`` instead).
        self.block: bytes | None = None
        self.forward: bytes | None = None
        self.content_length: int | None = None
        self.chunked: bool = False
        self.keep_alive: bool = True
        self.via: bytes | None = None  # the Via chain it came with (a proxy's loop check)

    @property
    def headers(self) -> Headers:
        headers = self._headers
        if headers is None:
            block = self.block
            headers = self._headers = [] if block is None else split_block(block)
        return headers

    @headers.setter
    def headers(self, value: Headers) -> None:
        self._headers = value
        self.block = self.forward = None

    def set_block(self, block: bytes, forward: bytes) -> None:
        """The head's header block as received and as forwarded (``headers`` is made from
        the first on demand)."""
        self._headers = None
        self.block = block
        self.forward = forward

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class RequestHead(Head):
    """A parsed request line and headers, as received."""

    __slots__ = ("expect_continue", "forwarded_for", "grpc", "host", "method", "protocol",
                 "target")

    def __init__(self) -> None:
        super().__init__()
        self.method: bytes = b""
        self.target: bytes = b""
        self.host: bytes | None = None
        self.expect_continue: bool = False
        # Where, in ``forward``, the X-Forwarded-For chain's last line ends (-1: none).
        self.forwarded_for = -1
        # A gRPC call (content-type application/grpc; only HTTP/2 carries one).
        self.grpc: bool = False
        # HTTP/2's ``:protocol`` of an extended CONNECT (RFC 8441), e.g. b"websocket".
        self.protocol: bytes | None = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class ResponseHead(Head):
    """A parsed status line and headers, as received."""

    __slots__ = ("reason", "status")

    def __init__(self) -> None:
        super().__init__()
        self.status: int = 0
        self.reason: bytes = b""
