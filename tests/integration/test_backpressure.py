"""Clients that do not read (issue 15, #2 and #3), through a real proxy on real sockets.

A client that keeps sending and never reads must not grow the proxy's memory: the proxy
stops reading from it once what it holds unsent passes the transport's high-water mark.
A client that asks for a large response and never reads is cut off after the send
timeout, its endpoint freed and the cut counted.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.proxy import RunningProxy, mesh_service


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend("slow-reader-backend").start()
    yield server
    server.stop()


def _proxy(tmp_path: Path, backend: Backend, *args: str) -> RunningProxy:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(mesh_service("web", [backend.address]))
    return RunningProxy(manifests, *args)


def test_a_client_that_pipelines_and_never_reads_cannot_grow_the_proxy(
    tmp_path: Path, backend: Backend
) -> None:
    """Requests the proxy answers itself (404s), pipelined without end, never read: the
    proxy stops reading, so the client's sends block, and the proxy's memory stays put
    (before the fix: 47 -> 230 MB in 8 s)."""
    proxy = _proxy(tmp_path, backend)
    try:
        before = proxy.rss_kib()
        request = b"GET /x HTTP/1.1\r\nHost: nowhere\r\n\r\n" * 256
        with socket.create_connection(proxy.outbound) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            sent, blocked_since = 0, None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    sent += sock.send(request)
                    blocked_since = None
                except BlockingIOError:
                    blocked_since = blocked_since or time.monotonic()
                    if time.monotonic() - blocked_since > 2.0:
                        break  # the proxy has stopped reading from us
                    time.sleep(0.01)
            assert blocked_since is not None, "the proxy kept reading a client that never reads"
            grown_mib = (proxy.rss_kib() - before) / 1024
        assert grown_mib < 20, f"proxy RSS grew {grown_mib:.1f} MiB after {sent} bytes"
    finally:
        proxy.stop()


def test_a_client_that_does_not_read_a_large_response_is_cut_after_the_send_timeout(
    tmp_path: Path, backend: Backend
) -> None:
    proxy = _proxy(tmp_path, backend, "--send-timeout", "1")
    try:
        with socket.create_connection(proxy.outbound) as sock:
            sock.sendall(b"GET /bytes/50000000 HTTP/1.1\r\nHost: web\r\n\r\n")
            time.sleep(3.0)  # never read: the kernel's and the proxy's buffers fill, then
            # the send timeout runs; what the kernel still holds is read below
            sock.settimeout(10)
            received, closed = 0, False
            while received < 50_000_000:
                try:
                    piece = sock.recv(1 << 20)
                except ConnectionResetError:
                    closed = True
                    break
                if not piece:
                    closed = True
                    break
                received += len(piece)
        assert closed and received < 50_000_000, "the response was not cut"
        metrics = _metrics(proxy)
        assert 'tulle_send_timeouts_total{direction="outbound",peer="src"} 1.0' in metrics
        endpoints = proxy.admin_get("/endpoints")[1]
        assert b'"inFlight": 0' in endpoints
    finally:
        proxy.stop()


def _metrics(proxy: RunningProxy) -> str:
    url = f"http://127.0.0.1:{proxy.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()
