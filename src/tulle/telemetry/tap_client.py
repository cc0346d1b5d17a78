"""The client side of ``GET /tap``: read the JSON-lines stream of one or more proxies.

``tulle tap``, ``tulle top`` and the dashboard all read tap the same way:
open ``/tap`` on every admin address, decode the chunked body as it arrives,
and yield each event as a dict with an ``admin`` key saying which proxy saw it.
Plain asyncio streams, no HTTP library, so an ``HTTP_PROXY`` set for trying the
mesh does not route the tap through the mesh.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlencode

from tulle.telemetry.scrape import split_address

# A tap line is a few hundred bytes; a chunk or head larger than this is not a proxy.
MAX_LINE_BYTES = 1024 * 1024


class TapRefused(OSError):
    """The admin server answered /tap with an error (e.g. tap not allowed)."""


def tap_path(params: Mapping[str, object]) -> str:
    """``/tap?...`` with the parameters that are set."""
    query = urlencode({k: str(v) for k, v in params.items() if v not in (None, "")})
    return f"/tap?{query}" if query else "/tap"


async def tap_events(
    admin: str, params: Mapping[str, object], connect_timeout: float = 2.0
) -> AsyncIterator[dict[str, object]]:
    """Events from one proxy until it closes the stream or the caller stops iterating."""
    host, port = split_address(admin)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, limit=MAX_LINE_BYTES), connect_timeout
    )
    try:
        writer.write(
            f"GET {tap_path(params)} HTTP/1.1\r\nHost: {admin}\r\n"
            "Accept: application/x-ndjson\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), connect_timeout)
        status_line, _, header_block = head.partition(b"\r\n")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or parts[1] != b"200":
            body = await asyncio.wait_for(reader.read(4096), connect_timeout)
            reason = body.decode("utf-8", "replace").strip() or status_line.decode("latin-1")
            raise TapRefused(f"{admin}: {reason}")
        if b"chunked" not in header_block.lower():
            raise TapRefused(f"{admin}: /tap did not answer with a chunked stream")
        pending = b""
        while True:  # ends when the proxy closes the stream (zero chunk or EOF)
            size_line = await reader.readline()
            if not size_line:
                return
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            pending += await reader.readexactly(size)
            await reader.readexactly(2)  # the chunk's CRLF
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    event = json.loads(line)
                    event["admin"] = admin
                    yield event
    finally:
        writer.close()


async def merged_tap(
    admins: list[str], params: Mapping[str, object]
) -> AsyncIterator[dict[str, object]]:
    """Events from every proxy, interleaved as they arrive.

    A proxy that refuses (tap off) or is unreachable ends the whole stream with
    its error: a tap that silently misses a proxy would mislead.
    """
    queue: asyncio.Queue[dict[str, object] | BaseException | None] = asyncio.Queue(1000)

    async def pump(admin: str) -> None:
        try:
            async for event in tap_events(admin, params):
                await queue.put(event)
            await queue.put(None)
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            await queue.put(exc if isinstance(exc, OSError) else OSError(f"{admin}: {exc}"))

    tasks = [asyncio.create_task(pump(admin)) for admin in admins]
    open_streams = len(tasks)
    try:
        while open_streams:
            item = await queue.get()
            if item is None:
                open_streams -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
