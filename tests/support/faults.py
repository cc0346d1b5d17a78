"""Backends that fail on purpose: a process that can be killed or frozen, and one that
can hang."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class BackendProcess:
    """`tests.support.backend` in a child process: kill -9 is a real crash."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.backend", "--name", name, "--port", str(port)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().decode().strip()

    def freeze(self) -> None:
        """SIGSTOP: the process stops answering, but the kernel still accepts connections
        and takes requests into its buffers (a long GC pause, a stuck host)."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class HangingBackend:
    """Accepts connections and reads requests; answers (with ``status``) only while
    ``hanging`` is False."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.hanging = True
        self.status = 200
        self.requests = 0
        self._stopped = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            conn.settimeout(30)
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        piece = conn.recv(65536)
                        if not piece:
                            return
                        buffer += piece
                    _, _, buffer = buffer.partition(b"\r\n\r\n")
                    with self._lock:
                        self.requests += 1
                    if self.hanging:
                        while conn.recv(65536):  # hold the request until the proxy gives up
                            pass
                        return
                    conn.sendall(b"HTTP/1.1 %d Status\r\nContent-Length: 7\r\n\r\nhealthy"
                                 % self.status)
            except OSError:
                return

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
