"""The dashboard's HTTP server: the static page, ``/api/summary`` and ``/api/tap``.

Plain asyncio streams and a minimal HTTP/1.1 reading of GET requests — the
dashboard is a local tool for a handful of browser tabs, so it needs no web
framework. Every response closes its connection (no keep-alive bookkeeping);
``/api/tap`` is the exception in length, not in kind: a chunked stream of JSON
lines fanned in from every proxy's ``/tap`` until the browser goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from tulle.dashboard.sampler import Sampler
from tulle.telemetry.tap_client import merged_tap

log = logging.getLogger("tulle.dashboard")

# A browser's GET head is under 8 KiB; refuse anything far larger.
MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT = 10.0
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
TAP_PARAMS = ("service", "method", "path", "status", "rate")


def _static(name: str) -> bytes:
    return resources.files("tulle.dashboard").joinpath("static", name).read_bytes()


def _response(status: int, content_type: str, body: bytes) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
    return (f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode() + body


class DashboardServer:
    """Answers one request per connection, from the sampler's latest summary."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            url = urlsplit(target)
            if method != "GET":
                writer.write(_response(405, "text/plain", b"GET only\n"))
            elif url.path == "/api/tap":
                await self._tap(url.query, writer)
            elif url.path == "/api/summary":
                body = json.dumps(self.sampler.summary()).encode()
                writer.write(_response(200, "application/json", body))
            elif url.path in STATIC:
                name, content_type = STATIC[url.path]
                writer.write(_response(200, content_type, _static(name)))
            else:
                writer.write(_response(404, "text/plain", b"not found\n"))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _tap(self, query: str, writer: asyncio.StreamWriter) -> None:
        params = {k: v[-1] for k, v in parse_qs(query).items() if k in TAP_PARAMS and v[-1]}
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                     b"Transfer-Encoding: chunked\r\nCache-Control: no-store\r\n\r\n")
        try:
            async for event in merged_tap(self.sampler.admins, params):
                line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
                writer.write(b"%x\r\n%b\r\n" % (len(line), line))
                await writer.drain()  # raises ConnectionError once the browser has gone
        except OSError as exc:
            line = json.dumps({"error": str(exc)}).encode() + b"\n"
            writer.write(b"%x\r\n%b\r\n" % (len(line), line))
        with contextlib.suppress(ConnectionError):
            writer.write(b"0\r\n\r\n")
            await writer.drain()


async def serve_dashboard(sampler: Sampler, host: str, port: int) -> asyncio.Server:
    """Bind the dashboard; the caller runs `sampler.run()` alongside."""
    server = DashboardServer(sampler)
    return await asyncio.start_server(server.handle, host, port, limit=MAX_HEAD_BYTES)
