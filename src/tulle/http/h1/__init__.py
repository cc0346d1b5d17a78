"""HTTP/1.1, sans-I/O: ``parser`` turns bytes into head/body/end calls over httptools,
``writer`` turns heads and bodies back into bytes."""

from tulle.http.h1.parser import (
    MAX_HEAD_BYTES,
    MessageHandler,
    RequestParser,
    ResponseParser,
)
from tulle.http.h1.writer import (
    CONTINUE,
    LAST_CHUNK,
    encode_chunk,
    encode_head,
    encode_last_chunk,
    reason_phrase,
)
from tulle.http.message import Headers, RequestHead, ResponseHead

__all__ = [
    "CONTINUE",
    "LAST_CHUNK",
    "MAX_HEAD_BYTES",
    "Headers",
    "MessageHandler",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
    "encode_chunk",
    "encode_head",
    "encode_last_chunk",
    "reason_phrase",
]
