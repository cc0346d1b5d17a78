"""gRPC status codes: reading them, classifying them, and the proxy's own answers.

Classification follows Linkerd (linkerd2-proxy's response classifier): a response that
carries ``grpc-status`` is classified by it — ``0`` (OK) is a success, any other code a
failure — whatever its HTTP status; a gRPC call whose response ends without one is a
failure too.

When the proxy answers a gRPC call itself (no endpoint, a timeout, a refused
connection), the answer is what a gRPC client understands: HTTP 200, a trailers-only
response whose ``grpc-status`` says what happened and whose ``grpc-message`` says why
(Linkerd answers the same way): 503 and 502 become UNAVAILABLE, so clients retry them;
504 DEADLINE_EXCEEDED; 404 UNIMPLEMENTED; 4xx INTERNAL.

Deadlines: ``grpc-timeout`` is a number and a unit (``H M S m u n``, at most 8 digits,
gRPC's "PROTOCOL-HTTP2" spec).
"""

from __future__ import annotations

from typing import Final

from tulle.http.message import Headers, RequestHead

NO_STATUS: Final = -1  # not a gRPC response, or no grpc-status yet

# The codes, by number (grpc/doc/statuscodes.md); the names are the retry conditions'.
CODE_NAMES: dict[int, str] = {
    0: "ok", 1: "cancelled", 2: "unknown", 3: "invalid-argument", 4: "deadline-exceeded",
    5: "not-found", 6: "already-exists", 7: "permission-denied", 8: "resource-exhausted",
    9: "failed-precondition", 10: "aborted", 11: "out-of-range", 12: "unimplemented",
    13: "internal", 14: "unavailable", 15: "data-loss", 16: "unauthenticated",
}
# The codes Linkerd lets a route retry (retry.linkerd.io/grpc), by their names.
RETRYABLE_NAMES: tuple[str, ...] = (
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
)
UNAVAILABLE: Final = 14
DEADLINE_EXCEEDED: Final = 4
UNIMPLEMENTED: Final = 12
INTERNAL: Final = 13

_TIMEOUT_UNITS: Final = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def grpc_status(headers: Headers | None) -> int:
    """The ``grpc-status`` in ``headers`` (trailers, or a trailers-only head), or -1."""
    if headers:
        for name, value in headers:
            if name == b"grpc-status" or (len(name) == 11 and name.lower() == b"grpc-status"):
                try:
                    return int(value)
                except ValueError:
                    return INTERNAL  # not a number: the call failed (as gRPC clients read it)
    return NO_STATUS


def parse_timeout(value: bytes) -> float | None:
    """Seconds of a ``grpc-timeout`` value (``100m`` is 0.1), or None if malformed."""
    digits, unit = value[:-1], value[-1:]
    if not digits.isdigit() or len(digits) > 8 or unit not in _TIMEOUT_UNITS:
        return None
    return int(digits) * _TIMEOUT_UNITS[unit]


def format_timeout(seconds: float) -> bytes:
    """A ``grpc-timeout`` value for ``seconds`` (milliseconds, rounded up)."""
    return b"%dm" % max(1, int(seconds * 1000 + 0.999))


def call_deadline(head: RequestHead, route_timeout: float | None) -> float | None:
    """A gRPC call's timeout: its ``grpc-timeout``, capped by the route's timeout. When
    the route's is sooner, the header sent on says so, so the server stops in time too."""
    headers = head.headers
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"grpc-timeout":
            asked = parse_timeout(value)
            if asked is None:
                return route_timeout  # malformed: ignored, as grpc-go does
            if route_timeout is None or asked <= route_timeout:
                return asked
            headers[index] = (name, format_timeout(route_timeout))
            return route_timeout
    if route_timeout is not None:
        headers.append((b"grpc-timeout", format_timeout(route_timeout)))
    return route_timeout


def proxy_error_status(http_status: int) -> int:
    """The grpc-status of an answer the proxy makes with ``http_status``."""
    if http_status in (502, 503):
        return UNAVAILABLE
    if http_status == 504:
        return DEADLINE_EXCEEDED
    if http_status == 404:
        return UNIMPLEMENTED
    return INTERNAL


def _percent_encode(text: str) -> bytes:
    """grpc-message is percent-encoded UTF-8 (printable ASCII but ``%`` as is)."""
    out = bytearray()
    for byte in text.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def local_fields(http_status: int, reason: str) -> Headers:
    """A trailers-only gRPC response (an HTTP/2 header list) for a proxy-made answer."""
    return [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"%d" % proxy_error_status(http_status)),
        (b"grpc-message", _percent_encode(reason)),
        (b"tulle-error", _percent_encode(reason)),
    ]
