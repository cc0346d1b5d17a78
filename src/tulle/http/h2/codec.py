"""HTTP/2, sans-I/O: the `h2` library's state machine, told as per-stream calls.

`H2Codec` owns one `h2.connection.H2Connection` (client or server side) and nothing
else of the connection: bytes go in through `feed`, and what they meant comes out as
calls on a handler (`H2Handler`): a stream's head, its data, its end (with trailers),
its reset; a window that opened; the peer's GOAWAY. What the proxy sends goes in
through `send_head`, `send_data`, `send_end`, `reset`, `goaway`, and comes out of
`data_to_send` as bytes for the socket. Nothing here touches a socket or a loop.

h2 keeps the protocol's state (stream states, HPACK, both sides' settings, flow
control windows); this module adds only what h2 leaves to its user:

- **Heads**: h2's header lists become `RequestHead`/`ResponseHead` and back
  (`tulle.http.h2.heads`, the RFC 9113 §8.2 rules).
- **Outbound flow control**: h2 refuses to send past the peer's window; data that does
  not fit waits here, per stream, and goes out as windows open (`window_opened`).
  `send_data` returns how much of the stream's data is waiting, so the caller can
  pause whoever is producing it (end-to-end back-pressure).
- **Inbound flow control** is the caller's: a stream's received data is acknowledged
  (`ack`) when it has been passed on, so a slow reader on the other side stops the
  peer after one window instead of making the proxy buffer.

Errors: bytes that break HTTP/2 raise `RemoteProtocolError` out of `feed`, after h2
has queued its GOAWAY in `data_to_send` (the caller writes it and closes).
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Final, Protocol

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.exceptions import StreamClosedError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from tulle.http.errors import RemoteProtocolError
from tulle.http.h2.heads import parse_request, parse_response, parse_trailers
from tulle.http.message import Headers, RequestHead, ResponseHead

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Where the type of the client's first frame is, and SETTINGS' type (RFC 9113 §3.4, §6.5).
_FIRST_FRAME_TYPE: Final = len(PREFACE) + 3
_SETTINGS: Final = 0x4

# Error codes (RFC 9113 §7) the proxy sends.
NO_ERROR: Final = int(ErrorCodes.NO_ERROR)
PROTOCOL_ERROR: Final = int(ErrorCodes.PROTOCOL_ERROR)
INTERNAL_ERROR: Final = int(ErrorCodes.INTERNAL_ERROR)
REFUSED_STREAM: Final = int(ErrorCodes.REFUSED_STREAM)
CANCEL: Final = int(ErrorCodes.CANCEL)
ENHANCE_YOUR_CALM: Final = int(ErrorCodes.ENHANCE_YOUR_CALM)

# Per-stream receive window the proxy advertises (RFC 9113 §6.9.2's default is 64 KiB
# - 1). What a stream may have in flight towards the proxy unacknowledged: the most a
# slow reader on the other side makes the proxy hold for that stream.
STREAM_WINDOW: Final = 256 * 1024
# The connection's receive window: what all its streams together may have unacknowledged.
CONNECTION_WINDOW: Final = 4 * 1024 * 1024
# Streams a peer may open at once towards the proxy (h2's default, and nghttp2's 100).
MAX_CONCURRENT_STREAMS: Final = 100
# SETTINGS_MAX_HEADER_LIST_SIZE: the same cap as an HTTP/1.1 head (64 KiB).
MAX_HEADER_LIST_SIZE: Final = 64 * 1024


class H2Handler(Protocol):
    """What a codec calls as frames arrive (per stream, in order)."""

    def stream_head(self, stream_id: int, head: RequestHead | ResponseHead) -> None: ...

    def stream_informational(self, stream_id: int, head: ResponseHead) -> None: ...

    def stream_data(self, stream_id: int, data: bytes, flow: int) -> None:
        """Body bytes; ``flow`` is what to `H2Codec.ack` once they are passed on."""

    def stream_end(self, stream_id: int, trailers: Headers | None) -> None: ...

    def stream_reset(self, stream_id: int, code: int) -> None: ...

    def window_opened(self, stream_ids: list[int]) -> None:
        """These streams' waiting data all went out (their producers may resume)."""

    def settings_changed(self) -> None:
        """The peer's SETTINGS changed (e.g. MAX_CONCURRENT_STREAMS)."""

    def pinged(self) -> None:
        """The peer sent a PING (h2 has queued the answer)."""

    def goaway(self, last_stream_id: int, code: int) -> None: ...


class _Waiting:
    """A stream's outbound data that did not fit its window yet, and how it ends."""

    __slots__ = ("chunks", "end", "size", "trailers")

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.end = False
        self.trailers: Headers | None = None


