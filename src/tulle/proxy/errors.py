"""Every answer the proxy makes itself, in one table: code, status, and why in words.

When the proxy answers a request instead of an endpoint, the status says what kind of
failure it was (DESIGN.md, "Errors a client can see"), the ``tulle-error`` header says
why in words (so a user reading ``curl -i`` knows whether the mesh or the service
answered), and the code labels the response in the metrics (``error="…"``). Each kind
of failure is one `ProxyError` below; nothing else in the proxy spells a status, a
label or a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tulle.http import encode_head, reason_phrase
from tulle.http.h1.writer import VIA


@dataclass(frozen=True, slots=True)
class ProxyError:
    """One kind of failure the proxy answers itself."""

    code: str  # the metrics label, e.g. error="connect-refused"
    status: int  # what the client gets, when nothing of the response has gone yet
    text: str  # the tulle-error text, a format string over the details

    def reason(self, **details: object) -> str:
        return self.text.format(**details)


# Routing (404, 500).
UNKNOWN_SERVICE: Final = ProxyError(
    "unknown-service", 404, "no service known for authority {authority!r}"
)
NO_ROUTE: Final = ProxyError("no-route", 404, "no route of {service} matches the request")
NO_BACKEND: Final = ProxyError("no-backend", 500, "route {route} has no backend")
# RFC 5842's 508 (Loop Detected), as proxies use it for a request that came back to them.
LOOP_DETECTED: Final = ProxyError(
    "loop-detected", 508, "the request came back to this proxy (Via: {via}): a route loops"
)
# No endpoint to send to (503).
NO_ENDPOINTS: Final = ProxyError("no-endpoints", 503, "no endpoint available for {service}")
TOO_MANY_WAITING: Final = ProxyError("load-shed", 503, "too many requests waiting for {service}")
ENDPOINT_FULL: Final = ProxyError("load-shed", 503, "{endpoint} is at its request limit")
FAIL_FAST: Final = ProxyError("fail-fast", 503, "no endpoint of {service} became available in time")
# The endpoint could not be reached or spoke badly (502).
CONNECT_REFUSED: Final = ProxyError("connect-refused", 502, "{endpoint} refused the connection")
CONNECT_TIMEOUT: Final = ProxyError("connect-timeout", 502, "connecting to {endpoint} timed out")
CONNECT_FAILED: Final = ProxyError(
    "connect-failed", 502, "connecting to {endpoint} failed: {detail}"
)
LOCAL_EXHAUSTION: Final = ProxyError(
    "local-exhaustion", 503, "the proxy is out of {detail}; {endpoint} was not tried"
)
UPSTREAM_RESET: Final = ProxyError(
    "upstream-reset", 502, "{endpoint} closed the connection before responding"
)
BAD_RESPONSE: Final = ProxyError(
    "bad-response", 502, "{endpoint} sent a malformed response: {detail}"
)
UPSTREAM_STATUS: Final = ProxyError(
    "upstream-status", 502, "the endpoint answered {status} and no retry could save it"
)
# Time ran out (504).
PER_TRY_TIMEOUT: Final = ProxyError(
    "per-try-timeout", 504, "no response within the per-try timeout ({timeout}s)"
)
REQUEST_TIMEOUT: Final = ProxyError(
    "request-timeout", 504, "no response within the request timeout ({timeout}s)"
)
# Inbound policy (403, 429).
FORBIDDEN: Final = ProxyError("forbidden", 403, "{client} may not reach {server} ({reason})")
RATE_LIMITED: Final = ProxyError("rate-limited", 429,
                          "over the {limit} rate limit of {server} ({rate} requests per second)")
# The client's fault (4xx); the status is the codec's (400, 408, 431, 505 …).
MALFORMED_REQUEST: Final = ProxyError("malformed-request", 400, "{detail}")


def _header_safe(text: str) -> bytes:
    """ASCII without control characters, so a reason can't split a header."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text).encode("ascii")


def local_parts(status: int, reason: str, retry_after: int = 0
                ) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers (lower-case) and body of a response from the proxy: ``tulle-error``
    and a short text body saying why (and ``retry-after``, in seconds, when given)."""
    body = reason.encode("utf-8", "replace") + b"\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"tulle-error", _header_safe(reason)),
        (b"via", VIA),
    ]
    if retry_after:
        headers.append((b"retry-after", b"%d" % retry_after))
    return headers, body


def local_response(status: int, reason: str, close: bool, head_only: bool = False,
                   retry_after: int = 0) -> bytes:
    """A complete HTTP/1.1 response from the proxy: status, ``tulle-error``, a short body."""
    headers, body = local_parts(status, reason, retry_after)
    if close:
        headers.append((b"connection", b"close"))
    head = encode_head(b"HTTP/1.1 %d %b" % (status, reason_phrase(status)), headers)
    return head if head_only else head + body
