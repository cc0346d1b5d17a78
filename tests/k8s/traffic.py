"""Steady requests through a proxy from a background thread, recording who answered when."""

from __future__ import annotations

import http.client
import threading
import time


class Load:
    """Sends GET / with Host ``host`` in a loop (bounded by ``limit`` seconds) until stopped."""

    def __init__(self, address: tuple[str, int], host: str, limit: float = 60.0,
                 threads: int = 2) -> None:
        self.address, self.host, self.limit = address, host, limit
        self.lock = threading.Lock()
        self.seen: list[tuple[float, str]] = []  # (time, backend name)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        conn = http.client.HTTPConnection(*self.address, timeout=5)
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
                with self.lock:
                    if response.status == 200:
                        self.seen.append((time.monotonic(), body.strip()))
                    else:
                        self.failures.append(f"{response.status} {body[:100]}")
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(*self.address, timeout=5)
        conn.close()

    def first_seen(self, name: str, after: float) -> float | None:
        with self.lock:
            return next((t for t, who in self.seen if who == name and t >= after), None)

    def last_seen(self, name: str) -> float | None:
        with self.lock:
            return max((t for t, who in self.seen if who == name), default=None)

    def wait_for(self, name: str, after: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.first_seen(name, after)
            if seen is not None:
                return seen
            time.sleep(0.02)
        return None
