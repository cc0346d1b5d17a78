"""Writing HTTP/1.1: the heads a proxy forwards, chunked framing, reason phrases.

Sans-I/O like the parser: functions from values to bytes. A forwarded head keeps the
end-to-end headers (`tulle.http.headers.end_to_end`) and gets the proxy's own: ``Via``,
``X-Forwarded-For``, its framing (``Transfer-Encoding: chunked`` when the body is
re-chunked) and its ``Connection`` (``close``, or ``keep-alive`` for an HTTP/1.0
client that asked for it). Requests always go out as HTTP/1.1, so one that arrived as
HTTP/1.0 without a ``Host`` gets one (RFC 9112 §3.2).
"""

from __future__ import annotations

import os
from typing import Final

from tulle.http.headers import append_forwarded_for, end_to_end
from tulle.http.message import Headers, RequestHead, ResponseHead


def _instance() -> bytes:
    """This proxy's name in Via: ``TULLE_INSTANCE`` (shared by a proxy's workers), else a
    random one, so a request that comes back to the same proxy is recognised."""
    named = os.environ.get("TULLE_INSTANCE", "")
    return named.encode("ascii", "replace")[:32] if named else os.urandom(4).hex().encode()


INSTANCE: Final = _instance()
# RFC 9110 §7.6.3: received-protocol, received-by, and a comment (which proxy it was).
VIA: Final = b"1.1 tulle (" + INSTANCE + b")"
_VIA: Final = (b"via", VIA)
_CHUNKED: Final = (b"transfer-encoding", b"chunked")
_VIA_LINE: Final = b"\r\nvia: " + VIA
_VIA_AND_FORWARDED_FOR: Final = _VIA_LINE + b"\r\nx-forwarded-for: "  # + the client's IP
_CHUNKED_LINE: Final = b"\r\ntransfer-encoding: chunked"
_CLOSE_LINE: Final = b"\r\nconnection: close"
_KEEP_ALIVE_LINE: Final = b"\r\nconnection: keep-alive"

_REASONS: dict[int, bytes] = {
    100: b"Continue",
    103: b"Early Hints",
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
    505: b"HTTP Version Not Supported",
    508: b"Loop Detected",
}

# Status lines for the statuses with their usual reason, made once.
_REASON_OF: Final = {
    200: b"OK", 201: b"Created", 204: b"No Content", 301: b"Moved Permanently", 302: b"Found",
    304: b"Not Modified", 400: b"Bad Request", 404: b"Not Found", 500: b"Internal Server Error",
    502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
}
_STATUS_LINES: Final = {
    status: b"HTTP/1.1 %d %b" % (status, reason) for status, reason in _REASON_OF.items()
}

CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"")


def encode_head(start_line: bytes, headers: Headers) -> bytes:
    """A message head: the start line, the headers, and the blank line."""
    parts = [start_line]
    for name, value in headers:
        parts.append(name + b": " + value)
    parts.append(b"\r\n")
    return b"\r\n".join(parts)


def request_head(head: RequestHead, client_ip: bytes, authority: bytes) -> bytes:
    """The head of ``head`` as the proxy forwards it; ``authority`` is the Host sent when
    the request had none."""
    forward = head.forward
    if forward is None:
        return _request_head_from_pairs(head, client_ip, authority)
    chain = head.forwarded_for
    if chain >= 0:  # extend the chain that came with the request
        forward = forward[:chain] + b", " + client_ip + forward[chain:]
    # Only the pieces this head needs: join pays per piece, empty ones included.
    parts = [head.method, b" ", head.target, b" HTTP/1.1", forward]
    if head.host is None:
        parts.append(b"\r\nhost: " + authority)
    if chain >= 0:
        parts.append(_VIA_LINE)
    else:
        parts.append(_VIA_AND_FORWARDED_FOR)
        parts.append(client_ip)
    if head.chunked:
        parts.append(_CHUNKED_LINE)
    if head.protocol is not None:
        parts.append(_upgrade_lines(head.protocol))
    parts.append(b"\r\n\r\n")
    return b"".join(parts)


def _upgrade_lines(protocol: bytes) -> bytes:
    """An Upgrade request (or its 101) keeps the hop-by-hop fields that ask for the switch
    (RFC 9110 §7.8): the proxy takes part in it."""
    return b"\r\nconnection: upgrade\r\nupgrade: " + protocol


def _request_head_from_pairs(head: RequestHead, client_ip: bytes, authority: bytes) -> bytes:
    headers = end_to_end(head.headers)
    if head.host is None:
        headers.append((b"host", authority))
    headers.append(_VIA)
    append_forwarded_for(headers, client_ip)
    if head.chunked:
        headers.append(_CHUNKED)
    if head.protocol is not None:
        headers.extend([(b"connection", b"upgrade"), (b"upgrade", head.protocol)])
    return encode_head(head.method + b" " + head.target + b" HTTP/1.1", headers)


def response_head(head: ResponseHead, chunked: bool, close: bool, keep_alive: bool) -> bytes:
    """The head of ``head`` as the proxy forwards it to a client: ``chunked`` when the body
    is re-chunked, ``close`` when the connection ends after it, ``keep_alive`` to say
    that it does not to an HTTP/1.0 client."""
    parts: list[bytes] = []
    add_response_head(parts, head, chunked, close, keep_alive)
    return b"".join(parts)


def add_response_head(out: list[bytes], head: ResponseHead, chunked: bool, close: bool,
                      keep_alive: bool) -> None:
    """`response_head`, as pieces appended to ``out``: a caller that sends the head with
    the body after it joins them all once."""
    status = head.status
    forward = head.forward
    if forward is None:
        forward = b"".join([b"\r\n" + name + b": " + value
                            for name, value in end_to_end(head.headers)])
    reason = head.reason
    status_line = _STATUS_LINES.get(status) if reason == _REASON_OF.get(status) else None
    if status_line is None:
        status_line = b"HTTP/1.1 %d %b" % (status, reason or reason_phrase(status))
    out.append(status_line)
    out.append(forward)
    out.append(_VIA_LINE)
    if chunked:
        out.append(_CHUNKED_LINE)
    if close:
        out.append(_CLOSE_LINE)
    elif keep_alive:
        out.append(_KEEP_ALIVE_LINE)
    out.append(b"\r\n\r\n")


def switching_head(head: ResponseHead, protocol: bytes) -> bytes:
    """A 101 Switching Protocols as forwarded: its headers, ``Via``, and the switch to
    ``protocol`` (the rest of the connection is a tunnel, not HTTP)."""
    forward = head.forward
    if forward is None:
        forward = b"".join([b"\r\n" + name + b": " + value
                            for name, value in end_to_end(head.headers)])
    return b"".join((b"HTTP/1.1 101 ", head.reason or b"Switching Protocols", forward,
                     _VIA_LINE, _upgrade_lines(protocol), b"\r\n\r\n"))


def informational_head(head: ResponseHead) -> bytes:
    """An interim (1xx) response as forwarded: its headers and ``Via`` (RFC 9110 §15.2)."""
    return response_head(head, chunked=False, close=False, keep_alive=False)


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
