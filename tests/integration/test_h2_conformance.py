"""RFC 9113 conformance and abuse cases, sent as raw frames to a real proxy.

Each case is what a broken or hostile client sends; the proxy must answer the way the
RFC says (GOAWAY with the right code, the connection closed), stay up, and spend
bounded work. Frames are built with hyperframe and hpack (the h2 library's own frame
and header codecs), written to a plain socket.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.support.backend import Backend
from tests.support.proxy import RunningProxy, mesh_service

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR = 0x1
STREAM_CLOSED = 0x5
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    server = Backend("conformance").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    manifests = tmp_path_factory.mktemp("conformance") / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(mesh_service("web", [backend.address]))
    running = RunningProxy(manifests)
    yield running
    running.stop()


class RawClient:
    """An HTTP/2 client that sends exactly the frames it is told to."""

    def __init__(self, address: tuple[str, int], preface: bytes = PREFACE) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.encoder = Encoder()
        self.buffer = b""
        self.sock.sendall(preface + SettingsFrame(0).serialize())

    def send(self, *frames: Frame) -> None:
        self.sock.sendall(b"".join(frame.serialize() for frame in frames))

    def headers(self, stream_id: int, path: str = "/", end: bool = True,
                extra: list[tuple[str, str]] | None = None, end_headers: bool = True) -> Frame:
        block = self.encoder.encode([(":method", "GET"), (":scheme", "http"),
                                     (":authority", "web"), (":path", path), *(extra or [])])
        frame = HeadersFrame(stream_id, block)
        if end_headers:
            frame.flags.add("END_HEADERS")
        if end:
            frame.flags.add("END_STREAM")
        return frame

    def frames(self, until: float = 5.0) -> Iterator[Frame]:
        """Frames as they arrive, until the connection closes or ``until`` seconds."""
        deadline = time.monotonic() + until
        while time.monotonic() < deadline:
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9:9 + length]))
                self.buffer = self.buffer[9 + length:]
                yield frame
            try:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = self.sock.recv(65536)
            except TimeoutError:
                return
            except ConnectionResetError:
                return
            if not data:
                return
            self.buffer += data

    def goaway(self, until: float = 5.0) -> GoAwayFrame | None:
        for frame in self.frames(until):
            if isinstance(frame, GoAwayFrame):
                return frame
        return None

    def closed(self, until: float = 5.0) -> bool:
        """True when the proxy closes the connection within ``until`` seconds."""
        for _ in self.frames(until):
            pass
        try:
            self.sock.settimeout(0.5)
            return self.sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            return False

    def close(self) -> None:
        self.sock.close()

    def read_in_background(self) -> list[Frame]:
        """Read every frame in a thread (a flood's answers must not back up)."""
        received: list[Frame] = []

        def read() -> None:
            received.extend(self.frames(until=15.0))

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        return received

    def join(self) -> None:
        self._reader.join(20)


def _alive(proxy: RunningProxy) -> None:
    """The proxy still answers an ordinary HTTP/2 request."""
    client = RawClient(proxy.outbound)
    client.send(client.headers(1))
    assert any(isinstance(f, DataFrame) and f.stream_id == 1 for f in client.frames(5))
    client.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_bad_preface_is_refused(proxy: RunningProxy) -> None:
    """A preface whose magic is wrong is not HTTP/2 at all: the HTTP/1 side answers 400
    and closes. The right magic followed by anything but SETTINGS is an HTTP/2 connection
    error (RFC 9113 §3.4): GOAWAY(PROTOCOL_ERROR)."""
    with socket.create_connection(proxy.outbound, timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    client = RawClient(proxy.outbound, preface=PREFACE + client_headers_first())
    goaway = client.goaway()
    assert goaway is not None and goaway.error_code == PROTOCOL_ERROR
    assert client.closed()
    _alive(proxy)


def client_headers_first() -> bytes:
    """A HEADERS frame where the client's SETTINGS must come first."""
    block = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":authority", "web"),
                              (":path", "/")])
    frame = HeadersFrame(1, block)
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    return frame.serialize()


def test_a_stream_id_used_twice_is_a_connection_error(proxy: RunningProxy) -> None:
    client = RawClient(proxy.outbound)
    client.send(client.headers(1))
    assert any(isinstance(f, DataFrame) and "END_STREAM" in f.flags for f in client.frames(5))
    client.send(client.headers(1))  # stream 1 is closed: RFC 9113 §5.1.1
    goaway = client.goaway()
    assert goaway is not None and goaway.error_code in (PROTOCOL_ERROR, STREAM_CLOSED)
    assert client.closed()


def test_a_lower_stream_id_after_a_higher_one_is_a_protocol_error(proxy: RunningProxy) -> None:
    client = RawClient(proxy.outbound)
    client.send(client.headers(5), client.headers(3))
    goaway = client.goaway()
    assert goaway is not None and goaway.error_code == PROTOCOL_ERROR


