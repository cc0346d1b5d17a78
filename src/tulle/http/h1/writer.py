"""Writing HTTP/1.1: message heads, chunked framing, and the proxy's own answers' reasons.

Sans-I/O like the parser: functions from values to bytes.
"""

from __future__ import annotations

from tulle.http.message import Headers

_REASONS: dict[int, bytes] = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"")


def encode_head(start_line: bytes, headers: Headers) -> bytes:
    """A message head: the start line, the headers, and the blank line."""
    parts = [start_line]
    for name, value in headers:
        parts.append(name + b": " + value)
    parts.append(b"\r\n")
    return b"\r\n".join(parts)


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body; nothing for no data (an empty chunk would end the body)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_last_chunk(trailers: Headers | None) -> bytes:
    """The last chunk of a chunked body, with its trailers if any."""
    if not trailers:
        return LAST_CHUNK
    return b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in trailers) + b"\r\n"
