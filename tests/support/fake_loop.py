"""A fake event loop and transport: time that moves only when a test says so.

The proxy's parts read time and schedule work through the loop they are given
(STYLE.md, "pass the loop and the clock in"), so a test drives them on this loop
and runs a race — a connect that finishes after its try timed out, a response that
arrives before the request body ends — deterministically, in microseconds, with
no sockets (trio's ``MockClock`` is the model).

- `FakeLoop`: ``time``, ``call_soon``, ``call_later``/``call_at`` (handles that can
  be cancelled), ``create_task`` (steps a coroutine whenever what it awaits
  completes), and ``create_connection``, which parks the connect as a
  `PendingConnect` the test completes with `PendingConnect.accept` or fails with
  `PendingConnect.refuse`. `FakeLoop.advance` moves time and runs what fell due.
- `FakeTransport`: what a Protocol wrote, whether it paused reading, whether it was
  closed or aborted; closing it delivers ``connection_lost`` on the next step of the
  loop, as asyncio does.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any


class FakeHandle:
    """What ``call_soon``/``call_later`` return: can be cancelled, runs at most once."""

    __slots__ = ("_args", "_callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self._callback = callback
        self._args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def run(self) -> None:
        if not self.cancelled:
            self.cancelled = True  # a handle runs once
            self._callback(*self._args)


class FakeFuture:
    """An awaitable the loop or a test completes; a coroutine awaiting it is resumed."""

    def __init__(self, loop: FakeLoop) -> None:
        self._loop = loop
        self._done = False
        self._result: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[FakeFuture], None]] = []

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any) -> None:
        self._finish(result, None)

    def set_exception(self, exception: BaseException) -> None:
        self._finish(None, exception)

    def _finish(self, result: Any, exception: BaseException | None) -> None:
        assert not self._done, "a future completes once"
        self._done, self._result, self._exception = True, result, exception
        for callback in self._callbacks:
            self._loop.call_soon(callback, self)

    def add_done_callback(self, callback: Callable[[FakeFuture], None]) -> None:
        if self._done:
            self._loop.call_soon(callback, self)
        else:
            self._callbacks.append(callback)

    def result(self) -> Any:
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        return self._exception

    def __await__(self) -> Generator[FakeFuture, None, Any]:
        if not self._done:
            yield self
        return self.result()


class FakeTask(FakeFuture):
    """Runs a coroutine on the fake loop; ``cancel`` throws CancelledError into it."""

    def __init__(self, loop: FakeLoop, coro: Coroutine[Any, Any, Any]) -> None:
        super().__init__(loop)
        self._coro = coro
        self._waiting: FakeFuture | None = None
        self._cancelled = False
        loop.call_soon(self._step, None)

    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> bool:
        if self.done():
            return False
        self._loop.call_soon(self._step, _CANCEL)
        return True

    def _step(self, value: Any) -> None:
        if self.done():
            return
        try:
            if value is _CANCEL:
                awaited = self._coro.throw(asyncio.CancelledError())
            elif isinstance(value, FakeFuture):
                exception = value.exception()
                awaited = (
                    self._coro.throw(exception) if exception is not None
                    else self._coro.send(value.result())
                )
            else:
                awaited = self._coro.send(value)
        except StopIteration as stop:
            self.set_result(stop.value)
            return
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                self._cancelled = True
            self.set_exception(exc)
            return
        self._waiting = awaited
        awaited.add_done_callback(self._step)

    def result(self) -> Any:
        if self._cancelled:
            raise asyncio.CancelledError()
        return super().result()

    def exception(self) -> BaseException | None:
        if self._cancelled:
            raise asyncio.CancelledError()
        return super().exception()


_CANCEL = object()


class PendingConnect:
    """A connection being made: the test decides whether and when it succeeds."""

    def __init__(self, loop: FakeLoop, factory: Callable[[], Any], host: str, port: int) -> None:
        self.loop = loop
        self.factory = factory
        self.host = host
        self.port = port
        self.future = FakeFuture(loop)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def accept(self) -> FakeTransport:
        """The endpoint accepts: the protocol is made and sees ``connection_made``."""
        protocol = self.factory()
        transport = FakeTransport(self.loop, peer=(self.host, self.port))
        transport.attach(protocol)
        self.future.set_result((transport, protocol))
        self.loop.run_ready()
        return transport

    def refuse(self) -> None:
        self.fail(ConnectionRefusedError(111, "Connection refused"))

    def fail(self, error: OSError) -> None:
        """The connect fails with ``error`` (refused, or the proxy out of descriptors)."""
        self.future.set_exception(error)
        self.loop.run_ready()


class FakeLoop:
    """The parts of an asyncio loop the proxy uses, with time under the test's control."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._ready: deque[FakeHandle] = deque()
        self._timers: list[tuple[float, int, FakeHandle]] = []
        self._order = itertools.count()
        self.connects: list[PendingConnect] = []

    # -- time --

    def time(self) -> float:
        return self.now

    def clock(self) -> float:
        """The monotonic clock the proxy is given (the same time as the loop's)."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, running every callback that falls due, in order."""
        deadline = self.now + seconds
        self.run_ready()
        while self._timers and self._timers[0][0] <= deadline:
            when, _, handle = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            handle.run()
            self.run_ready()
        self.now = deadline
        self.run_ready()

    # -- scheduling --

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> FakeHandle:
        handle = FakeHandle(self.now, callback, args)
        self._ready.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> FakeHandle:
        return self.call_at(self.now + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> FakeHandle:
        handle = FakeHandle(when, callback, args)
        heapq.heappush(self._timers, (when, next(self._order), handle))
        return handle

    def run_ready(self) -> None:
        """Run callbacks scheduled with ``call_soon`` (and those they schedule)."""
        ready = self._ready
        while ready:
            ready.popleft().run()

    @property
    def pending_timers(self) -> list[FakeHandle]:
        return [h for _, _, h in sorted(self._timers) if not h.cancelled]

    def create_future(self) -> FakeFuture:
        return FakeFuture(self)

    def create_task(self, coro: Coroutine[Any, Any, Any]) -> FakeTask:
        return FakeTask(self, coro)

    async def create_connection(
        self, factory: Callable[[], Any], host: str, port: int, **_: Any
    ) -> tuple[FakeTransport, Any]:
        pending = PendingConnect(self, factory, host, port)
        self.connects.append(pending)
        return await pending.future

    def take_connect(self, address: str | None = None) -> PendingConnect:
        """The oldest connect still waiting (to ``address``, when given)."""
        for pending in self.connects:
            if not pending.future.done() and (address is None or pending.address == address):
                self.connects.remove(pending)
                return pending
        raise AssertionError(f"no connect pending to {address or 'any address'}")


class FakeTransport:
    """A transport that records what its protocol writes and how it is flow-controlled."""

    def __init__(self, loop: FakeLoop, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.loop = loop
        self.peer = peer
        self.protocol: Any = None
        self.written = bytearray()
        self.writes = 0  # how many write calls (a proxy should join small pieces)
        self.reading = True
        self.closed = False  # close() or abort() was called
        self.aborted = False
        self.lost = False  # connection_lost was delivered
        self.buffered = 0  # what get_write_buffer_size reports
        self.eof_written = False  # write_eof() was called (our sending side is shut)

    def attach(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.connection_made(self)

    # -- the asyncio.Transport surface --

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written += data
        self.writes += 1

    def writelines(self, pieces: list[bytes]) -> None:
        self.write(b"".join(pieces))

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def close(self) -> None:
        self._lose(aborted=False)

    def abort(self) -> None:
        self._lose(aborted=True)

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 4140)}.get(name, default)

    # -- what the peer does, driven by the test --

    def receive(self, data: bytes) -> None:
        """The peer sent ``data``: deliver it to the protocol, then run what it queued."""
        assert not self.closed, "data on a closed transport"
        self.protocol.data_received(data)
        self.loop.run_ready()

    def peer_closes(self) -> None:
        """The peer closed its side (EOF), then the connection is gone."""
        if self.closed:
            return
        keep_open = self.protocol.eof_received()
        if not keep_open:
            self._lose(aborted=False)
        self.loop.run_ready()

    def peer_resets(self) -> None:
        if not self.closed:
            self.closed = True
            self.lost = True
            self.protocol.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
        self.loop.run_ready()

    def take(self) -> bytes:
        """What was written since the last take."""
        data = bytes(self.written)
        self.written.clear()
        return data

    def _lose(self, aborted: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.aborted = aborted
        self.loop.call_soon(self._deliver_lost)

    def _deliver_lost(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(None)
