"""An HTTP/1.1 endpoint for the soak: bodies of any size, both framings, an optional delay.

One port per process, so the soak can kill one endpoint (a crash: the kernel resets
its connections) and start it again on the same port. Paths:

``/bytes/N``    N bytes, Content-Length framed
``/chunked/N``  N bytes in 16 KiB chunks
anything else   ``ok``; a request body is read and its length answered

Every answer waits ``--delay-ms`` first (``loop.call_later``, so a slow endpoint
still serves many requests at once). Writes respect the transport's flow control,
so a proxy that stops reading stops this endpoint too.

Usage::

    python -m bench.soak_backend --listen 127.0.0.1:9001 [--delay-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

import httptools

CHUNK = 16 * 1024
FILLER = b"s" * CHUNK


class SoakEndpoint(asyncio.Protocol):
    """One connection: requests answered in order, each after the delay."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.received = 0
        self.queue: list[tuple[bytes, int]] = []
        self.busy = False
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.received = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.received += len(body)

    def on_message_complete(self) -> None:
        self.queue.append((self.url, self.received))
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._answer_all())

    async def _answer_all(self) -> None:
        while self.queue and self.transport is not None:
            url, received = self.queue.pop(0)
            if self.delay:
                await asyncio.sleep(self.delay)
            await self._answer(url, received)
        self.busy = False

    async def _answer(self, url: bytes, received: int) -> None:
        parts = url.split(b"/")
        size = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
        if url.startswith(b"/bytes/"):
            await self._write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            for start in range(0, size, CHUNK):
                await self._write(FILLER[:min(CHUNK, size - start)])
        elif url.startswith(b"/chunked/"):
            await self._write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, size, CHUNK):
                piece = FILLER[:min(CHUNK, size - start)]
                await self._write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await self._write(b"0\r\n\r\n")
        else:
            body = b"ok %d\n" % received
            await self._write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                              % (len(body), body))

    async def _write(self, data: bytes) -> None:
        await self.can_write.wait()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.can_write.set()


async def serve(host: str, port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SoakEndpoint(delay), host, port,
                                      reuse_address=True, backlog=1024)
    await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, int(port), args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