class H2Codec:
    """One HTTP/2 connection's protocol state (see the module note)."""

    __slots__ = ("conn", "extra", "handler", "opening", "waiting")

    def __init__(self, handler: H2Handler, client_side: bool) -> None:
        self.handler = handler
        config = H2Configuration(
            client_side=client_side, header_encoding=None,
            # The proxy writes lower-case names without connection-specific fields
            # (heads.py); h2 still validates what it receives.
            validate_outbound_headers=False, normalize_outbound_headers=False,
        )
        self.conn = H2Connection(config)
        self._settings(client_side, connect_protocol=False)
        self.waiting: dict[int, _Waiting] = {}
        self.extra = b""  # frames written past h2 (a graceful GOAWAY), sent before its own
        # A server's first bytes from the client, until the type of the frame after the
        # preface is known: it must be SETTINGS (RFC 9113 §3.4), which h2 does not check.
        self.opening: bytes | None = None if client_side else b""

    # -- starting --

    def initiate(self, enable_connect_protocol: bool = False) -> None:
        """Queue the preface (client) or the first SETTINGS (server), and open the
        connection's receive window."""
        conn = self.conn
        if enable_connect_protocol:
            self._settings(False, connect_protocol=True)
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)

    def initiate_upgrade(self, settings_header: bytes) -> None:
        """Server side of an ``Upgrade: h2c`` from HTTP/1.1: the request becomes stream 1
        (RFC 7540 §3.2; ``HTTP2-Settings`` carries the client's SETTINGS)."""
        conn = self.conn
        conn.initiate_upgrade_connection(settings_header)
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)

    # -- receiving --

    def feed(self, data: bytes) -> None:
        """Handle ``data`` from the peer; raise RemoteProtocolError when it breaks HTTP/2."""
        conn = self.conn
        opening = self.opening
        if opening is not None:
            opening += data[:_FIRST_FRAME_TYPE + 1 - len(opening)]
            if len(opening) > _FIRST_FRAME_TYPE:
                self.opening = None
                if opening[_FIRST_FRAME_TYPE] != _SETTINGS and opening.startswith(PREFACE):
                    conn.close_connection(PROTOCOL_ERROR)
                    raise RemoteProtocolError("HTTP/2: the first frame is not SETTINGS")
            else:
                self.opening = opening
        try:
            events = conn.receive_data(data)
        except H2ProtocolError as exc:
            if conn.state_machine.state != ConnectionState.CLOSED:
                # h2 checks the preface before its frame loop, and queues no GOAWAY for it.
                conn.close_connection(int(getattr(exc, "error_code", PROTOCOL_ERROR)))
            raise RemoteProtocolError(f"HTTP/2: {exc}") from None
        handler = self.handler
        for event in events:
            if isinstance(event, DataReceived):
                sid = event.stream_id or 0
                flow = event.flow_controlled_length or 0
                data = event.data
                if data:
                    handler.stream_data(sid, data, flow)
                elif flow:  # padding only
                    self.ack(sid, flow)
                if event.stream_ended is not None:
                    handler.stream_end(sid, None)
            elif isinstance(event, RequestReceived):
                sid = event.stream_id or 0
                ended = event.stream_ended is not None
                handler.stream_head(sid, parse_request(event.headers or [], ended))
                if ended:
                    handler.stream_end(sid, None)
            elif isinstance(event, ResponseReceived):
                sid = event.stream_id or 0
                handler.stream_head(sid, parse_response(event.headers or []))
                if event.stream_ended is not None:
                    handler.stream_end(sid, None)
            elif isinstance(event, TrailersReceived):
                handler.stream_end(event.stream_id or 0, parse_trailers(event.headers or []))
            elif isinstance(event, StreamReset):
                sid = event.stream_id or 0
                self.waiting.pop(sid, None)
                handler.stream_reset(sid, int(event.error_code or 0))
            elif isinstance(event, WindowUpdated):
                self._drain(event.stream_id or 0)
            elif isinstance(event, InformationalResponseReceived):
                handler.stream_informational(event.stream_id or 0,
                                             parse_response(event.headers or []))
            elif isinstance(event, RemoteSettingsChanged):
                if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self._drain(0)
                handler.settings_changed()
            elif isinstance(event, PingReceived):
                handler.pinged()
            elif isinstance(event, ConnectionTerminated):
                code = int(event.error_code or 0)
                if code == NO_ERROR:
                    # A graceful GOAWAY: the streams the peer has (up to last_stream_id)
                    # still complete (RFC 9113 §6.8). h2 closes the whole connection on
                    # any GOAWAY, so its connection state is put back to open; streams
                    # keep their own states, and the handler opens no new ones.
                    conn.state_machine.state = (ConnectionState.CLIENT_OPEN
                                                if conn.config.client_side
                                                else ConnectionState.SERVER_OPEN)
                handler.goaway(event.last_stream_id or 0, code)

    def ack(self, stream_id: int, flow: int) -> None:
        """``flow`` bytes of ``stream_id`` were passed on: the peer may send more."""
        self.conn.acknowledge_received_data(flow, stream_id)

    # -- sending --

    def next_stream_id(self) -> int:
        return self.conn.get_next_available_stream_id()

    def send_head(self, stream_id: int, fields: Headers, end: bool = False) -> None:
        self.conn.send_headers(stream_id, fields, end_stream=end)

    def send_data(self, stream_id: int, data: bytes) -> int:
        """Send what the windows allow; the rest waits. Returns the stream's waiting bytes."""
        waiting = self.waiting.get(stream_id)
        if waiting is not None:
            waiting.chunks.append(data)
            waiting.size += len(data)
            return waiting.size
        rest = self._send_some(stream_id, data)
        if not rest:
            return 0
        waiting = self.waiting[stream_id] = _Waiting()
        waiting.chunks.append(rest)
        waiting.size = len(rest)
        return waiting.size

    def send_end(self, stream_id: int, trailers: Headers | None) -> None:
        """End the stream (with trailers), after the data still waiting."""
        waiting = self.waiting.get(stream_id)
        if waiting is not None:
            waiting.end = True
            waiting.trailers = trailers
            return
        self._end(stream_id, trailers)

    def reset(self, stream_id: int, code: int) -> None:
        """RST_STREAM, unless the stream is already closed."""
        self.waiting.pop(stream_id, None)
        with contextlib.suppress(StreamClosedError, H2ProtocolError):
            self.conn.reset_stream(stream_id, code)

    def goaway(self, code: int = NO_ERROR, last_stream_id: int | None = None) -> None:
        """GOAWAY, and the connection is over: nothing more may be sent (h2's rule)."""
        self.conn.close_connection(code, last_stream_id=last_stream_id)

    def goaway_gracefully(self) -> None:
        """GOAWAY(NO_ERROR) naming the last stream the peer opened: streams open now go on
        (RFC 9113 §6.8), new ones are refused by the caller. h2 treats any GOAWAY it sends
        as the end of the connection, so this one is written past its state machine."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.conn.highest_inbound_stream_id
        frame.error_code = NO_ERROR
        self.extra = self.conn.data_to_send() + frame.serialize()

    def ping(self, opaque: bytes) -> None:
        self.conn.ping(opaque)

    def data_to_send(self) -> bytes:
        extra = self.extra
        if extra:
            self.extra = b""
            return extra + self.conn.data_to_send()
        return self.conn.data_to_send()

    # -- what the peer allows --

    @property
    def max_concurrent_streams(self) -> int:
        """How many streams the peer lets the proxy open at once."""
        return self.conn.remote_settings.max_concurrent_streams

    @property
    def open_outbound_streams(self) -> int:
        return self.conn.open_outbound_streams

    def is_open(self, stream_id: int) -> bool:
        stream = self.conn.streams.get(stream_id)
        return stream is not None and not stream.closed

    # -- internals --

    def _settings(self, client_side: bool, connect_protocol: bool) -> None:
        """The SETTINGS the proxy starts with (h2's own are 100 streams and push on)."""
        values = {
            SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            SettingCodes.ENABLE_PUSH: 0,
        }
        if connect_protocol:  # extended CONNECT, RFC 8441 §3 (a server's setting)
            values[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        self.conn.local_settings = Settings(client=client_side, initial_values=values)

    def _send_some(self, stream_id: int, data: bytes) -> bytes:
        """Send as much of ``data`` as the windows allow; return the rest."""
        conn = self.conn
        window = conn.local_flow_control_window(stream_id)
        frame = conn.max_outbound_frame_size
        view = memoryview(data)
        sent = 0
        size = len(data)
        while sent < size and window > 0:
            piece = min(size - sent, window, frame)
            conn.send_data(stream_id, view[sent:sent + piece])
            sent += piece
            window -= piece
        return data[sent:] if sent < size else b""

    def _end(self, stream_id: int, trailers: Headers | None) -> None:
        conn = self.conn
        if trailers:
            conn.send_headers(stream_id, trailers, end_stream=True)
        else:
            conn.end_stream(stream_id)

    def _drain(self, stream_id: int) -> None:
        """A window opened (0: the connection's, or every stream's): send what waits."""
        if not self.waiting:
            return
        ids = list(self.waiting) if stream_id == 0 else [stream_id]
        drained: list[int] = []
        for sid in ids:
            waiting = self.waiting.get(sid)
            if waiting is None:
                continue
            if not self.is_open(sid):
                del self.waiting[sid]
                continue
            chunks = waiting.chunks
            while chunks:
                chunk = chunks.popleft()
                rest = self._send_some(sid, chunk)
                waiting.size -= len(chunk) - len(rest)
                if rest:
                    chunks.appendleft(rest)
                    break
            if not chunks:
                del self.waiting[sid]
                if waiting.end:
                    self._end(sid, waiting.trailers)
                drained.append(sid)
        if drained:
            self.handler.window_opened(drained)
