"""Responses the proxy makes itself, with the ``tulle-error`` header that says why.

The status says what kind of failure it was (DESIGN.md, "Errors a client can
see"); the header says it in words, so that a user reading ``curl -i`` output
knows whether the mesh or the service answered.
"""

from __future__ import annotations

from tulle.http import encode_head, reason_phrase


def _header_safe(text: str) -> bytes:
    """ASCII without control characters, so a reason can't split a header."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text).encode("ascii")


def local_response(status: int, reason: str, close: bool, head_only: bool = False) -> bytes:
    """A complete response from the proxy: status, ``tulle-error`` and a short body."""
    body = reason.encode("utf-8", "replace") + b"\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"tulle-error", _header_safe(reason)),
        (b"via", b"1.1 tulle"),
    ]
    if close:
        headers.append((b"connection", b"close"))
    head = encode_head(b"HTTP/1.1 %d %b" % (status, reason_phrase(status)), headers)
    return head if head_only else head + body
