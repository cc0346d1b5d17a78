"""Which protocol a connection speaks, from its first bytes (sans-I/O).

A listener that takes whatever the kernel hands it (a transparent proxy, an inbound
side) cannot know from the port what the client will say, so it looks at the first
bytes, as Linkerd does: a TLS ClientHello, the HTTP/2 connection preface, an HTTP/1
request line, or anything else (opaque TCP). `detect` is a pure function of the bytes
read so far; the caller keeps them, calls it after each read, and hands the connection
on once it answers something other than `NEED_MORE`.

What each answer takes, and why:

- **TLS**: a handshake record (``0x16``), a record version ``3.x``, and a handshake of
  type ClientHello (``0x01``) at offset 5 (RFC 8446 §5.1, §4). Six bytes decide.
- **HTTP/2**: the 24-byte preface ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`` (RFC 9113
  §3.4). Bytes that are a prefix of it need more.
- **HTTP/1**: a request line, ``method SP target SP HTTP/1.x`` ending in CRLF (RFC 9112
  §3), within the first `MAX_FIRST_LINE` bytes (linkerd2-proxy's detection buffer is
  8 KiB too). Empty lines before it are allowed (RFC 9112 §2.2). A request line that
  has not ended yet needs more while every byte so far fits one; the first byte that
  cannot (Redis's ``*``, a binary length prefix, a lower-case ``get`` that is
  memcached's) decides *opaque* at once, without waiting.
- **Opaque**: everything else.

A client that sends nothing (a server-speaks-first protocol: SMTP, MySQL) or stalls
mid-line is the caller's to time out; it then asks again with ``final=True``, and the
answer is what the bytes so far look like: a request line begun is HTTP/1 (the HTTP
side's own head timeout answers it), anything else — nothing at all included — opaque.
"""

from __future__ import annotations

from typing import Final

# The answers.
NEED_MORE: Final = 0
HTTP1: Final = 1
HTTP2: Final = 2
TLS: Final = 3
OPAQUE: Final = 4

NAMES: Final = ("need-more", "http/1", "http/2", "tls", "opaque")

# Linkerd's default opaque ports (its chart's ``proxy.opaquePorts``): SMTP, SMTP
# submission, MySQL, MySQL Galera, PostgreSQL, Redis, Elasticsearch transport, memcached.
# Servers speak first on some of them, and none of them is HTTP.
DEFAULT_OPAQUE_PORTS: Final = frozenset({25, 587, 3306, 4444, 5432, 6379, 9300, 11211})

H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# How far a request line is looked for. Longer first lines are HTTP/1 if they look like
# one so far: the HTTP parser then judges them (and its own limits answer 431).
MAX_FIRST_LINE: Final = 8192
# The longest method looked for: the registered ones are at most 17 letters
# (VERSION-CONTROL, RFC 3253); 32 leaves room for extensions.
MAX_METHOD: Final = 32

# RFC 9110 §5.6.2 tchar: what a method is made of.
_TCHAR: Final = frozenset(b"!#$%&'*+-.^_`|~0123456789"
                          b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_VERSIONS: Final = (b"HTTP/1.1", b"HTTP/1.0")
_TLS_HANDSHAKE: Final = 0x16
_TLS_CLIENT_HELLO: Final = 0x01


def detect(data: bytes, final: bool = False) -> int:
    """`HTTP1`, `HTTP2`, `TLS`, `OPAQUE`, or `NEED_MORE` (never when ``final``) for a
    connection whose first bytes are ``data``."""
    if not data:
        return OPAQUE if final else NEED_MORE
    first = data[0]
    if first == _TLS_HANDSHAKE:
        return _tls(data, final)
    if data.startswith(H2_PREFACE):
        return HTTP2
    if not final and first == 0x50 and H2_PREFACE.startswith(data):
        return NEED_MORE
    return _http1(data, final)


def _tls(data: bytes, final: bool) -> int:
    """A TLS record carrying a ClientHello: ``16 03 0x len len 01``."""
    if len(data) >= 2 and data[1] != 0x03:
        return OPAQUE
    if len(data) >= 3 and data[2] > 0x04:
        return OPAQUE
    if len(data) < 6:
        return OPAQUE if final else NEED_MORE
    return TLS if data[5] == _TLS_CLIENT_HELLO else OPAQUE


def _http1(data: bytes, final: bool) -> int:
    start = 0
    while start < len(data) and data[start] in (0x0D, 0x0A):  # empty lines first
        start += 1
    end = data.find(b"\n", start, start + MAX_FIRST_LINE)
    if end >= 0:
        line = data[start:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        return HTTP1 if _request_line(line) else OPAQUE
    begun = data[start:start + MAX_FIRST_LINE]
    if not _request_line_prefix(begun):
        return OPAQUE
    if len(data) - start >= MAX_FIRST_LINE or (final and begun):
        return HTTP1
    return OPAQUE if final else NEED_MORE


def _request_line(line: bytes) -> bool:
    """``method SP target SP HTTP/1.x``, and nothing else."""
    parts = line.split(b" ")
    return (len(parts) == 3 and _method(parts[0]) and _target(parts[1])
            and parts[2] in _VERSIONS)


def _request_line_prefix(begun: bytes) -> bool:
    """Whether ``begun`` (no line end yet) can still become a request line."""
    parts = begun.split(b" ")
    if len(parts) > 3:
        return False
    method = parts[0]
    if len(parts) == 1:
        return len(method) <= MAX_METHOD and all(byte in _TCHAR for byte in method)
    if not _method(method):
        return False
    target = parts[1]
    if len(parts) == 2:
        return not target or _target(target)
    if not _target(target):
        return False
    version = parts[2].removesuffix(b"\r")
    if parts[2].endswith(b"\r") and version not in _VERSIONS:
        return False
    return any(known.startswith(version) for known in _VERSIONS)


def _method(method: bytes) -> bool:
    return 0 < len(method) <= MAX_METHOD and all(byte in _TCHAR for byte in method)


def _target(target: bytes) -> bool:
    """Visible characters only (RFC 9112 §3.2: no white space, no controls)."""
    return bool(target) and all(0x20 < byte < 0x7F or byte >= 0x80 for byte in target)
