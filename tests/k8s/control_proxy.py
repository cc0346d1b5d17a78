"""Run the real proxy (``ProxyServer``) on a ``ControlSource``, as ``tulle proxy --control``
will once the CLI flag is wired; tests start it as a child process like RunningProxy."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    import uvloop

    from tulle.config import Address
    from tulle.discovery.control_client import ControlSource
    from tulle.proxy import ProxyOptions, ProxyServer

    control, outbound, admin = sys.argv[1:4]
    logging.basicConfig(level="INFO", stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        source = ControlSource(control, proxy_id=f"test-{outbound}", admin=admin)
        options = ProxyOptions(outbound=Address.parse(outbound), admin=Address.parse(admin),
                               inbound_enabled=False)
        server = ProxyServer(options, source=source)
        await server.start()
        await server.serve_until_stopped()

    uvloop.run(run())


class ControlProxy:
    """A proxy child process fed by the control plane at ``control``."""

    def __init__(self, control: str, log_dir: Path) -> None:
        self.outbound_port, self.admin_port = free_port(), free_port()
        self.log_path = log_dir / f"proxy-{self.outbound_port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, __file__, control, f"127.0.0.1:{self.outbound_port}",
             f"127.0.0.1:{self.admin_port}"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"proxy exited: {self.log()}")
            try:
                url = f"http://127.0.0.1:{self.admin_port}/ready"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"proxy not ready: {self.log()}")

    @property
    def outbound(self) -> tuple[str, int]:
        return ("127.0.0.1", self.outbound_port)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log.close()


if __name__ == "__main__":
    main()
