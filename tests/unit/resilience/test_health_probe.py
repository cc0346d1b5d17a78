"""probe: one active health check against a real socket on 127.0.0.1.

Every server here is a tiny asyncio server on an ephemeral port, and every
check has a short timeout, so a broken probe fails the test instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from tulle.resilience import ProbeSpec
from tulle.resilience.health import probe

HOST = "127.0.0.1"
TIMEOUT = 2.0  # generous for a loaded CI machine; the answers here take microseconds
HTTP = ProbeSpec(http_path="/healthz", host_header="svc.test", timeout=TIMEOUT)
TCP = ProbeSpec(http_path=None, host_header="svc.test", timeout=TIMEOUT)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


def answering(response: bytes, seen: list[bytes] | None = None) -> Handler:
    """A server that reads the request head, answers, and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(head)
        writer.write(response)
        with contextlib.suppress(ConnectionError):  # the prober may hang up first
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts and reads, never answers; leaves when the prober hangs up."""
    while await reader.read(4096):
        pass
    writer.close()


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("status", [200, 204, 301, 302, 399])
async def test_http_check_passes_on_2xx_and_3xx(status: int) -> None:
    response = f"HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n\r\n".encode()
    async with serving(answering(response)) as port:
        assert await probe(HOST, port, HTTP) is True


@pytest.mark.parametrize("status", [100, 404, 500, 503])
async def test_http_check_fails_on_other_statuses(status: int) -> None:
    response = f"HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n\r\n".encode()
    async with serving(answering(response)) as port:
        assert await probe(HOST, port, HTTP) is False


async def test_http_check_sends_get_path_with_the_host_header() -> None:
    seen: list[bytes] = []
    async with serving(answering(b"HTTP/1.1 200 OK\r\n\r\n", seen)) as port:
        assert await probe(HOST, port, HTTP)
    (head,) = seen
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /healthz HTTP/1.1"
    assert b"Host: svc.test" in lines
    assert b"Connection: close" in lines


@pytest.mark.parametrize(
    "response",
    [b"", b"garbage\r\n", b"HTTP/2 200\r\n\r\n", b"ICY 200 OK\r\n\r\n", b"HTTP/1.1\r\n\r\n"],
)
async def test_http_check_fails_on_something_that_is_not_an_http1_answer(
    response: bytes,
) -> None:
    async with serving(answering(response)) as port:
        assert await probe(HOST, port, HTTP) is False


async def test_http_check_fails_on_an_endless_status_line() -> None:
    # Longer than the stream reader's line limit (64 KiB): refused, not a crash.
    async with serving(answering(b"HTTP/1.1 200 " + b"x" * 200_000)) as port:
        assert await probe(HOST, port, HTTP) is False


@pytest.mark.parametrize("spec", [HTTP, TCP], ids=["http", "tcp"])
async def test_a_closed_port_fails(spec: ProbeSpec) -> None:
    assert await probe(HOST, closed_port(), spec) is False


@pytest.mark.parametrize("timeout", [0.1, 0.3])
async def test_a_server_that_never_answers_fails_within_the_timeout(timeout: float) -> None:
    spec = ProbeSpec(http_path="/healthz", host_header="svc.test", timeout=timeout)
    async with serving(silent) as port:
        started = time.monotonic()
        passed = await probe(HOST, port, spec)
        elapsed = time.monotonic() - started
    assert passed is False
    assert timeout * 0.9 <= elapsed < timeout + 0.5


async def test_tcp_check_passes_on_any_listening_port() -> None:
    async with serving(silent) as port:  # it never says a word: opening is enough
        assert await probe(HOST, port, TCP) is True
