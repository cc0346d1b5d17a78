"""Run Debian's real ``prometheus`` for a test: temp config and data, 1 s scrapes, loopback."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.support.proxy import free_port


class RunningPrometheus:
    """A prometheus child process scraping the given admin addresses every second."""

    def __init__(self, binary: str, folder: Path, targets: list[str]) -> None:
        config = folder / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: tulle\n"
            f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
        )
        self.port = free_port()
        self.log_path = folder / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _get(self, path: str) -> tuple[int, bytes]:
        # An opener without proxies: HTTP_PROXY must not send this through the mesh.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.url + path, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()}")
            try:
                if self._get("/-/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready: {self.log_path.read_text()}")

    def query(self, expr: str) -> dict[str, object]:
        """The /api/v1/query answer (``status``, ``data``, or ``error``)."""
        status, body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        answer = json.loads(body)
        answer["httpStatus"] = status
        return answer

    def query_until(self, expr: str, timeout: float) -> list[dict[str, object]]:
        """Poll until the query returns at least one series (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:  # bounded by the deadline
            answer = self.query(expr)
            result = answer.get("data", {}).get("result", [])  # type: ignore[union-attr]
            if result or time.monotonic() > deadline:
                return result  # type: ignore[no-any-return]
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
