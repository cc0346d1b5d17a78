"""gRPC, as a proxy sees it: status codes, classification, retries, deadlines.

gRPC is HTTP/2 with a convention: the call's outcome is the ``grpc-status`` trailer
(or header, in a trailers-only response), not the HTTP status, which is 200 even for a
failed call. ``status`` reads and writes that convention.
"""

from tulle.grpc.status import (
    CODE_NAMES,
    NO_STATUS,
    RETRYABLE_NAMES,
    grpc_status,
    local_fields,
    parse_timeout,
    proxy_error_status,
)

__all__ = [
    "CODE_NAMES",
    "NO_STATUS",
    "RETRYABLE_NAMES",
    "grpc_status",
    "local_fields",
    "parse_timeout",
    "proxy_error_status",
]
