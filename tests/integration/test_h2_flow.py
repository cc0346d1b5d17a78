"""HTTP/2 flow control, GOAWAY and RST_STREAM through a real proxy, both ways.

- A client that stops reading (sends no WINDOW_UPDATE) must not make the proxy buffer
  the endpoint's response: the proxy's RSS is measured while 64 MiB wait to be read.
- GOAWAY: the proxy's own (on SIGTERM, streams in flight finish) and an endpoint's
  (grpcio's graceful stop: calls after it go elsewhere, none fails).
- RST_STREAM: a client's cancel reaches the endpoint; an endpoint's reset reaches the
  client as a reset of that stream only.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from bench.tools import find_tool
from tests.support.backend import Backend
from tests.support.grpc_servers import EchoServer, channel, method
from tests.support.proxy import RunningProxy, free_port, mesh_service
from tests.support.tools import require_tools

MIB = 1024 * 1024


class H2Client:
    """A plain h2 client on a socket: it reads only when told to."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def get(self, authority: str, path: str) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"),
                                           (":authority", authority), (":path", path)],
                               end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        return stream_id

    def read(self, until_ended: int, timeout: float = 30.0) -> tuple[int, list]:
        """Read (acknowledging data) until ``until_ended`` ends: (body bytes, events)."""
        received = 0
        seen: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.sock.recv(1 << 20)
            if not data:
                break
            for event in self.conn.receive_data(data):
                seen.append(event)
                if isinstance(event, h2.events.DataReceived):
                    received += len(event.data)
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
                if (isinstance(event, h2.events.StreamEnded | h2.events.StreamReset)
                        and event.stream_id == until_ended):
                    self.sock.sendall(self.conn.data_to_send())
                    return received, seen
            self.sock.sendall(self.conn.data_to_send())
        return received, seen


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    server = Backend("flow").start()
    yield server
    server.stop()


def _proxy(tmp_path: Path, services: str, *args: str) -> RunningProxy:
    manifests = tmp_path / "manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "services.yaml").write_text(services)
    return RunningProxy(manifests, *args)


def test_a_client_that_stops_reading_costs_about_one_window(
    backend: Backend, tmp_path: Path
) -> None:
    proxy = _proxy(tmp_path, mesh_service("web", [backend.address]))
    try:
        client = H2Client(proxy.outbound)
        warm = client.get("web", "/bytes/1000")
        client.read(warm)
        before = proxy.rss_kib()
        stream = client.get("web", f"/bytes/{64 * MIB}")
        time.sleep(3.0)  # the client reads nothing: no WINDOW_UPDATE, a full socket
        during = proxy.rss_kib()
        received, _ = client.read(stream, timeout=60)  # then it reads it all
    finally:
        proxy.stop()
    assert received == 64 * MIB
    growth_mib = (during - before) / 1024
    print(f"\nslow reader: proxy RSS {before / 1024:.1f} MiB before, {during / 1024:.1f} MiB "
          f"while 64 MiB waited to be read (+{growth_mib:.1f} MiB)")
    assert growth_mib < 8, growth_mib


