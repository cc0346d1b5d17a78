"""A backend that answers every request with bytes the test gives, and keeps what it got.

For what a well-behaved server never sends (a response framed in a way the proxy
must refuse) and for seeing a request exactly as the proxy wrote it (trailers
included), which ``http.server`` would parse away. A request ends at the blank
line after its head, or, when the head says chunked, at the blank line after the
last chunk's trailers.
"""

from __future__ import annotations

import socket
import threading


def _request_end(buffer: bytes) -> int:
    """Where the first complete request in ``buffer`` ends, or -1."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return -1
    head = buffer[:head_end].lower()
    if b"transfer-encoding: chunked" not in head:
        return head_end + 4
    last_chunk = buffer.find(b"\r\n0\r\n", head_end)
    if last_chunk < 0:
        return -1
    trailers_end = buffer.find(b"\r\n\r\n", last_chunk + 2)
    return -1 if trailers_end < 0 else trailers_end + 4


class ScriptedBackend:
    """Answers each request with ``answer``; ``requests`` holds each one as received."""

    def __init__(self, answer: bytes, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            conn.settimeout(10)
            try:
                while True:
                    end = _request_end(buffer)
                    while end < 0:
                        piece = conn.recv(65536)
                        if not piece:
                            return
                        buffer += piece
                        end = _request_end(buffer)
                    with self._lock:
                        self.requests.append(buffer[:end])
                    buffer = buffer[end:]
                    conn.sendall(self.answer)
                    if self.close_after:
                        return
            except OSError:
                return

    def stop(self) -> None:
        self._listener.close()
