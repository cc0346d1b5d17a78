"""Protocol detection on a real proxy: each connection goes to the protocol it speaks.

The inbound listener (``--app``) has a destination for any bytes, so there a connection
that is not HTTP is proxied as opaque TCP to the app; the outbound listener without
capture can only route HTTP by its Host header, so there it is HTTP or refused. Timing
bounds are wide (the machine is shared) but each one separates the two behaviours: a
server that speaks first is heard at once on an opaque port, and only after the
detection wait on any other.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.proxy import RunningProxy, free_port
from tests.support.tcp_server import TcpServer
from tulle.downstream.detect import TLS_REFUSAL

MESH = "apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\nmetadata: {name: default}\n"
CLIENT_HELLO = bytes.fromhex("160301020001") + b"\x00\x01\xfc\x03\x03" + b"\x00" * 32


class Inbound:
    """A proxy whose inbound listener forwards to one app."""

    def __init__(self, manifests: Path, app_port: int, *args: str) -> None:
        (manifests / "mesh.yaml").write_text(MESH)
        self.port = free_port()
        self.proxy = RunningProxy(manifests, "--inbound", f"127.0.0.1:{self.port}",
                                  "--app", f"127.0.0.1:{app_port}", *args)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def echo() -> Iterator[TcpServer]:
    server = TcpServer().start()
    yield server
    server.stop()


@pytest.fixture
def banner() -> Iterator[TcpServer]:
    server = TcpServer(banner=b"220 smtp.example ready\r\n").start()
    yield server
    server.stop()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _read_all(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def test_a_server_that_speaks_first_is_heard_at_once_on_an_opaque_port(
    manifests: Path, banner: TcpServer
) -> None:
    inbound = Inbound(manifests, banner.port, "--opaque-ports", str(banner.port),
                      "--detect-timeout", "5")
    try:
        started = time.monotonic()
        with inbound.connect() as sock:
            assert _read_exactly(sock, 24) == b"220 smtp.example ready\r\n"
            waited = time.monotonic() - started
            sock.sendall(b"EHLO me\r\n")
            assert _read_exactly(sock, 9) == b"EHLO me\r\n"
        assert waited < 2.5, f"waited {waited:.2f}s for the banner: detection was not skipped"
    finally:
        inbound.proxy.stop()


def test_a_server_that_speaks_first_elsewhere_is_heard_after_the_detection_wait(
    manifests: Path, banner: TcpServer
) -> None:
    inbound = Inbound(manifests, banner.port, "--opaque-ports", "", "--detect-timeout", "0.5")
    try:
        started = time.monotonic()
        with inbound.connect() as sock:
            assert _read_exactly(sock, 24) == b"220 smtp.example ready\r\n"
            waited = time.monotonic() - started
        assert 0.45 <= waited < 5.0, f"banner after {waited:.2f}s"
    finally:
        inbound.proxy.stop()


def test_bytes_that_are_not_http_are_proxied_at_once_and_half_close_passes(
    manifests: Path, echo: TcpServer
) -> None:
    inbound = Inbound(manifests, echo.port, "--opaque-ports", "", "--detect-timeout", "5")
    try:
        started = time.monotonic()
        with inbound.connect() as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")  # Redis: not HTTP from the first byte
            assert _read_exactly(sock, 14) == b"*1\r\n$4\r\nPING\r\n"
            assert time.monotonic() - started < 2.5
            sock.sendall(b"and the rest")
            sock.shutdown(socket.SHUT_WR)  # the app sees EOF, echoes what is left, closes
            assert _read_all(sock) == b"and the rest"
        _, metrics = inbound.proxy.admin_get("/metrics")
        text = metrics.decode()
        assert 'tcp_read_bytes_total{direction="inbound",peer="src"} 26.0' in text
        assert 'tcp_write_bytes_total{direction="inbound",peer="dst"} 26.0' in text
    finally:
        inbound.proxy.stop()


def test_a_slow_first_byte_is_still_http(manifests: Path) -> None:
    app = Backend("app").start()
    inbound = Inbound(manifests, app.server_address[1], "--opaque-ports", "",
                      "--detect-timeout", "2")
    try:
        with inbound.connect() as sock:
            sock.sendall(b"G")
            time.sleep(0.5)
            sock.sendall(b"ET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert b"via: 1.1 tulle" in answer.lower()  # through the HTTP side, not spliced
    finally:
        inbound.proxy.stop()
        app.stop()


def test_a_client_that_stalls_mid_request_line_is_left_to_the_http_side(
    manifests: Path, echo: TcpServer
) -> None:
    """Past the wait, a request line begun is HTTP: the HTTP side's head timeout answers."""
    inbound = Inbound(manifests, echo.port, "--opaque-ports", "", "--detect-timeout", "0.3",
                      "--head-timeout", "0.5")
    try:
        with inbound.connect() as sock:
            sock.sendall(b"GET /slow")
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert echo.connections == 0
    finally:
        inbound.proxy.stop()


def test_without_a_destination_garbage_is_http_and_gets_400(
    proxy: RunningProxy,
) -> None:
    with socket.create_connection(proxy.outbound, timeout=10) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_tls_without_a_destination_is_refused_with_a_tls_alert(proxy: RunningProxy) -> None:
    with socket.create_connection(proxy.outbound, timeout=10) as sock:
        sock.sendall(CLIENT_HELLO)
        assert _read_all(sock) == TLS_REFUSAL


def test_the_http2_preface_is_served_as_http2(proxy: RunningProxy) -> None:
    with socket.create_connection(proxy.outbound, timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        frame = _read_exactly(sock, 9)
    assert frame[3] == 0x4 and frame[5:9] == b"\x00\x00\x00\x00"  # SETTINGS on stream 0


def test_a_slow_reader_does_not_make_the_proxy_buffer(manifests: Path) -> None:
    """The app sends 64 MiB as fast as it can to a client that reads nothing for a while:
    the proxy holds at most a write buffer and a read per direction, not the flood."""
    flood = TcpServer(flood=64 * 1024 * 1024).start()
    inbound = Inbound(manifests, flood.port, "--opaque-ports", str(flood.port))
    try:
        before = inbound.proxy.rss_kib()
        with inbound.connect() as sock:
            sock.sendall(b"go")
            time.sleep(1.5)  # the flood fills every buffer on the way, then stalls
            stalled = inbound.proxy.rss_kib()
            received = len(_read_all(sock))
        assert received == 64 * 1024 * 1024
        assert stalled - before < 8 * 1024, f"RSS grew {stalled - before} KiB while stalled"
    finally:
        inbound.proxy.stop()
        flood.stop()
