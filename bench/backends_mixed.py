"""Backends that behave differently, one port each: delay and jitter, failures, a worker
limit, heavy requests, a cold start — and every answer names its backend.

The balancing suite (``bench/scenarios/balancing.py``) needs endpoints that are fast,
slow, flaky, busy with the odd request 100× heavier than the rest, or cold when they
start, and needs to know which one answered each request without asking it. One
process serves every port (one pid to pin and to stop); each port has its own
:class:`Profile`, given as ``NAME=HOST:PORT`` followed by comma-separated options:

``delay=MS``       answer after this long (default 1)
``jitter=F``       × a uniform draw in [1 - F, 1 + F] per request (default 0)
``fail=P``         answer ``500`` to this share of requests, after the delay
``workers=N``      serve at most N requests at a time, the rest wait in order
                   (default 0: any number, like an asynchronous app)
``heavy=PxK``      this share of requests takes K times as long (``0.01x100``)
``cold=KxS``       for the first S seconds after start-up, K times as long, warming
                   linearly (a JIT, empty caches)

Every answer carries ``X-Bench-Backend: NAME`` (:mod:`bench.named_backend`'s header,
recorded by :mod:`bench.fixed_rate`); the body is ``ok\\n``, or ``no\\n`` with a 500.
Draws come from a generator seeded per port, so a run is repeatable. The delay is a
timer on the event loop (no thread, no busy CPU), so ``workers`` is what makes a port
queue: a request waits for a free worker, then holds it for its delay.

Usage::

    python -m bench.backends_mixed --listen fast=127.0.0.1:9001,delay=6,jitter=0.5 \\
        --listen slow=127.0.0.1:9002,delay=60,jitter=0.3 \\
        --listen flaky=127.0.0.1:9003,delay=6,jitter=0.5,fail=0.05
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import httptools

from bench.named_backend import HEADER


@dataclass(frozen=True)
class Profile:
    """How one port behaves (see the module note for each field)."""

    name: str
    host: str
    port: int
    delay_ms: float = 1.0
    jitter: float = 0.0
    fail: float = 0.0
    workers: int = 0
    heavy_share: float = 0.0
    heavy_factor: float = 1.0
    cold_factor: float = 1.0
    cold_seconds: float = 0.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def spec(self) -> str:
        """The ``--listen`` argument that describes this profile."""
        options = [f"delay={self.delay_ms:g}"]
        if self.jitter:
            options.append(f"jitter={self.jitter:g}")
        if self.fail:
            options.append(f"fail={self.fail:g}")
        if self.workers:
            options.append(f"workers={self.workers}")
        if self.heavy_share:
            options.append(f"heavy={self.heavy_share:g}x{self.heavy_factor:g}")
        if self.cold_seconds:
            options.append(f"cold={self.cold_factor:g}x{self.cold_seconds:g}")
        return f"{self.name}={self.address}," + ",".join(options)


def parse_spec(spec: str) -> Profile:
    """``NAME=HOST:PORT[,option=value...]`` as a :class:`Profile` (ValueError if not)."""
    name, sep, rest = spec.partition("=")
    parts = rest.split(",")
    host, _, port = parts[0].rpartition(":")
    if not sep or not name or not host or not port.isdigit():
        raise ValueError(f"expected NAME=HOST:PORT[,option=value...], got {spec!r}")
    fields: dict[str, float | int] = {}
    for option in parts[1:]:
        key, _, value = option.partition("=")
        if key == "delay":
            fields["delay_ms"] = float(value)
        elif key in ("jitter", "fail"):
            fields[key] = float(value)
        elif key == "workers":
            fields["workers"] = int(value)
        elif key in ("heavy", "cold"):
            share, _, factor = value.partition("x")
            first, second = (("heavy_share", "heavy_factor") if key == "heavy"
                             else ("cold_factor", "cold_seconds"))
            fields[first], fields[second] = float(share), float(factor)
        else:
            raise ValueError(f"unknown option {key!r} in {spec!r}")
    return Profile(name, host, int(port), **fields)  # type: ignore[arg-type]


def answer(name: str, ok: bool) -> bytes:
    """The bytes of one answer of the backend called ``name``."""
    status, body = (b"200 OK", b"ok\n") if ok else (b"500 Internal Server Error", b"no\n")
    return (b"HTTP/1.1 " + status + b"\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n"
            + HEADER.encode() + b": " + name.encode() + b"\r\n\r\n" + body)


class Behaviour:
    """One port's draws, workers and queue; shared by its connections."""

    def __init__(self, profile: Profile, loop: asyncio.AbstractEventLoop) -> None:
        self.profile = profile
        self.loop = loop
        self.started = loop.time()
        self.rng = random.Random(zlib.crc32(profile.name.encode()))
        self.busy = 0
        self.waiting: deque[tuple[float, bool, DelayedAnswer, list[bytes]]] = deque()
        self.ok_bytes = answer(profile.name, True)
        self.failed_bytes = answer(profile.name, False)

    def request(self, connection: DelayedAnswer, slot: list[bytes]) -> None:
        """A request arrived on ``connection``: draw its fate, then serve or queue it; its
        answer goes into ``slot``."""
        p = self.profile
        seconds = p.delay_ms / 1000
        if p.jitter:
            seconds *= self.rng.uniform(1 - p.jitter, 1 + p.jitter)
        if p.heavy_share and self.rng.random() < p.heavy_share:
            seconds *= p.heavy_factor
        if p.cold_seconds:
            warm = min(1.0, (self.loop.time() - self.started) / p.cold_seconds)
            seconds *= p.cold_factor + (1.0 - p.cold_factor) * warm
        ok = self.rng.random() >= p.fail
        if p.workers and self.busy >= p.workers:
            self.waiting.append((seconds, ok, connection, slot))
        else:
            self._serve(seconds, ok, connection, slot)

    def _serve(self, seconds: float, ok: bool, connection: DelayedAnswer,
               slot: list[bytes]) -> None:
        self.busy += 1
        self.loop.call_later(seconds, self._done, ok, connection, slot)

    def _done(self, ok: bool, connection: DelayedAnswer, slot: list[bytes]) -> None:
        self.busy -= 1
        slot.append(self.ok_bytes if ok else self.failed_bytes)
        connection.flush()
        if self.waiting:
            self._serve(*self.waiting.popleft())


class DelayedAnswer(asyncio.Protocol):
    """One connection: each request goes to the port's :class:`Behaviour`; answers leave
    in request order (HTTP/1.1 pipelining), whichever finishes first."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: deque[list[bytes]] = deque()  # one slot per request, empty until done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        slot: list[bytes] = []
        self.pending.append(slot)
        self.behaviour.request(self, slot)

    def flush(self) -> None:
        """Send the answers that are ready, oldest request first."""
        while self.pending and self.pending[0]:
            ready = self.pending.popleft()[0]
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(ready)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(profiles: Sequence[Profile]) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for profile in profiles:
        behaviour = Behaviour(profile, loop)
        servers.append(await loop.create_server(
            lambda b=behaviour: DelayedAnswer(b), profile.host, profile.port,
            reuse_address=True, backlog=1024,
        ))
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backends_mixed", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--listen", action="append", required=True,
                        help="NAME=HOST:PORT[,option=value...] (repeat for more ports)")
    args = parser.parse_args(argv)
    try:
        profiles = [parse_spec(spec) for spec in args.listen]
    except ValueError as error:
        parser.error(str(error))
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(profiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
