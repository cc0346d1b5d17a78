"""Large bodies stream with bounded memory; many concurrent clients are all answered."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from tests.support.client import get
from tests.support.proxy import RunningProxy

TEN_MB = 10 * 1024 * 1024


def _peak_rss_kib(proxy: RunningProxy) -> int:
    status = Path(f"/proc/{proxy.process.pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))


def test_10_mb_stream_up_and_down_with_bounded_proxy_memory(proxy: RunningProxy) -> None:
    get(proxy.outbound)
    before = _peak_rss_kib(proxy)

    # Up: 10 MB sent in 64 KiB writes; the backend counts what arrives.
    with socket.create_connection(proxy.outbound, timeout=30) as sock:
        sock.sendall(
            b"POST /count HTTP/1.1\r\nHost: web\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % TEN_MB
        )
        piece = b"u" * 65536
        for _ in range(TEN_MB // len(piece)):
            sock.sendall(piece)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"\r\n\r\n%d" % TEN_MB)

    # Down: 10 MB to a client that waits a second before reading, so the
    # proxy must hold the upstream back rather than buffer the body.
    with socket.create_connection(proxy.outbound, timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n" % TEN_MB)
        time.sleep(1.0)
        received = 0
        while chunk := sock.recv(65536):
            received += len(chunk)
    assert received > TEN_MB  # head + body

    grown_kib = _peak_rss_kib(proxy) - before
    assert grown_kib < 8 * 1024, f"proxy peak memory grew by {grown_kib} KiB for 10 MB bodies"


def test_500_concurrent_clients_are_all_answered(proxy: RunningProxy) -> None:
    async def one(index: int) -> bytes:
        reader, writer = await asyncio.open_connection(*proxy.outbound)
        writer.write(b"GET /?i=%d HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n" % index)
        data = await reader.read()
        writer.close()
        return data

    async def main() -> list[bytes]:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(500))), 60)

    responses = asyncio.run(main())
    assert sum(r.startswith(b"HTTP/1.1 200") for r in responses) == 500
