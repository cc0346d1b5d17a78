"""HTTP codecs: sans-I/O, bytes in and calls out, no sockets.

``message`` holds the version-neutral heads; ``h1`` parses and writes HTTP/1.1
over httptools; ``headers`` holds the rules a
proxy applies when forwarding.
"""

from tulle.http.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from tulle.http.h1 import (
    CONTINUE,
    MAX_HEAD_BYTES,
    MessageHandler,
    RequestParser,
    ResponseParser,
    encode_chunk,
    encode_head,
    encode_last_chunk,
    reason_phrase,
)
from tulle.http.headers import (
    HOP_BY_HOP,
    append_forwarded_for,
    end_to_end,
    permitted_in_trailers,
)
from tulle.http.message import Headers, RequestHead, ResponseHead

__all__ = [
    "CONTINUE",
    "HOP_BY_HOP",
    "MAX_HEAD_BYTES",
    "Headers",
    "LocalProtocolError",
    "MessageHandler",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
    "append_forwarded_for",
    "encode_chunk",
    "encode_head",
    "encode_last_chunk",
    "end_to_end",
    "permitted_in_trailers",
    "reason_phrase",
]
