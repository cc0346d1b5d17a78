"""The demo's backend: a tiny HTTP/1.1 service with a chosen latency and failure rate.

``tulle demo`` needs endpoints that behave differently enough for the table to
tell them apart — one fast, one slow, one that fails now and then — without
asking the user to install anything. This is that service: one asyncio
``Protocol`` per connection, httptools for parsing, answering every request
with ``200 hello from <name>`` or, with the configured probability, ``500``.

Theory of operation: each complete request draws its fate (delay, success)
from :class:`Behaviour`, which owns a seeded ``random.Random`` so tests can
replay it. The answer is queued on the connection and released by
``loop.call_later`` after the delay — no Task per request. Answers leave in
request order even when a later request's delay is shorter, because HTTP/1.1
pipelining requires it. ``/healthz`` answers ``200 ok`` at once, untouched by
the injected latency and failures, so health checks see the process, not the
fault injection.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import deque
from dataclasses import dataclass
from typing import cast

import httptools

__all__ = ["Behaviour", "DemoServiceProtocol", "ServiceProfile", "start_service"]

# Requests a client may pipeline before we stop reading from it; a demo
# client never gets near this, and it keeps a misbehaving one bounded.
MAX_PIPELINED = 64

HEALTH_PATH = b"/healthz"


@dataclass(frozen=True)
class ServiceProfile:
    """How one demo instance behaves.

    ``latency`` is the typical response time in seconds; each response takes
    ``latency × uniform(1 − jitter, 1 + jitter)``. ``failure_rate`` is the
    probability (0..1) that a request is answered 500.
    """

    name: str
    latency: float = 0.0
    jitter: float = 0.0
    failure_rate: float = 0.0
    role: str = ""  # a few words for the demo table, e.g. "slow (~60 ms)"

    def __post_init__(self) -> None:
        if self.latency < 0 or not 0 <= self.jitter <= 1 or not 0 <= self.failure_rate <= 1:
            raise ValueError(f"invalid demo service profile: {self}")


class Behaviour:
    """Draws each request's delay and outcome from a profile and a seeded RNG."""

    def __init__(self, profile: ServiceProfile, rng: random.Random | None = None) -> None:
        self.profile = profile
        self._rng = rng if rng is not None else random.Random()

    def decide(self) -> tuple[float, bool]:
        """(delay in seconds, whether the request succeeds) for the next request."""
        profile = self.profile
        delay = profile.latency
        if profile.jitter and delay:
            delay *= self._rng.uniform(1 - profile.jitter, 1 + profile.jitter)
        ok = self._rng.random() >= profile.failure_rate
        return delay, ok


def _response(status: bytes, body: bytes, keep_alive: bool) -> bytes:
    connection = b"keep-alive" if keep_alive else b"close"
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain\r\ncontent-length: "
        + str(len(body)).encode() + b"\r\nconnection: " + connection + b"\r\n\r\n" + body
    )


class _Answer:
    """One queued response: its bytes, and whether its delay has passed."""

    __slots__ = ("close_after", "data", "ready", "timer")

    def __init__(self, data: bytes, close_after: bool) -> None:
        self.data = data
        self.close_after = close_after
        self.ready = False
        self.timer: asyncio.TimerHandle | None = None


class DemoServiceProtocol(asyncio.Protocol):
    """One connection to a demo service."""

    def __init__(self, behaviour: Behaviour, loop: asyncio.AbstractEventLoop) -> None:
        # Per connection.
        self._behaviour = behaviour
        self._loop = loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[_Answer] = deque()
        self._paused = False
        # Per request.
        self._url = b""

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._queue_answer(_response(b"400 Bad Request", b"bad request\n", False), 0.0, True)

    def connection_lost(self, exc: Exception | None) -> None:
        for answer in self._queue:
            if answer.timer is not None:
                answer.timer.cancel()
        self._queue.clear()
        self._transport = None

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_message_complete(self) -> None:
        keep_alive = self._parser.should_keep_alive()
        if self._url.split(b"?", 1)[0] == HEALTH_PATH:
            self._queue_answer(_response(b"200 OK", b"ok\n", keep_alive), 0.0, not keep_alive)
            return
        delay, ok = self._behaviour.decide()
        name = self._behaviour.profile.name.encode()
        if ok:
            answer = _response(b"200 OK", b"hello from " + name + b"\n", keep_alive)
        else:
            body = b"failed on purpose by " + name + b"\n"
            answer = _response(b"500 Internal Server Error", body, keep_alive)
        self._queue_answer(answer, delay, not keep_alive)

    # sending, in request order

    def _queue_answer(self, data: bytes, delay: float, close_after: bool) -> None:
        if self._transport is None:
            return
        answer = _Answer(data, close_after)
        self._queue.append(answer)
        if delay > 0:
            answer.timer = self._loop.call_later(delay, self._release, answer)
        else:
            answer.ready = True
            self._flush()
        if len(self._queue) >= MAX_PIPELINED and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def _release(self, answer: _Answer) -> None:
        answer.ready = True
        answer.timer = None
        self._flush()

    def _flush(self) -> None:
        transport = self._transport
        while self._queue and self._queue[0].ready and transport is not None:
            answer = self._queue.popleft()
            transport.write(answer.data)
            if answer.close_after:
                transport.close()
                self.connection_lost(None)
                return
        if self._paused and transport is not None and len(self._queue) < MAX_PIPELINED // 2:
            self._paused = False
            transport.resume_reading()


async def start_service(
    profile: ServiceProfile, sock: socket.socket, seed: int | None = None
) -> asyncio.Server:
    """Serve ``profile`` on an already bound socket (bound early, so no one takes the port)."""
    loop = asyncio.get_running_loop()
    behaviour = Behaviour(profile, random.Random(seed))
    return await loop.create_server(lambda: DemoServiceProtocol(behaviour, loop), sock=sock)
