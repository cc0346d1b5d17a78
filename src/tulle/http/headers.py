"""Header rules a proxy applies when it forwards a message (RFC 9110 §7.6).

Hop-by-hop headers describe one connection, not the message, so a proxy drops
them and sets its own framing: the fixed list below plus every header the
``Connection`` header names.
"""

from __future__ import annotations

from tulle.http.h1 import Headers

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


def end_to_end(headers: Headers) -> Headers:
    """The headers of ``headers`` that a proxy forwards."""
    named: set[bytes] | None = None
    kept: Headers = []
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                named = tokens if named is None else named | tokens
            continue
        kept.append((name, value))
    if named:
        kept = [(n, v) for n, v in kept if n.lower() not in named]
    return kept


def append_forwarded_for(headers: Headers, client_ip: bytes) -> None:
    """Add the client's address to X-Forwarded-For (appending to a chain)."""
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"x-forwarded-for":
            headers[index] = (name, value + b", " + client_ip)
            return
    headers.append((b"x-forwarded-for", client_ip))
