"""Run the real ``tulle proxy`` command for a test, on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

TULLE = str(Path(sys.executable).parent / "tulle")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mesh_service(name: str, endpoints: list[str], extra: str = "") -> str:
    """A MeshService manifest with these endpoint addresses."""
    lines = "\n".join(f'    - {{address: "{address}"}}' for address in endpoints)
    return (
        "apiVersion: tulle.dev/v1alpha1\nkind: MeshService\n"
        f"metadata: {{name: {name}}}\nspec:\n  endpoints:\n{lines}\n{extra}"
    )


class RunningProxy:
    """A ``tulle proxy`` child process with its outbound and admin addresses."""

    def __init__(
        self, manifests: Path, *extra_args: str, preexec: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.manifests = manifests
        self.outbound_port = free_port()
        self.admin_port = free_port()
        self.log_path = manifests.parent / f"proxy-{self.outbound_port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                TULLE, "proxy", "-f", str(manifests),
                "--outbound", f"127.0.0.1:{self.outbound_port}",
                "--admin", f"127.0.0.1:{self.admin_port}",
                "--inbound", "off", *extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,  # e.g. a lower open-files limit for the child
            env=env,
        )
        self.wait_ready()

    @property
    def outbound(self) -> tuple[str, int]:
        return ("127.0.0.1", self.outbound_port)

    def admin_get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tulle proxy exited: {self.log()}")
            try:
                if self.admin_get("/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"tulle proxy not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode


def metric(admin_port: int, name: str, **labels: str) -> float:
    """The value of one sample a proxy exposes (0.0 if it has none such)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
