"""Header rules a proxy applies when it forwards a message (RFC 9110 §7.6).

Hop-by-hop headers describe one connection, not the message, so a proxy drops
them and sets its own framing: the fixed list below plus every header the
``Connection`` header names.
"""

from __future__ import annotations

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
_CONNECTION_OPTIONS = HOP_BY_HOP | {b"close", b"", b"content-length", b"host"}


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
