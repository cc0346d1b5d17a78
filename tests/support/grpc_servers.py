"""Real grpcio servers (and a client helper) for tests: an independent HTTP/2 and gRPC
implementation (gRPC's C core) on both ends of the proxy.

The service needs no generated code: its methods take and return raw bytes
(`grpc.method_handlers_generic_handler` with no (de)serializers). Methods of
``test.Echo``:

``Unary``         answers the server's name (the request is ignored)
``Sleep``         sleeps the request's number of milliseconds, then answers the name
``Fail``          fails with the status code named by the request (b"14": UNAVAILABLE)
``Collect``       client streaming: answers the requests joined by b","
``Count``         server streaming: the request is N; answers N messages b"0" … b"N-1"
``Echo``          bidirectional: answers each request as it comes
``Big``           server streaming: the request is N; answers N messages of 64 KiB
``Ticks``         server streaming: b"tick" every 10 ms until the client cancels

A server made with ``delay`` answers ``Unary`` that much later (a slow endpoint); one
made with ``fail`` answers ``Unary`` with that status code (a broken endpoint).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures

import grpc

SERVICE = "test.Echo"


class EchoServer:
    """One grpcio server on a free loopback port, counting the calls it answers."""

    def __init__(self, name: str, delay: float = 0.0, fail: int = 0, workers: int = 16) -> None:
        self.name = name
        self.delay = delay
        self.fail = fail
        self.calls = 0
        self.metadata: list[tuple[tuple[str, str], ...]] = []
        self.remaining: list[float | None] = []  # each Sleep call's deadline, as it came
        self.cancelled = 0  # Ticks calls that ended because the client went away
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "Sleep": grpc.unary_unary_rpc_method_handler(self._sleep),
            "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
            "Collect": grpc.stream_unary_rpc_method_handler(self._collect),
            "Count": grpc.unary_stream_rpc_method_handler(self._count),
            "Echo": grpc.stream_stream_rpc_method_handler(self._echo),
            "Big": grpc.unary_stream_rpc_method_handler(self._big),
            "Ticks": grpc.unary_stream_rpc_method_handler(self._ticks),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EchoServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)

    def _count_call(self, context: grpc.ServicerContext) -> None:
        self.calls += 1
        self.metadata.append(tuple(context.invocation_metadata()))

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._count_call(context)
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            context.abort(grpc.StatusCode(_code(self.fail)), f"{self.name} fails")
        return self.name.encode()

    def _sleep(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._count_call(context)
        self.remaining.append(context.time_remaining())
        time.sleep(int(request) / 1000.0)
        return self.name.encode()

    def _fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._count_call(context)
        context.abort(grpc.StatusCode(_code(int(request))), f"{self.name} fails")
        raise AssertionError("abort raises")

    def _collect(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        self._count_call(context)
        return b",".join(requests)

    def _count(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._count_call(context)
        for index in range(int(request)):
            yield str(index).encode()

    def _echo(self, requests: Iterator[bytes],
              context: grpc.ServicerContext) -> Iterator[bytes]:
        self._count_call(context)
        yield from requests

    def _ticks(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._count_call(context)
        try:
            for _ in range(3000):  # 30 s unless cancelled
                if not context.is_active():
                    return
                yield b"tick"
                time.sleep(0.01)
        finally:  # ended early: the client went away (or grpc closed the generator)
            self.cancelled += 1

    def _big(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._count_call(context)
        piece = bytes(64 * 1024)
        for _ in range(int(request)):
            yield piece


def _code(number: int) -> tuple[int, str]:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code.value
    raise ValueError(number)


def channel(address: tuple[str, int], authority: str) -> grpc.Channel:
    """One channel to ``address`` (the proxy) whose calls carry ``:authority``."""
    return grpc.insecure_channel(
        f"{address[0]}:{address[1]}", options=[("grpc.default_authority", authority)])


def method(chan: grpc.Channel, name: str, kind: str = "unary_unary"):
    """A callable for ``test.Echo/name`` on ``chan`` (bytes in, bytes out)."""
    return getattr(chan, kind)(f"/{SERVICE}/{name}")
