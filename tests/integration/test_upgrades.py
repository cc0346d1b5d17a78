"""HTTP/1.1 upgrades through a real proxy: WebSocket passes through, CONNECT tunnels.

WebSocket: clients of the ``websockets`` library open connections to the service ``ws``
(three ``websockets`` echo servers) through the outbound listener; each connection is
balanced when it opens, and after the 101 it is a byte splice both ways.

CONNECT: curl with ``https_proxy`` pointed at the outbound listener fetches
``https://web/`` from three TLS servers (a certificate for ``web`` from a test CA): each
tunnel is balanced, and TLS runs end to end through it. A target that is not a mesh
service is refused (403) unless ``spec.egress.allow`` names it.
"""

from __future__ import annotations

import asyncio
import http.server
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from tests.support.proxy import RunningProxy, mesh_service
from tests.support.tools import require_tools
from tulle.identity.certificates import CertificateAuthority

# -- WebSocket ----------------------------------------------------------------------


class EchoServers:
    """Three websockets echo servers on one event loop in a thread, each naming itself."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ports: list[int] = []
        ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete,
                                        args=(self._serve(ready),), daemon=True)
        self._thread.start()
        ready.wait(10)

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = self.loop.create_future()
        servers = []
        for index in range(3):
            async def echo(conn: ServerConnection, name: str = f"ws-{index}") -> None:
                async for message in conn:
                    await conn.send(f"{name}:".encode() + (
                        message if isinstance(message, bytes) else message.encode()))
            server = await serve(echo, "127.0.0.1", 0)
            servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        ready.set()
        await self._stop
        for server in servers:
            server.close()
            await server.wait_closed()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(lambda: self._stop and self._stop.set_result(None))
        self._thread.join(10)


@pytest.fixture(scope="module")
def ws_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    servers = EchoServers()
    manifests = tmp_path_factory.mktemp("ws") / "manifests"
    manifests.mkdir()
    (manifests / "ws.yaml").write_text(mesh_service(
        "ws", [f"127.0.0.1:{port}" for port in servers.ports],
        "  loadBalancer: {algorithm: round-robin}\n"))
    proxy = RunningProxy(manifests)
    yield proxy
    proxy.stop()
    servers.stop()


async def _conversation(port: int, big: bytes) -> list[bytes]:
    """One WebSocket connection to ``ws`` through the proxy: two small messages, one big."""
    async with connect("ws://ws/chat", host="127.0.0.1", port=port,
                       max_size=4 * len(big)) as ws:
        answers = []
        for message in (b"hello", b"again", big):
            await ws.send(message)
            answer = await ws.recv()
            assert isinstance(answer, bytes)
            answers.append(answer)
        return answers


def test_websocket_connections_are_balanced_and_echo_through(ws_proxy: RunningProxy) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: more than every buffer on the way

    async def run() -> list[list[bytes]]:
        return [await _conversation(ws_proxy.outbound_port, big) for _ in range(6)]

    conversations = asyncio.run(run())
    names = []
    for answers in conversations:
        name = answers[0].split(b":")[0]
        assert answers == [name + b":hello", name + b":again", name + b":" + big]
        names.append(name.decode())
    assert Counter(names) == {"ws-0": 2, "ws-1": 2, "ws-2": 2}
    _, metrics = ws_proxy.admin_get("/metrics")
    text = metrics.decode()
    switched = [line for line in text.splitlines()
                if line.startswith("response_total{") and 'status_code="101"' in line
                and 'dst_service="ws"' in line and 'endpoint=""' not in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in switched) == 6.0, switched


def test_a_declined_upgrade_is_an_ordinary_response(ws_proxy: RunningProxy) -> None:
    """The endpoint answers a plain GET with 426; the client's connection then closes."""
    import socket

    with socket.create_connection(ws_proxy.outbound, timeout=10) as sock:
        sock.sendall(b"GET /chat HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n")  # no Sec-WebSocket-Key: refused
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 4"), answer[:100]
    assert b"connection: close" in answer.lower()


