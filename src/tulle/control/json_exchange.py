"""One JSON request per TLS connection: what the control plane's identity service and
admission webhook both serve.

The request is read whole (head and body) within ``READ_TIMEOUT``, with the body kept up
to a cap the service chooses (past it, ``too_large`` is set and the rest dropped);
each service has one ``POST`` path and ``GET /live``; what is not a well-formed POST
to that path within the cap is answered here (400, 404, 405, 413), the rest by the
service, with a status and a JSON body. The connection then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from tulle.http import Headers, RemoteProtocolError, RequestHead, RequestParser

READ_TIMEOUT: Final = 10.0
REASONS: Final = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                  405: "Method Not Allowed", 413: "Content Too Large"}


class JsonRequest:
    """One request's head and body, collected from the parser (the body up to ``max_body``)."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.head: RequestHead | None = None
        self.body = bytearray()
        self.ended = False
        self.too_large = False

    def on_head(self, head: Any) -> None:
        self.head = head

    def on_body(self, data: bytes) -> None:
        if len(self.body) + len(data) > self.max_body:
            self.too_large = True
        else:
            self.body += data

    def on_end(self, trailers: Headers | None) -> None:
        self.ended = True


@dataclass(frozen=True, slots=True)
class JsonEndpoint:
    """What one service serves: ``POST path`` (answered by ``handle``, with the client's
    address) and ``GET /live`` (its counters, from ``live``)."""

    path: bytes
    posted: str  # what to POST, for the 405 ("a certificate signing request")
    max_body: int
    live: Callable[[], dict[str, Any]]
    handle: Callable[[JsonRequest, Any], Awaitable[tuple[int, dict[str, Any]]]]


async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    endpoint: JsonEndpoint) -> None:
    """Read one request, write its answer's status and JSON, and close."""
    try:
        request = await asyncio.wait_for(_read(reader, endpoint.max_body), READ_TIMEOUT)
        status, body = await _answer(endpoint, request, writer.get_extra_info("peername"))
        data = json.dumps(body).encode()
        writer.write(f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: "
                     f"application/json\r\nContent-Length: {len(data)}\r\n"
                     "Connection: close\r\n\r\n".encode() + data)
        await writer.drain()
    except (TimeoutError, OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _answer(endpoint: JsonEndpoint, request: JsonRequest | None,
                  peer: Any) -> tuple[int, dict[str, Any]]:
    if request is None or request.head is None:
        return 400, {"error": "malformed request"}
    head = request.head
    path = head.target.split(b"?")[0]
    if head.method == b"GET" and path == b"/live":
        return 200, endpoint.live()
    if path != endpoint.path:
        return 404, {"error": "no such path"}
    if head.method != b"POST":
        return 405, {"error": f"POST {endpoint.posted}"}
    if request.too_large:
        return 413, {"error": f"body over {endpoint.max_body} bytes"}
    return await endpoint.handle(request, peer)


async def _read(reader: asyncio.StreamReader, max_body: int) -> JsonRequest | None:
    request = JsonRequest(max_body)
    parser = RequestParser(request)
    while not request.ended:
        data = await reader.read(65536)
        if not data:
            return None
        try:
            parser.feed(data)
        except RemoteProtocolError:
            return None
    return request
