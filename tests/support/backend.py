"""A controllable HTTP/1.1 backend for integration tests.

Built on the standard library's ``http.server`` on purpose: an implementation
independent of Tulle's codec, so a bug in the codec cannot hide itself by being
on both ends. Each backend runs in a thread and counts the connections and
requests it sees. Paths choose the behaviour:

``/``               200 with the backend's name
``/echo``           200 with the request body (read as Content-Length or chunked)
``/count``          200 with the number of request-body bytes received (streamed)
``/bytes/N``        N bytes, Content-Length framed, written in 64 KiB pieces
``/chunked/N``      N bytes in chunks, with a trailer ``x-checksum``
``/eof/N``          N bytes framed by closing the connection (no length, HTTP/1.0 style)
``/truncated/N``    announces N bytes, sends half, closes
``/sleep/MS``       200 after MS milliseconds
``/status/N``       status N, empty body
``/headers``        the request headers as received, one per line
``/reset``          closes the connection without answering
``/garbage``        answers with bytes that are not HTTP
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out in separate writes: without this, Nagle's
    # algorithm holds the body until the delayed ACK (~40 ms) of the head.
    disable_nagle_algorithm = True
    server: Backend

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _count_body(self) -> int:
        length = int(self.headers.get("Content-Length") or 0)
        remaining, total = length, 0
        while remaining:
            piece = self.rfile.read(min(remaining, 65536))
            if not piece:
                break
            total += len(piece)
            remaining -= len(piece)
        return total

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        server = self.server
        with server.lock:
            server.requests += 1
            server.last_headers = list(self.headers.items())
            server.methods.append(self.command)
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        verb = parts[0]
        arg = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if verb == "count":
            self._send(200, str(self._count_body()).encode())
            return
        body = self._read_body()
        if verb == "echo":
            self._send(200, body)
        elif verb == "bytes":
            self.send_response(200)
            self.send_header("Content-Length", str(arg))
            self.end_headers()
            remaining = arg
            while remaining and self.command != "HEAD":
                piece = min(remaining, 65536)
                self.wfile.write(b"x" * piece)
                remaining -= piece
        elif verb == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "x-checksum")
            self.end_headers()
            remaining = arg
            while remaining:
                piece = min(remaining, 65536)
                self.wfile.write(b"%x\r\n%s\r\n" % (piece, b"y" * piece))
                remaining -= piece
            self.wfile.write(b"0\r\nx-checksum: %d\r\n\r\n" % arg)
        elif verb == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(arg))
            self.end_headers()
            self.wfile.write(b"t" * (arg // 2))
            self.close_connection = True
        elif verb == "eof":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"z" * arg)
            self.close_connection = True
        elif verb == "sleep":
            time.sleep(arg / 1000)
            self._send(200, b"slept")
        elif verb == "status":
            self._send(arg, b"")
        elif verb == "headers":
            lines = "".join(f"{k.lower()}: {v}\n" for k, v in self.headers.items())
            self._send(200, lines.encode())
        elif verb == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            self.close_connection = True
        elif verb == "garbage":
            self.wfile.write(b"this is not http\r\n\r\n")
            self.close_connection = True
        else:
            self._send(200, server.name.encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


class Backend(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    allow_reuse_address = True

    def __init__(self, name: str, port: int = 0, host: str = "127.0.0.1") -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.name = name
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.last_headers: list[tuple[str, str]] = []
        self.methods: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def server_bind(self) -> None:
        # Not HTTPServer's: it asks DNS for the host's name (socket.getfqdn), which in a
        # network namespace with no resolver waits for a timeout.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def reset_counts(self) -> None:
        with self.lock:
            self.connections = 0
            self.requests = 0
            self.methods.clear()

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> Backend:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main() -> None:
    """Run one backend as its own process (so a test can kill it like a crashed server)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server = Backend(args.name, args.port, args.host)
    print(server.address, flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
