"""HTTP/2 header lists and the version-neutral heads, both ways (RFC 9113 §8.2, §8.3).

An HTTP/2 head is a list of (name, value) pairs whose pseudo-header fields (``:method``,
``:path``, ``:status`` …) carry what HTTP/1.1 puts in the start line. This module turns
such a list into a `RequestHead` or `ResponseHead` (what the request path reads) and a
head from either version back into a list the proxy can send on an HTTP/2 stream.

The rules applied when a head crosses into HTTP/2 (RFC 9113 §8.2.2, §8.3.1):

- connection-specific fields are removed (``Connection`` and every field it names,
  ``Keep-Alive``, ``Proxy-Connection``, ``Transfer-Encoding``, ``Upgrade``); ``TE`` is
  kept only as ``TE: trailers`` (gRPC needs it);
- ``Host`` becomes ``:authority`` (an absolute-form target, as sent to a forward proxy,
  gives ``:scheme``, ``:authority`` and ``:path``);
- field names are lower-case.

And the other way, from HTTP/2 to a head an HTTP/1.1 side writes: ``:authority`` becomes
``Host`` when the request had none, and cookie crumbs are joined with ``"; "``
(RFC 9113 §8.2.3). A body without ``content-length`` is marked to be sent chunked.
"""

from __future__ import annotations

from typing import Final

from tulle.http.headers import append_forwarded_for, end_to_end
from tulle.http.message import Headers, RequestHead, ResponseHead

VIA: Final = b"2 tulle"
_GRPC: Final = b"application/grpc"
_STATUS_BYTES: Final = {status: str(status).encode() for status in range(100, 600)}


def parse_request(fields: Headers, ended: bool) -> RequestHead:
    """The head of an HTTP/2 request (its pseudo-header fields already checked by h2).

    ``ended``: the HEADERS frame ended the stream, so there is no body.
    """
    head = RequestHead()
    head.version = "2"
    authority: bytes | None = None
    host: bytes | None = None
    cookies: list[bytes] | None = None
    headers: Headers = []
    for name, value in fields:
        if name[:1] == b":":
            if name == b":method":
                head.method = value
            elif name == b":path":
                head.target = value
            elif name == b":authority":
                authority = value
            elif name == b":protocol":
                head.protocol = value
            continue
        if name == b"cookie":
            cookies = [value] if cookies is None else [*cookies, value]
            continue
        if name == b"host":
            host = value
        elif name == b"content-length":
            head.content_length = int(value)
        elif name == b"content-type" and value.startswith(_GRPC):
            head.grpc = True
        headers.append((name, value))
    if cookies is not None:
        headers.append((b"cookie", b"; ".join(cookies)))
    if host is None and authority is not None:
        headers.append((b"host", authority))
    head.host = host if host is not None else authority
    if head.method == b"CONNECT" and not head.target:
        head.target = authority or b""
    head.headers = headers
    # A body of unknown length: an HTTP/1.1 side sends it chunked.
    head.chunked = not ended and head.content_length is None
    return head


def parse_response(fields: Headers) -> ResponseHead:
    head = ResponseHead()
    head.version = "2"
    headers: Headers = []
    for name, value in fields:
        if name == b":status":
            head.status = int(value)
            continue
        if name[:1] == b":":
            continue
        if name == b"content-length":
            head.content_length = int(value)
        headers.append((name, value))
    head.headers = headers
    return head


def parse_trailers(fields: Headers) -> Headers:
    return [(name, value) for name, value in fields if name[:1] != b":"]


def _wants_trailers(headers: Headers) -> bool:
    return any(name.lower() == b"te" and b"trailers" in value.lower() for name, value in headers)


def _split_target(target: bytes) -> tuple[bytes | None, bytes | None, bytes]:
    """(scheme, authority, path) of an absolute-form target; (None, None, target) else."""
    scheme_end = target.find(b"://")
    if scheme_end <= 0 or target[:1] == b"/":
        return None, None, target
    rest = target[scheme_end + 3:]
    slash = rest.find(b"/")
    query = rest.find(b"?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    path = rest[cut:]
    if not path or path[:1] == b"?":
        path = b"/" + path
    return target[:scheme_end].lower(), rest[:cut], path


def request_fields(head: RequestHead, client_ip: bytes, authority: bytes) -> Headers:
    """``head`` as an HTTP/2 header list the proxy sends; ``authority`` is used when the
    request named none."""
    scheme, target_authority, path = _split_target(head.target)
    method = head.method
    fields: Headers = [(b":method", method)]
    host = target_authority or head.host or authority
    if method == b"CONNECT":
        fields.append((b":authority", host))
        protocol = head.protocol
        if protocol is not None:  # extended CONNECT (RFC 8441)
            fields.append((b":protocol", protocol))
            fields.append((b":scheme", scheme or b"http"))
            fields.append((b":path", path))
    else:
        fields.append((b":scheme", scheme or b"http"))
        fields.append((b":authority", host))
        fields.append((b":path", path or b"/"))
    headers = head.headers
    trailers = _wants_trailers(headers)
    rest: Headers = []
    for name, value in end_to_end(headers):
        lname = name.lower()
        if lname == b"host":
            continue
        rest.append((lname, value))
    rest.append((b"via", VIA))
    append_forwarded_for(rest, client_ip)
    if trailers:
        rest.append((b"te", b"trailers"))
    fields.extend(rest)
    return fields


def response_fields(head: ResponseHead) -> Headers:
    """``head`` as the HTTP/2 header list the proxy sends to its client."""
    fields: Headers = [(b":status", _STATUS_BYTES.get(head.status) or str(head.status).encode())]
    fields.extend((name.lower(), value) for name, value in end_to_end(head.headers))
    fields.append((b"via", VIA))
    return fields


def trailer_fields(trailers: Headers) -> Headers:
    return [(name.lower(), value) for name, value in end_to_end(trailers)]
