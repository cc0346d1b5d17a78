"""A minimal asyncio HTTP/1.1 client for long-lived streaming responses.

A proxy subscribed to Tulle's control plane reads a stream of JSON lines over a
chunked response. It needs a few things — one request per connection, the response
head, then the body line by line as it arrives, with a deadline on every read so a
silent peer is noticed — and nothing a general-purpose client adds, so the proxy
keeps its imports light. (The Kubernetes API is reached through the
``kubernetes_asyncio`` client instead: ``tulle.discovery.kubernetes_api``.)
Parsing is ``tulle.http``'s sans-I/O codec (httptools underneath).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl as ssl_module
from collections.abc import AsyncIterator
from typing import Any

from tulle.http.errors import RemoteProtocolError
from tulle.http.h1 import Headers, RequestHead, ResponseHead, ResponseParser

READ_SIZE = 64 * 1024


class HttpStreamError(Exception):
    """The connection failed, timed out, or the peer spoke bad HTTP."""


class _Collector:
    """Receives parser events: the head once, then body pieces, then the end."""

    def __init__(self) -> None:
        self.head: ResponseHead | None = None
        self.pieces: list[bytes] = []
        self.ended = False

    def on_head(self, head: RequestHead | ResponseHead) -> None:
        assert isinstance(head, ResponseHead)
        self.head = head

    def on_body(self, data: bytes) -> None:
        self.pieces.append(data)

    def on_informational(self, head: ResponseHead) -> None:
        pass  # interim responses say nothing a stream reader needs

    def on_end(self, trailers: Headers | None) -> None:
        self.ended = True


class StreamingResponse:
    """One response, read incrementally. Always ``close()`` it (or use ``async with``)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, read_timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._collector = _Collector()
        self._parser = ResponseParser(self._collector)
        self.read_timeout = read_timeout
        self.status = 0
        self.headers: Headers = []

    async def _read_head(self) -> None:
        while self._collector.head is None:
            await self._pump()
        self.status = self._collector.head.status
        self.headers = self._collector.head.headers

    async def _pump(self) -> bool:
        """Read once from the socket into the parser; False at the end of the body."""
        if self._collector.ended:
            return False
        try:
            data = await asyncio.wait_for(self._reader.read(READ_SIZE), self.read_timeout)
        except TimeoutError:
            raise HttpStreamError(f"no data for {self.read_timeout:g}s") from None
        except (OSError, ssl_module.SSLError) as exc:
            raise HttpStreamError(f"connection lost: {exc}") from None
        try:
            if not data:
                if not self._parser.feed_eof() and not self._collector.ended:
                    raise HttpStreamError("connection closed mid-response")
                return not self._collector.ended or bool(self._collector.pieces)
            self._parser.feed(data)
        except RemoteProtocolError as exc:
            raise HttpStreamError(str(exc)) from None
        return True

    def _take(self) -> bytes:
        data = b"".join(self._collector.pieces)
        self._collector.pieces.clear()
        return data

    async def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole body (for ordinary, non-streaming requests)."""
        body = bytearray()
        while True:
            body += self._take()
            if len(body) > limit:
                raise HttpStreamError(f"response body over {limit} bytes")
            if self._collector.ended:
                return bytes(body)
            await self._pump()

    async def json(self) -> Any:
        try:
            return json.loads(await self.read())
        except ValueError as exc:
            raise HttpStreamError(f"response is not JSON: {exc}") from None

    async def lines(self) -> AsyncIterator[bytes]:
        """Each non-empty line of the body as it arrives; ends when the body does."""
        pending = b""
        while True:
            pending += self._take()
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if line.strip():
                    yield line
            if self._collector.ended:
                if pending.strip():
                    yield pending
                return
            await self._pump()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()

    async def __aenter__(self) -> StreamingResponse:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


async def request(
    host: str,
    port: int,
    method: str,
    target: str,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
) -> StreamingResponse:
    """Send one request (``Connection: close``) and return once its head has arrived."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=ssl, server_hostname=server_hostname if ssl else None,
                limit=READ_SIZE,
            ),
            connect_timeout,
        )
    except TimeoutError:
        raise HttpStreamError(f"connect to {host}:{port} timed out") from None
    except (OSError, ssl_module.SSLError) as exc:
        raise HttpStreamError(f"cannot connect to {host}:{port}: {exc}") from None
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    response = StreamingResponse(reader, writer, read_timeout)
    try:
        writer.write(head + (body or b""))
        await asyncio.wait_for(writer.drain(), connect_timeout)
        await response._read_head()
    except TimeoutError:
        response.close()
        raise HttpStreamError(f"{host}:{port} did not answer in time") from None
    except (OSError, ssl_module.SSLError) as exc:
        response.close()
        raise HttpStreamError(f"connection to {host}:{port} lost: {exc}") from None
    except BaseException:
        response.close()
        raise
    return response
