"""The demo service: its fault injection (seeded) and its Protocol, without sockets."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Callable
from typing import Any, cast

import pytest

from tulle.demo.service import Behaviour, DemoServiceProtocol, ServiceProfile


def test_failure_rate_is_honoured_and_replayable() -> None:
    profile = ServiceProfile("web-3", failure_rate=0.05)
    runs = []
    for _ in range(2):
        behaviour = Behaviour(profile, random.Random(7))
        runs.append([behaviour.decide()[1] for _ in range(10_000)])
    assert runs[0] == runs[1]  # same seed, same fates
    failures = runs[0].count(False)
    # Binomial(10000, 0.05): mean 500, sd ~21.8; 4 sd either side.
    assert 413 <= failures <= 587
    # No latency configured, none added.
    assert Behaviour(profile, random.Random(7)).decide()[0] == 0.0


def test_latency_stays_within_its_jitter_and_centres_on_it() -> None:
    profile = ServiceProfile("web-2", latency=0.060, jitter=0.3)
    behaviour = Behaviour(profile, random.Random(1))
    delays = [behaviour.decide()[0] for _ in range(5_000)]
    assert min(delays) >= 0.060 * 0.7
    assert max(delays) <= 0.060 * 1.3
    assert statistics.fmean(delays) == pytest.approx(0.060, rel=0.02)


def test_a_profile_without_failures_never_fails() -> None:
    behaviour = Behaviour(ServiceProfile("web-1", latency=0.005, jitter=0.5), random.Random(3))
    assert all(ok for _, ok in (behaviour.decide() for _ in range(2_000)))


@pytest.mark.parametrize(
    "bad",
    [
        {"latency": -1.0},
        {"jitter": 1.5},
        {"failure_rate": 2.0},
    ],
)
def test_invalid_profiles_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ServiceProfile("x", **bad)


# --- the Protocol, on a fake transport and a fake loop -------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.written += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class FakeTimer:
    def __init__(self, delay: float, callback: Callable[..., None], args: tuple[Any, ...]):
        self.delay, self.callback, self.args, self.cancelled = delay, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        assert not self.cancelled
        self.callback(*self.args)


class FakeLoop:
    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> FakeTimer:
        timer = FakeTimer(delay, callback, args)
        self.timers.append(timer)
        return timer


class Scripted(Behaviour):
    """A behaviour that plays back given (delay, ok) fates."""

    def __init__(self, name: str, fates: list[tuple[float, bool]]) -> None:
        super().__init__(ServiceProfile(name, failure_rate=1.0))
        self._fates = list(fates)

    def decide(self) -> tuple[float, bool]:
        return self._fates.pop(0)


def connect(behaviour: Behaviour) -> tuple[DemoServiceProtocol, FakeTransport, FakeLoop]:
    loop = FakeLoop()
    protocol = DemoServiceProtocol(behaviour, cast(asyncio.AbstractEventLoop, loop))
    transport = FakeTransport()
    protocol.connection_made(cast(asyncio.Transport, transport))
    return protocol, transport, loop


GET = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"


def test_answers_hello_after_its_delay() -> None:
    protocol, transport, loop = connect(Scripted("web-1", [(0.02, True)]))
    protocol.data_received(GET)
    assert transport.written == b""
    assert [timer.delay for timer in loop.timers] == [0.02]
    loop.timers[0].fire()
    assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.written.endswith(b"\r\n\r\nhello from web-1\n")
    assert b"content-length: 17\r\n" in transport.written
    assert not transport.closed


def test_a_failure_is_a_500() -> None:
    protocol, transport, _ = connect(Scripted("web-3", [(0.0, False)]))
    protocol.data_received(GET)
    assert transport.written.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


def test_pipelined_answers_keep_request_order() -> None:
    protocol, transport, loop = connect(Scripted("web-2", [(0.05, True), (0.0, False)]))
    protocol.data_received(GET + GET)
    # The second answer is ready at once but must wait for the first.
    assert transport.written == b""
    loop.timers[0].fire()
    assert transport.written.index(b"200 OK") < transport.written.index(b"500 Internal")


def test_connection_close_is_honoured() -> None:
    protocol, transport, _ = connect(Scripted("web-1", [(0.0, True)]))
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
    assert b"connection: close\r\n" in transport.written
    assert transport.closed


def test_healthz_ignores_the_fault_injection() -> None:
    protocol, transport, loop = connect(Scripted("web-3", []))  # deciding would fail
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: web\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.written.endswith(b"ok\n")
    assert loop.timers == []


def test_garbage_gets_a_400_and_the_connection_closes() -> None:
    protocol, transport, _ = connect(Scripted("web-1", []))
    protocol.data_received(b"\x00\x01 not http\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert transport.closed


def test_a_lost_connection_cancels_pending_answers() -> None:
    protocol, transport, loop = connect(Scripted("web-2", [(0.05, True)]))
    protocol.data_received(GET)
    protocol.connection_lost(None)
    assert loop.timers[0].cancelled
    assert transport.written == b""