def test_a_settings_flood_is_cut_off(proxy: RunningProxy) -> None:
    """SETTINGS frames that the client never reads the ACKs of: GOAWAY(ENHANCE_YOUR_CALM)
    after about a thousand, not an ever-growing queue of ACKs."""
    client = RawClient(proxy.outbound)
    received = client.read_in_background()
    frame = SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize()
    sent = 0
    try:
        for _ in range(20):
            client.sock.sendall(frame * 1000)
            sent += 1000
    except (BrokenPipeError, ConnectionResetError):
        pass
    client.join()
    goaways = [f for f in received if isinstance(f, GoAwayFrame)]
    assert [g.error_code for g in goaways] == [ENHANCE_YOUR_CALM]
    acks = sum(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in received)
    assert acks <= 1000 + 16384 // 9  # the burst and the rest of one slice, no more
    _alive(proxy)


def test_a_header_list_over_the_limit_is_refused(proxy: RunningProxy, backend: Backend) -> None:
    backend.reset_counts()
    client = RawClient(proxy.outbound)
    huge = [(f"x-filler-{i}", "v" * 1000) for i in range(100)]  # ~100 KiB > 64 KiB
    block = client.encoder.encode([(":method", "GET"), (":scheme", "http"),
                                   (":authority", "web"), (":path", "/"), *huge])
    frames: list[Frame] = []
    for offset in range(0, len(block), 16384):  # HEADERS then CONTINUATIONs of 16 KiB
        piece = block[offset:offset + 16384]
        frame: Frame = (HeadersFrame(1, piece) if offset == 0 else ContinuationFrame(1, piece))
        if offset + 16384 >= len(block):
            frame.flags.add("END_HEADERS")
        frames.append(frame)
    frames[0].flags.add("END_STREAM")
    client.send(*frames)
    goaway = client.goaway()
    assert goaway is not None and goaway.error_code in (ENHANCE_YOUR_CALM, COMPRESSION_ERROR,
                                                        PROTOCOL_ERROR)
    assert client.closed()
    assert backend.requests == 0  # nothing reached the endpoint
    _alive(proxy)


def test_a_continuation_flood_is_cut_off(proxy: RunningProxy) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames forever (the 2024
    CONTINUATION flood): the proxy stops after a bounded number, not at memory's end."""
    client = RawClient(proxy.outbound)
    client.send(client.headers(1, end_headers=False))
    piece = ContinuationFrame(1, client.encoder.encode([("x-a", "b" * 8000)])).serialize()
    sent = 0
    try:
        for _ in range(10_000):
            client.sock.sendall(piece)
            sent += 1
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < 10_000 or client.goaway() is not None
    assert client.closed()
    _alive(proxy)


def test_rapid_reset_costs_bounded_work(proxy: RunningProxy, backend: Backend) -> None:
    """CVE-2023-44487: open a stream and reset it at once, over and over. The proxy
    allows a burst (nghttp2's 1000), then says GOAWAY(ENHANCE_YOUR_CALM) and closes; the
    endpoint sees a few of those requests at most."""
    backend.reset_counts()
    client = RawClient(proxy.outbound)
    received = client.read_in_background()
    before = _cpu_seconds(proxy.process.pid)
    sent = 0
    try:
        for batch in range(100):  # up to 100,000 pairs
            frames = []
            for index in range(1000):
                stream_id = 2 * (batch * 1000 + index) + 1
                rst = RstStreamFrame(stream_id)
                rst.error_code = 0x8  # CANCEL
                frames += [client.headers(stream_id), rst]
            client.send(*frames)
            sent += 1000
    except (BrokenPipeError, ConnectionResetError):
        pass
    client.join()
    spent = _cpu_seconds(proxy.process.pid) - before
    goaways = [f for f in received if isinstance(f, GoAwayFrame)]
    assert [g.error_code for g in goaways] == [ENHANCE_YOUR_CALM]
    assert sent < 100_000  # cut off long before the client was done
    assert backend.requests <= 1100
    metrics = proxy.admin_get("/metrics")[1].decode()
    assert 'tulle_h2_abuse_closes_total{direction="outbound",peer="src"} 2.0' in metrics
    # Report the figure (docs/protocols.md quotes it): CPU for the whole attack.
    print(f"\nrapid reset: {sent} pairs sent before the cut, proxy CPU {spent * 1000:.0f} ms, "
          f"endpoint saw {backend.requests} requests")
    _alive(proxy)


def test_ping_is_answered_and_settings_changes_apply(proxy: RunningProxy) -> None:
    """PING comes back as a PING ACK with the same 8 bytes. A client that shrinks its
    stream window to 1 byte (SETTINGS_INITIAL_WINDOW_SIZE) gets 1 byte of a response;
    when it grows the window again, the rest follows at once (RFC 9113 §6.9.2)."""
    client = RawClient(proxy.outbound)
    client.send(PingFrame(0, b"tulle-h2"))
    pong = next((f for f in client.frames(5) if isinstance(f, PingFrame)), None)
    assert pong is not None and "ACK" in pong.flags and pong.opaque_data == b"tulle-h2"
    client.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1}))
    client.send(client.headers(1, path="/bytes/100000"))
    body = b"".join(f.data for f in client.frames(1.0)
                    if isinstance(f, DataFrame) and f.stream_id == 1)
    assert len(body) == 1  # one byte: the window
    grow = WindowUpdateFrame(0)
    grow.window_increment = 1 << 20
    client.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 20}), grow)
    rest = 0
    for frame in client.frames(5):
        if isinstance(frame, DataFrame) and frame.stream_id == 1:
            rest += len(frame.data)
            if "END_STREAM" in frame.flags:
                break
    assert 1 + rest == 100_000
    client.close()