def test_sigterm_sends_goaway_and_finishes_streams_in_flight(
    backend: Backend, tmp_path: Path
) -> None:
    require_tools(["nghttp"])
    proxy = _proxy(tmp_path, mesh_service("web", [backend.address]))
    nghttp = subprocess.Popen(
        [find_tool("nghttp"), "-v", "-H", ":authority: web",
         f"http://127.0.0.1:{proxy.outbound_port}/sleep/800"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.4)
    proxy.signal(signal.SIGTERM)
    out, _ = nghttp.communicate(timeout=15)
    assert proxy.process.wait(10) == 0
    proxy.stop()
    assert nghttp.returncode == 0, out
    # GOAWAY(NO_ERROR) naming stream 13 (nghttp's first request), then its answer.
    goaway = out.index("recv GOAWAY frame")
    assert "last_stream_id=13, error_code=NO_ERROR" in out[goaway:goaway + 200]
    after = out[goaway:]
    assert "recv (stream_id=13) :status: 200" in after and "slept" in after


def test_an_endpoints_graceful_goaway_fails_no_call(tmp_path: Path) -> None:
    """Two grpcio servers; one is stopped gracefully while one channel keeps calling:
    calls in flight finish, later ones go to the other server, none fails."""
    leaving, staying = EchoServer("leaving").start(), EchoServer("staying").start()
    proxy = _proxy(tmp_path, mesh_service(
        "echo", [leaving.address, staying.address],
        "  protocol: grpc\n  loadBalancer: {algorithm: round-robin}\n"))
    failures: list[grpc.StatusCode] = []
    answers: list[bytes] = []
    stop = threading.Event()

    def call_forever() -> None:
        with channel(proxy.outbound, "echo") as chan:
            sleep = method(chan, "Sleep")
            while not stop.is_set():
                calls = [sleep.future(b"20", timeout=10) for _ in range(10)]
                for call in calls:
                    try:
                        answers.append(call.result())
                    except grpc.RpcError as exc:
                        failures.append(exc.code())

    caller = threading.Thread(target=call_forever)
    caller.start()
    try:
        time.sleep(1.0)
        leaving.server.stop(grace=2.0).wait()
        time.sleep(1.5)
    finally:
        stop.set()
        caller.join(30)
        proxy.stop()
        staying.stop()
    assert failures == []
    assert answers.count(b"leaving") > 10 and answers[-20:] == [b"staying"] * 20


def test_a_clients_cancel_reaches_the_endpoint(tmp_path: Path) -> None:
    server = EchoServer("cancelled").start()
    proxy = _proxy(tmp_path, mesh_service("echo", [server.address], "  protocol: grpc\n"))
    try:
        with channel(proxy.outbound, "echo") as chan:
            ticks = method(chan, "Ticks", "unary_stream")(b"", timeout=30)
            assert next(ticks) == b"tick" and next(ticks) == b"tick"
            ticks.cancel()
            deadline = time.monotonic() + 5
            while server.cancelled == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        proxy.stop()
        server.stop()
    assert server.cancelled == 1


class ResettingServer:
    """An h2c server that answers a head and some data, then resets the stream."""

    def __init__(self) -> None:
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    conn.send_headers(event.stream_id, [(":status", "200")])
                    conn.send_data(event.stream_id, b"partial")
                    conn.reset_stream(event.stream_id, 2)  # INTERNAL_ERROR
            sock.sendall(conn.data_to_send())

    def stop(self) -> None:
        self.listener.close()


def test_an_endpoints_reset_resets_only_that_stream(tmp_path: Path, backend: Backend) -> None:
    resetting = ResettingServer()
    proxy = _proxy(tmp_path, mesh_service("broken", [resetting.address], "  protocol: http2\n")
                   + "---\n" + mesh_service("web", [backend.address]))
    try:
        client = H2Client(proxy.outbound)
        broken = client.get("broken", "/")
        _, events = client.read(broken)
        fine = client.get("web", "/")  # the same connection goes on
        received, more = client.read(fine)
    finally:
        proxy.stop()
        resetting.stop()
    resets = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(broken, 2)]  # INTERNAL_ERROR
    assert received == len(b"flow")
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == fine for e in more)


def _ws_frame(payload: bytes) -> bytes:
    """A masked, final binary WebSocket frame (RFC 6455 §5.2), as a client sends."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x82, 0x80 | len(payload)]) + mask + masked


def test_websocket_over_http2_extended_connect(tmp_path: Path) -> None:
    """RFC 8441: an HTTP/2 client opens a WebSocket with CONNECT and :protocol websocket;
    the proxy makes it the HTTP/1.1 Upgrade a ``websockets`` echo server takes, answers
    200 on the stream, and carries the frames both ways as the stream's DATA."""
    from tests.integration.test_upgrades import EchoServers

    servers = EchoServers()
    proxy = _proxy(tmp_path, mesh_service("ws", [f"127.0.0.1:{servers.ports[0]}"]))
    try:
        client = H2Client(proxy.outbound)
        client.conn.receive_data(client.sock.recv(65536))  # the proxy's SETTINGS
        assert client.conn.remote_settings.enable_connect_protocol == 1
        stream = client.conn.get_next_available_stream_id()
        client.conn.send_headers(stream, [
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
            (":authority", "ws"), (":path", "/chat"), ("sec-websocket-version", "13")])
        client.conn.send_data(stream, _ws_frame(b"hello"))
        client.sock.sendall(client.conn.data_to_send())
        received = b""
        status = None
        deadline = time.monotonic() + 10
        while b"ws-0:hello" not in received and time.monotonic() < deadline:
            for event in client.conn.receive_data(client.sock.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    received += event.data
                    client.conn.acknowledge_received_data(event.flow_controlled_length,
                                                          event.stream_id)
            client.sock.sendall(client.conn.data_to_send())
        client.sock.close()
    finally:
        proxy.stop()
        servers.stop()
    assert status == b"200"
    assert b"ws-0:hello" in received  # the server's unmasked echo frame
