"""HTTP/2, sans-I/O, over the `h2` library's state machine: ``codec`` turns bytes into
per-stream head/data/end/reset calls and back; ``heads`` translates header lists to and
from the version-neutral heads (RFC 9113 §8.2)."""

from tulle.http.h2.codec import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    INTERNAL_ERROR,
    NO_ERROR,
    PREFACE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    H2Codec,
    H2Handler,
)
from tulle.http.h2.heads import (
    parse_request,
    parse_response,
    request_fields,
    response_fields,
    trailer_fields,
)

__all__ = [
    "CANCEL",
    "ENHANCE_YOUR_CALM",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "PREFACE",
    "PROTOCOL_ERROR",
    "REFUSED_STREAM",
    "H2Codec",
    "H2Handler",
    "parse_request",
    "parse_response",
    "request_fields",
    "response_fields",
    "trailer_fields",
]
