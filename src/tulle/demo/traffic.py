"""The demo's steady load: requests at a fixed rate over keep-alive connections.

A mesh with no traffic shows an empty table, so ``tulle demo`` sends its own:
``GET /`` with ``Host: web`` to the proxy's outbound address, ``rps`` times a
second. It behaves like a well-mannered client — a small pool of keep-alive
connections, one request in flight per connection, a timeout per request — so
that what the table shows is the mesh, not the load generator.

The schedule is open-loop (requests go out on the clock, not when the last one
returns), which is what real users do; when every connection is busy the tick
is *skipped* and counted rather than queued, so a slow mesh cannot make the
generator build an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools

__all__ = ["TrafficGenerator", "TrafficStats"]

# Enough connections for ~50 rps against a 60 ms endpoint (≈3 in flight) with
# plenty of headroom, few enough to stay polite on a laptop.
DEFAULT_MAX_CONNECTIONS = 16

# On stop, how long requests already sent may take to come back before their
# connections are closed under them.
DRAIN_SECONDS = 1.0

# If the loop falls this far behind its schedule (a stalled laptop), start
# afresh instead of firing a burst to catch up.
MAX_LAG_SECONDS = 1.0


@dataclass
class TrafficStats:
    """What the generator saw from the client's side (the proxy counts its own)."""

    sent: int = 0
    ok: int = 0  # 2xx
    failed: int = 0  # any other status
    errors: int = 0  # no response: refused, reset or timed out
    skipped: int = 0  # tick dropped: every connection busy


class _ClientConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, generator: TrafficGenerator) -> None:
        self._generator = generator
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes, timeout: float) -> None:
        assert self.transport is not None
        self.busy = True
        self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail()

    def on_message_complete(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.busy = False
        keep_alive = self._parser.should_keep_alive()
        self._generator._answered(self, self._parser.get_status_code(), keep_alive)
        if not keep_alive and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self._fail()
        self.transport = None
        self._generator._lost(self)

    def _timed_out(self) -> None:
        self._timer = None
        self._fail()

    def _fail(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.busy:
            self.busy = False
            self._generator._no_answer()
        if self.transport is not None:
            self.transport.close()


class TrafficGenerator:
    """Sends ``GET /`` with ``Host: <authority>`` to ``host:port`` at ``rps``."""

    def __init__(
        self,
        host: str,
        port: int,
        authority: str,
        rps: float,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rps <= 0:
            raise ValueError("rps must be positive")
        self._host = host
        self._port = port
        self._request = (
            f"GET / HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tulle-demo\r\n\r\n"
        ).encode("ascii")
        self._interval = 1.0 / rps
        self._max_connections = max_connections
        self._timeout = timeout
        self._clock = clock
        self.stats = TrafficStats()
        self._idle: list[_ClientConnection] = []
        self._open: set[_ClientConnection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._closing = False

    async def run(self, stop: asyncio.Event) -> None:
        """Send on schedule until ``stop`` is set, then close every connection."""
        next_at = self._clock()
        try:
            while not stop.is_set():  # bounded: ends when the demo stops
                now = self._clock()
                if now - next_at > MAX_LAG_SECONDS:
                    self.stats.skipped += int((now - next_at) / self._interval)
                    next_at = now
                if now < next_at:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), next_at - now)
                    continue
                self._dispatch()
                next_at += self._interval
            await self._drain()
        finally:
            self.close()

    async def _drain(self) -> None:
        deadline = self._clock() + DRAIN_SECONDS
        while self._clock() < deadline and (  # bounded by the deadline
            self._connecting or any(connection.busy for connection in self._open)
        ):
            await asyncio.sleep(0.02)

    def close(self) -> None:
        """Close every connection; requests still in flight are not counted as errors."""
        self._closing = True
        for task in self._connecting:
            task.cancel()
        for connection in list(self._open):
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()

    def _dispatch(self) -> None:
        while self._idle:
            connection = self._idle.pop()
            if connection.transport is not None and not connection.transport.is_closing():
                self.stats.sent += 1
                connection.send(self._request, self._timeout)
                return
        if len(self._open) + len(self._connecting) >= self._max_connections:
            self.stats.skipped += 1
            return
        task = asyncio.get_running_loop().create_task(self._connect_and_send())
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect_and_send(self) -> None:
        loop = asyncio.get_running_loop()
        self.stats.sent += 1
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _ClientConnection(self), self._host, self._port),
                self._timeout,
            )
        except (OSError, TimeoutError):
            self._no_answer()
            return
        self._open.add(connection)
        connection.send(self._request, self._timeout)

    def _answered(self, connection: _ClientConnection, status: int, keep_alive: bool) -> None:
        if 200 <= status < 300:
            self.stats.ok += 1
        else:
            self.stats.failed += 1
        if keep_alive:
            self._idle.append(connection)

    def _no_answer(self) -> None:
        if not self._closing:
            self.stats.errors += 1

    def _lost(self, connection: _ClientConnection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
