"""A tiny HTTP/1.1 backend that answers ``ok`` late: ``--delay-ms`` per port, optionally climbing.

nginx cannot delay a response, and the balancing scenarios need endpoints that are
slow on purpose: one 50 ms late (``slow_endpoint``), or one whose delay climbs from
1 to 40 ms over a run (``degrading_endpoint``). One process serves every port so
there is one pid to pin and to stop; each port has its own delay. The delay is an
asynchronous sleep (``loop.call_later``), so a slow port still serves many
requests at once, like an app waiting on its own database.

Usage::

    python -m bench.backends_slow --listen 127.0.0.1:9001 --listen 127.0.0.1:9002:50
    python -m bench.backends_slow --listen 127.0.0.1:9003:1:40 --ramp-seconds 60

``HOST:PORT[:DELAY_MS[:TO_MS]]``: with ``TO_MS`` the delay climbs linearly from
``DELAY_MS`` to ``TO_MS`` over ``--ramp-seconds``, counted from the last
``GET /__ramp/reset`` on any port (or from start-up), then stays there. uvloop and
httptools when present (they are Tulle's own dependencies), asyncio otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import httptools

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"
RESET_PATH = b"/__ramp/reset"


@dataclass
class Delay:
    """The delay of one port, in seconds, as a function of time since the ramp began."""

    start_ms: float
    to_ms: float | None
    ramp_seconds: float

    def at(self, elapsed: float) -> float:
        if self.to_ms is None:
            return self.start_ms / 1000
        progress = min(1.0, max(0.0, elapsed / self.ramp_seconds))
        return (self.start_ms + (self.to_ms - self.start_ms) * progress) / 1000


class Ramp:
    """When the ramp began (shared by every port)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.began = loop.time()

    def elapsed(self) -> float:
        return self.loop.time() - self.began


class DelayedOk(asyncio.Protocol):
    """One connection: answers each request ``ok`` after the port's delay, in order."""

    def __init__(self, delay: Delay, ramp: Ramp) -> None:
        self.delay = delay
        self.ramp = ramp
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        if self.url == RESET_PATH:
            self.ramp.began = self.ramp.loop.time()
        # Every response is the same bytes, so a pipelined request answered before
        # an earlier, slower one (while the delay climbs) cannot be told apart.
        self.ramp.loop.call_later(self.delay.at(self.ramp.elapsed()), self._answer)

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def parse_listen(spec: str, ramp_seconds: float) -> tuple[str, int, Delay]:
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT[:DELAY_MS[:TO_MS]], got {spec!r}")
    host, port = parts[0], int(parts[1])
    start = float(parts[2]) if len(parts) > 2 else 0.0
    to = float(parts[3]) if len(parts) > 3 else None
    return host, port, Delay(start, to, ramp_seconds)


async def serve(listens: Sequence[tuple[str, int, Delay]]) -> None:
    loop = asyncio.get_running_loop()
    ramp = Ramp(loop)
    servers = []
    for host, port, delay in listens:
        servers.append(await loop.create_server(
            lambda d=delay: DelayedOk(d, ramp), host, port, reuse_address=True, backlog=1024
        ))
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backends_slow", description=__doc__)
    parser.add_argument("--listen", action="append", required=True,
                        help="HOST:PORT[:DELAY_MS[:TO_MS]] (repeat for more ports)")
    parser.add_argument("--ramp-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    listens = [parse_listen(spec, args.ramp_seconds) for spec in args.listen]
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(listens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
