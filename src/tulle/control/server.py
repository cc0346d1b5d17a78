"""The control plane's destination API: whole configurations streamed to proxies.

A proxy opens ``GET /v1/watch`` and keeps the response open. The answer is a
chunked stream of JSON lines (``application/x-ndjson``, readable with ``curl
-N``): first the current snapshot, then a new snapshot each time the
configuration changes, and a heartbeat every ``HEARTBEAT_SECONDS`` so either
side notices a dead connection. Whole snapshots, never deltas: a proxy that
reconnects, or missed anything, is exactly right again after one line (see
docs/architecture.md for the protocol).

Each snapshot is rendered to bytes once and the same bytes written to every
subscriber, so an update costs one serialisation however many proxies listen.
A subscriber that does not read (its socket buffer past ``MAX_BUFFERED``) is
cut off; it reconnects and gets a fresh snapshot. Also served: ``/v1/snapshot``
(the current snapshot as one JSON document), ``/proxies`` (the connected
proxies and the admin addresses they gave), ``/ready`` and ``/live``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tulle.config import Config
from tulle.discovery.source import ConfigSource
from tulle.http.h1 import LAST_CHUNK, Headers, RequestHead, RequestParser, encode_chunk

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
HEARTBEAT_SECONDS = 5.0
# A snapshot of a few thousand services is a few MB; a reader this far behind is stuck.
MAX_BUFFERED = 32 * 1024 * 1024
MAX_HEAD_WAIT = 10.0


@dataclass(slots=True, eq=False)
class Subscriber:
    """One proxy listening on /v1/watch."""

    writer: asyncio.StreamWriter
    proxy: str
    admin: str | None
    peer: str
    since: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        return {"proxy": self.proxy, "admin": self.admin, "peer": self.peer,
                "connectedAt": self.since}


class _HeadReader:
    def __init__(self) -> None:
        self.head: RequestHead | None = None

    def on_head(self, head: Any) -> None:
        self.head = head

    def on_body(self, data: bytes) -> None:
        pass

    def on_end(self, trailers: Headers | None) -> None:
        pass


class ControlPlane:
    """Runs a discovery source and streams its configurations to subscribed proxies."""

    def __init__(self, source: ConfigSource, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.source = source
        self.heartbeat = heartbeat
        self.version = 0
        self.config: Config | None = None
        self.subscribers: set[Subscriber] = set()
        self.updates_sent = 0
        self._snapshot_line = b""
        self._server: asyncio.Server | None = None
        self._heartbeat: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Read the first configuration, start the source and listen; the bound address."""
        self.publish(await self.source.initial(), "start")
        self.source.start(self.publish, self._source_error)
        self._server = await asyncio.start_server(self._serve, host, port, limit=64 * 1024)
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.call_later(self.heartbeat, self._beat)
        bound = self._server.sockets[0].getsockname()
        log.info("destination API on http://%s:%d (version %d, %d services)",
                 bound[0], bound[1], self.version, len(self.config.services) if self.config else 0)
        return bound[0], bound[1]

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self.source.stop()
        if self._server is not None:
            self._server.close()
        for subscriber in list(self.subscribers):
            subscriber.writer.close()
        self.subscribers.clear()

    # -- publishing --

    def publish(self, config: Config, reason: str) -> None:
        """Make ``config`` the current snapshot and send it to every subscriber."""
        self.config = config
        self.version += 1
        self._snapshot_line = _line({"type": "snapshot", "version": self.version,
                                     "protocol": PROTOCOL_VERSION, "config": config.to_dict()})
        log.info("configuration %d (%s): %d services, %d endpoints", self.version, reason,
                 len(config.services),
                 sum(len(service.endpoints) for service in config.services.values()))
        self._broadcast(self._snapshot_line)

    def _source_error(self, message: str) -> None:
        log.warning("%s", message)

    def _beat(self) -> None:
        self._broadcast(_line({"type": "heartbeat", "version": self.version}))
        self._heartbeat = asyncio.get_running_loop().call_later(self.heartbeat, self._beat)

    def _broadcast(self, line: bytes) -> None:
        chunk = encode_chunk(line)
        for subscriber in list(self.subscribers):
            transport = subscriber.writer.transport
            if transport.is_closing():
                continue
            if transport.get_write_buffer_size() > MAX_BUFFERED:
                log.warning("proxy %s (%s) is not reading; disconnecting it",
                            subscriber.proxy, subscriber.peer)
                transport.abort()
                continue
            subscriber.writer.write(chunk)
        self.updates_sent += len(self.subscribers)

    # -- HTTP --

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(_read_head(reader), MAX_HEAD_WAIT)
            if head is None:
                return
            url = urlsplit(head.target.decode("latin-1"))
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            if head.method != b"GET":
                await _respond(writer, 405, {"error": "only GET is served"})
            elif url.path == "/v1/watch":
                await self._watch(reader, writer, query)
            elif url.path == "/v1/snapshot":
                writer.write(_head(200, "application/json", len(self._snapshot_line)))
                writer.write(self._snapshot_line)
                await writer.drain()
            elif url.path == "/proxies":
                await _respond(writer, 200, {"proxies": [
                    s.describe() for s in sorted(self.subscribers, key=lambda s: s.since)]})
            elif url.path in ("/ready", "/live"):
                await _respond(writer, 200 if self.config else 503, {"version": self.version})
            else:
                await _respond(writer, 404, {"error": f"no such path {url.path}"})
        except (TimeoutError, OSError, ValueError):
            pass
        finally:
            writer.close()

    async def _watch(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     query: dict[str, str]) -> None:
        peer = writer.get_extra_info("peername")
        subscriber = Subscriber(writer, query.get("proxy", "anonymous"), query.get("admin"),
                                f"{peer[0]}:{peer[1]}" if peer else "?")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                     b"Transfer-Encoding: chunked\r\nCache-Control: no-store\r\n\r\n")
        writer.write(encode_chunk(self._snapshot_line))
        self.subscribers.add(subscriber)
        log.info("proxy %s subscribed from %s (admin %s)", subscriber.proxy, subscriber.peer,
                 subscriber.admin)
        try:
            while await reader.read(4096):  # until the proxy goes away; it sends nothing
                pass
        finally:
            self.subscribers.discard(subscriber)
            log.info("proxy %s (%s) unsubscribed", subscriber.proxy, subscriber.peer)
            with contextlib.suppress(Exception):
                writer.write(LAST_CHUNK)


async def _read_head(reader: asyncio.StreamReader) -> RequestHead | None:
    collector = _HeadReader()
    parser = RequestParser(collector)
    while collector.head is None:
        data = await reader.read(4096)
        if not data:
            return None
        parser.feed(data)
    return collector.head


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _head(status: int, content_type: str, length: int) -> bytes:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
              503: "Service Unavailable"}.get(status, "OK")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()


async def _respond(writer: asyncio.StreamWriter, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body, indent=1).encode() + b"\n"
    writer.write(_head(status, "application/json", len(data)) + data)
    await writer.drain()
