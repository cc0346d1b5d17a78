"""An open-loop load generator: a fixed request rate, one record per request, failures included.

hey leaves failed requests (connection refused, reset) out of its CSV, and its
workers send late rather than queue, so neither the failures of a failover nor the
wait they cause would show. This generator sends request *i* at
``start + i / rate`` (checked on 1 ms ticks) whatever happened to earlier ones,
on a pool of keep-alive HTTP/1.1 connections that grows when every connection is
busy, and records for every request:

- ``offset``: when it was due, in seconds after ``start`` (the schedule, not the
  moment it was written: a late send is the generator's delay and counts as wait);
- ``latency``: from ``offset`` until the whole response arrived (or the failure);
- ``status``: the HTTP status, or 0 when there was none;
- ``error``: empty on a response, else ``refused``, ``reset`` (the connection
  broke before the response was complete), ``timeout`` (no response within
  ``--timeout`` of being due; the connection is then closed) or ``client`` (any
  other exception, named in stderr);
- ``backend``: the ``X-Bench-Backend`` response header (:mod:`bench.named_backend`),
  empty if absent.

``start`` is a ``time.monotonic()`` value given on the command line
(``--start-at``), so the scenario that kills and restarts backends shares the
generator's clock (``CLOCK_MONOTONIC`` is system-wide on Linux). The records go to
``--out`` as CSV once the last request has finished. uvloop and httptools, as the
backends and Tulle use.

Usage::

    python -m bench.fixed_rate --url http://127.0.0.1:8080/ --rate 1000 --seconds 30 \\
        --start-at 12345.6 --out records.csv
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httptools

from bench.named_backend import HEADER

TICK_SECONDS = 0.001
DEFAULT_TIMEOUT_SECONDS = 5.0
# Connections opened before the first request, so the first second is not a
# connection storm; more are opened whenever all are busy.
PREOPEN_CONNECTIONS = 16
# Beyond this many connections, a due request fails as ``client`` rather than
# exhausting file descriptors: a proxy that holds 4,000 requests has failed anyway.
MAX_CONNECTIONS = 4000

FIELDS = ("offset", "latency", "status", "error", "backend")


class RequestFailed(Exception):
    """A request got no complete response; ``str()`` is its error class."""


class Connection(asyncio.Protocol):
    """One keep-alive client connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.waiter: asyncio.Future[tuple[int, str]] | None = None
        self.backend = ""
        self._header_name = b""
        self._header_key = HEADER.lower().encode()

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("reset")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self._fail("reset")

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == self._header_key:
            self.backend = value.decode("ascii", "replace")

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        keep = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, self.backend))
        if not keep:
            self.close()

    # -- use
    def send(self, request: bytes) -> asyncio.Future[tuple[int, str]]:
        """Write ``request``; the future gives (status, backend) or raises RequestFailed."""
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.backend = ""
        if self.transport is None or self.closed:
            self._fail("reset")
        else:
            self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: str) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(RequestFailed(error))


@dataclass
class Generator:
    """Sends the schedule and keeps one row per request (see module note)."""

    host: str
    port: int
    request: bytes
    timeout: float
    idle: list[Connection]
    open_connections: int = 0

    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(Connection, self.host, self.port)
        self.open_connections += 1
        return protocol

    def _release(self, conn: Connection) -> None:
        if conn.closed:
            self.open_connections -= 1
        else:
            self.idle.append(conn)

    def _take(self) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
            self.open_connections -= 1
        return None

    async def one(self, due: float) -> tuple[float, int, str, str]:
        """Send one request due at ``due`` (monotonic); returns (done, status, error, backend)."""
        conn = self._take()
        try:
            async with asyncio.timeout_at(_loop_deadline(due + self.timeout)):
                if conn is None:
                    if self.open_connections >= MAX_CONNECTIONS:
                        return time.monotonic(), 0, "client", ""
                    conn = await self.connect()
                status, backend = await conn.send(self.request)
            return time.monotonic(), status, "", backend
        except TimeoutError:
            if conn is not None:
                conn.close()
            return time.monotonic(), 0, "timeout", ""
        except ConnectionRefusedError:
            return time.monotonic(), 0, "refused", ""
        except (RequestFailed, ConnectionError):
            if conn is not None:
                conn.close()
            return time.monotonic(), 0, "reset", ""
        except OSError as exc:
            print(f"fixed_rate: request failed: {exc!r}", file=sys.stderr)
            if conn is not None:
                conn.close()
            return time.monotonic(), 0, "client", ""
        finally:
            if conn is not None:
                self._release(conn)


def _loop_deadline(monotonic_deadline: float) -> float:
    """A ``time.monotonic()`` deadline on the running loop's own clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


async def run(
    url: str, rate: float, seconds: float, start_at: float, timeout: float, host_header: str
) -> list[tuple[float, float, int, str, str]]:
    """Send ``rate × seconds`` requests on schedule; one row per request, in send order."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    request = f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode("ascii")
    generator = Generator(host, port, request, timeout, idle=[])
    for _ in range(PREOPEN_CONNECTIONS):
        with contextlib.suppress(OSError):
            generator.idle.append(await generator.connect())
    total = math.floor(rate * seconds)
    rows: list[tuple[float, float, int, str, str] | None] = [None] * total
    tasks: set[asyncio.Task[None]] = set()

    async def record(index: int, due: float) -> None:
        done, status, error, backend = await generator.one(due)
        rows[index] = (due - start_at, done - due, status, error, backend)

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    sent = 0
    while sent < total:
        now = time.monotonic()
        due_count = min(total, math.floor((now - start_at) * rate) + 1)
        while sent < due_count:
            task = asyncio.create_task(record(sent, start_at + sent / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(TICK_SECONDS)
    while tasks:
        await asyncio.gather(*list(tasks))
    for conn in generator.idle:
        conn.close()
    return [row for row in rows if row is not None]


def write_rows(path: Path, rows: Sequence[tuple[float, float, int, str, str]]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(FIELDS)
        for offset, latency, status, error, backend in rows:
            writer.writerow([f"{offset:.6f}", f"{latency:.6f}", status, error, backend])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fixed_rate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument(
        "--start-at",
        type=float,
        default=None,
        help="time.monotonic() of the first request (default: now + 0.5 s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="a request not answered this long after it was due fails",
    )
    parser.add_argument("--host-header", default="bench")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    start_at = args.start_at if args.start_at is not None else time.monotonic() + 0.5
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    rows = runner(run(args.url, args.rate, args.seconds, start_at, args.timeout, args.host_header))
    write_rows(args.out, rows)
    failed = sum(1 for row in rows if row[3] or not 200 <= row[2] < 300)
    print(f"fixed_rate: {len(rows)} requests, {failed} failed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
