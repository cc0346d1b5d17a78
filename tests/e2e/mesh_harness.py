"""A running mesh for the monitoring tests: backends, a real proxy with tap, steady load.

`MonitoredMesh` starts three backends for service ``web`` and one for ``api``,
a real ``tulle proxy`` (with ``--allow-tap``) and a load
generator that sends a known mix: every ``FAIL_EVERY``-th request to ``web``
goes to ``/status/500``. The generator counts what it got back, so tests can
compare what the monitoring shows with what the client saw.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.support.backend import Backend
from tests.support.proxy import TULLE, free_port, mesh_service
from tests.support.tools import skip_outside_ci

REPO = Path(__file__).resolve().parents[2]
FAIL_EVERY = 4  # a quarter of web's requests fail: a share no rounding can hide


def require_tool(name: str, path: str | None = None) -> str:
    """The tool's path; skip without it locally, fail without it in CI (CI=true)."""
    found = path if path and Path(path).exists() else shutil.which(name)
    if found is None:
        skip_outside_ci(
            f"{name} is not installed (make test installs it: scripts/install-system-deps.sh)"
        )
    return found



class LoadGenerator(threading.Thread):
    """Requests through the proxy at about ``rps``, counting successes and failures."""

    def __init__(self, outbound: tuple[str, int], rps: float) -> None:
        super().__init__(daemon=True)
        self.outbound = outbound
        self.interval = 1.0 / rps
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, int], int] = {}  # (service, status) -> responses
        self.sent = 0

    def _plan(self, index: int) -> tuple[str, str]:
        if index % 5 == 4:
            return "api", "/sleep/20"
        return "web", "/status/500" if index % FAIL_EVERY == 3 else f"/items/{index % 3}"

    def run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        index = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():  # bounded by stop()
            host, path = self._plan(index)
            index += 1
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(*self.outbound, timeout=5)
                connection.request("GET", path, headers={"Host": host})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                if connection is not None:
                    connection.close()
                connection = None
                status = 0
            with self.lock:
                self.counts[(host, status)] = self.counts.get((host, status), 0) + 1
                self.sent += 1
            next_at += self.interval
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))
        if connection is not None:
            connection.close()

    def snapshot(self) -> dict[tuple[str, int], int]:
        with self.lock:
            return dict(self.counts)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)


class MonitoredMesh:
    """Backends + proxy (tap allowed) + load; `stop()` ends all of it."""

    def __init__(self, folder: Path, rps: float = 40.0) -> None:
        self.web = [Backend(f"web-{i}").start() for i in range(3)]
        self.api = [Backend("api-0").start()]
        manifests = folder / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        # round-robin named explicitly: the test is about monitoring, not the default balancer.
        policy = "  loadBalancer: {algorithm: round-robin}\n"
        (manifests / "web.yaml").write_text(
            mesh_service("web", [b.address for b in self.web], policy))
        (manifests / "api.yaml").write_text(
            mesh_service("api", [b.address for b in self.api], policy))
        self.manifests = manifests
        self.outbound_port = free_port()
        self.admin_port = free_port()
        self.log_path = folder / "proxy.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [TULLE, "proxy", "-f", str(manifests), "--allow-tap",
             "--outbound", f"127.0.0.1:{self.outbound_port}",
             "--admin", f"127.0.0.1:{self.admin_port}", "--inbound", "off"],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._wait_ready()
        self.load = LoadGenerator(("127.0.0.1", self.outbound_port), rps)
        self.load.start()

    @property
    def admin(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"proxy exited: {self.log_path.read_text()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=1)
                connection.request("GET", "/ready")
                if connection.getresponse().status == 200:
                    connection.close()
                    return
                connection.close()
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"proxy not ready: {self.log_path.read_text()}")

    def stop(self) -> None:
        self.load.stop()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        for backend in self.web + self.api:
            backend.stop()