def test_an_upgrade_the_proxy_answers_itself_closes_the_connection(
    ws_proxy: RunningProxy,
) -> None:
    import socket

    with socket.create_connection(ws_proxy.outbound, timeout=10) as sock:
        sock.sendall(b"GET /chat HTTP/1.1\r\nHost: nobody\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # ends: the proxy closes after its 404
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 404"), answer[:100]


# -- CONNECT ------------------------------------------------------------------------


class TlsServer(http.server.ThreadingHTTPServer):
    """An HTTPS server answering every GET with its name."""

    daemon_threads = True

    def __init__(self, name: str, context: ssl.SSLContext) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.name = name
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[TlsServer]]]:
    folder = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority.generate("tulle test CA")
    issued = ca.issue("web", dns_names=["web", "localhost"], ip_addresses=["127.0.0.1"])
    (folder / "ca.pem").write_bytes(ca.cert_pem)
    (folder / "web.pem").write_bytes(issued.cert_pem + issued.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "web.pem")
    servers = [TlsServer(f"web-{index}", context) for index in range(4)]
    yield folder, servers
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def connect_proxy(tls: tuple[Path, list[TlsServer]],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    """``web`` is the first three servers; the fourth is outside the mesh, and egress
    allows it by address and port."""
    _, servers = tls
    outside = servers[3].port
    manifests = tmp_path_factory.mktemp("connect") / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(mesh_service(
        "web", [f"127.0.0.1:{server.port}" for server in servers[:3]],
        "  loadBalancer: {algorithm: round-robin}\n") + "---\n" + mesh_service(
        "down", ["127.0.0.1:1"]))
    (manifests / "mesh.yaml").write_text(
        "apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\nmetadata: {name: default}\n"
        f"spec:\n  egress:\n    allow:\n      - {{host: 127.0.0.1, ports: [{outside}]}}\n")
    proxy = RunningProxy(manifests)
    yield proxy
    proxy.stop()


def _curl(proxy: RunningProxy, folder: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    require_tools(["curl"])
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(folder / "ca.pem"), *args, url],
        capture_output=True, text=True, timeout=30,
        env={"https_proxy": f"http://127.0.0.1:{proxy.outbound_port}", "PATH": "/usr/bin:/bin"})


def test_https_proxy_tunnels_to_a_mesh_service_balanced(
    connect_proxy: RunningProxy, tls: tuple[Path, list[TlsServer]]
) -> None:
    folder, _ = tls
    answers = [_curl(connect_proxy, folder, "https://web/").stdout for _ in range(6)]
    assert Counter(answers) == {"web-0": 2, "web-1": 2, "web-2": 2}
    _, metrics = connect_proxy.admin_get("/metrics")
    assert ('tcp_open_total{direction="outbound",dst_namespace="default",dst_service="web",'
            'peer="dst"} 6.0') in metrics.decode()


def test_egress_is_refused_unless_the_mesh_allows_it(
    connect_proxy: RunningProxy, tls: tuple[Path, list[TlsServer]]
) -> None:
    folder, servers = tls
    allowed = _curl(connect_proxy, folder, f"https://127.0.0.1:{servers[3].port}/")
    assert allowed.stdout == "web-3", allowed.stderr
    refused = _curl(connect_proxy, folder, f"https://127.0.0.1:{servers[0].port}/")
    assert refused.returncode != 0
    assert "403" in refused.stderr, refused.stderr


def test_a_tunnel_to_a_service_that_cannot_connect_is_502(
    connect_proxy: RunningProxy, tls: tuple[Path, list[TlsServer]]
) -> None:
    folder, _ = tls
    failed = _curl(connect_proxy, folder, "https://down/")
    assert failed.returncode != 0
    assert "502" in failed.stderr or "503" in failed.stderr, failed.stderr
