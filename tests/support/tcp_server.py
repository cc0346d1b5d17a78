"""A plain TCP server for opaque-TCP tests: echo, a server that speaks first, a flood.

Each accepted connection gets a thread. ``banner`` is written as soon as a connection is
accepted (SMTP and MySQL servers speak first); then what the client sends is echoed
until it shuts its side, and the server shuts its own. ``flood`` bytes are written
instead of echoing, once the client has said something, as fast as the peer takes them
(a server far faster than its reader).
"""

from __future__ import annotations

import socket
import socketserver
import threading


class _Handler(socketserver.BaseRequestHandler):
    server: TcpServer

    def handle(self) -> None:
        server = self.server
        sock: socket.socket = self.request
        with server.lock:
            server.connections += 1
        try:
            if server.banner:
                sock.sendall(server.banner)
            if server.flood:
                sock.recv(64)  # the request; unread bytes would make the close a reset
                chunk = b"x" * 65536
                left = server.flood
                while left > 0:
                    sock.sendall(chunk[:left])
                    left -= len(chunk)
                return
            while data := sock.recv(65536):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, banner: bytes = b"", flood: int = 0, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.banner = banner
        self.flood = flood
        self.lock = threading.Lock()
        self.connections = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> TcpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
