"""Header rules a proxy applies when it forwards a message (RFC 9110 §7.6, §6.5.1).

Hop-by-hop headers describe one connection, not the message, so a proxy drops
them and sets its own framing: the fixed list below plus every header the
``Connection`` header names. Trailers are held to a stricter rule: a field that
must be known before the content is read (framing, routing, credentials,
request modifiers, response controls, content format) means nothing, or
something dangerous, after it, so it is not forwarded in a trailer section.
"""

from __future__ import annotations

from typing import Final

from tulle.http.message import Headers

# RFC 9110 §7.6.1 names Connection, Proxy-Connection, Keep-Alive, TE,
# Transfer-Encoding and Upgrade; Proxy-Authenticate/-Authorization are for the
# proxy itself (RFC 9110 §11.7). Expect is dropped because Tulle answers
# "100 Continue" itself, as Envoy does by default.
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"expect",
    }
)

# Tokens of a Connection header that do not name a header to drop: options, the
# hop-by-hop names dropped anyway, and the headers a proxy must never let a peer
# remove — Content-Length and Host — since dropping them would change the
# message's framing or destination (request smuggling).
_CONNECTION_OPTIONS: Final = HOP_BY_HOP | {b"close", b"", b"content-length", b"host"}


def end_to_end(headers: Headers) -> Headers:
    """The headers of ``headers`` that a proxy forwards."""
    named: set[bytes] | None = None
    kept: Headers = []
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                for token in value.split(b","):
                    token = token.strip().lower()
                    # "close" and "keep-alive" are options, not header names to drop.
                    if token not in _CONNECTION_OPTIONS:
                        named = {token} if named is None else named | {token}
            continue
        kept.append((name, value))
    if named:
        kept = [(n, v) for n, v in kept if n.lower() not in named]
    return kept


def append_forwarded_for(headers: Headers, client_ip: bytes) -> None:
    """Add the client's address to X-Forwarded-For (appending to a chain).

    The chain may span several header lines; its end is the last one.
    """
    for index in range(len(headers) - 1, -1, -1):
        name, value = headers[index]
        if name.lower() == b"x-forwarded-for":
            headers[index] = (name, value + b", " + client_ip)
            return
    headers.append((b"x-forwarded-for", client_ip))


# RFC 9110 §6.5.1 names the classes of field that cannot be trailers, because a
# recipient needs them before the content. Class by class, the fields:
_NOT_TRAILERS: frozenset[bytes] = HOP_BY_HOP | frozenset(
    {
        # message framing (RFC 9112 §6; Trailer itself announces trailers)
        b"content-length", b"transfer-encoding", b"trailer",
        # routing: where the message goes and whom it came through (RFC 9110
        # §7.2, §7.6.2, §7.6.3; RFC 7239; the de facto X-Forwarded-* family, which
        # backends trust for the client's address)
        b"host", b"via", b"max-forwards", b"forwarded",
        b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
        # request modifiers: controls (RFC 9110 §10.1, RFC 9111 §5) and
        # conditionals (RFC 9110 §13)
        b"cache-control", b"pragma", b"range", b"if-match", b"if-none-match",
        b"if-modified-since", b"if-unmodified-since", b"if-range",
        # authentication and state (RFC 9110 §11, RFC 6265)
        b"authorization", b"www-authenticate", b"cookie", b"set-cookie",
        # response control data (RFC 9110 §10.2, §6.6.1, §12.5.5; RFC 9111 §5)
        b"age", b"expires", b"date", b"location", b"retry-after", b"vary", b"allow",
        b"accept-ranges",
    }
)


def permitted_in_trailers(lname: bytes) -> bool:
    """May a trailer field named ``lname`` (lower-case) be forwarded?

    Everything describing the content's format is a ``Content-*`` field
    (Content-Type, -Encoding, -Range, …), refused by its prefix.
    """
    return lname not in _NOT_TRAILERS and not lname.startswith(b"content-")
