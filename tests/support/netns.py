"""Network namespaces for tests that need a pod's network: real iptables, real NAT.

A meshed pod's network is a network namespace, and that part of Kubernetes is real
here (shared/KUBERNETES-TESTING.md, "A pod's network"): ``ip netns add`` makes one,
``iptables`` installs NAT rules inside it, and every process of the "pod" runs in it
through ``ip netns exec``. Nothing touches the machine's own namespace. Each process
is stopped by its PID, and the namespace is deleted, when the test is done.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.tools import require_tools, skip_outside_ci

_names = itertools.count(1)
PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[2]


def require_namespaces() -> None:
    """Skip (fail in CI) unless this process may make namespaces and NAT rules."""
    require_tools(["ip", "iptables", "curl", "setpriv"])
    if os.geteuid() != 0:
        skip_outside_ci("network namespaces and iptables need root")


def readable_copy(files: dict[str, str]) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder holding ``files`` that other UIDs (the proxy's) can read;
    pytest's own temporary folders are private to root."""
    folder = tempfile.TemporaryDirectory(prefix="tulle-netns-")
    os.chmod(folder.name, 0o755)
    for name, text in files.items():
        path = Path(folder.name) / name
        path.write_text(text)
        path.chmod(0o644)
    return folder


class NetworkNamespace:
    """``ip netns add`` on entry, every process stopped and ``ip netns delete`` on exit."""

    def __init__(self, prefix: str, log_dir: Path) -> None:
        self.name = f"tulle-{prefix}-{os.getpid()}-{next(_names)}"
        self.log_dir = log_dir
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def __enter__(self) -> NetworkNamespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def hosts(self, entries: dict[str, str]) -> None:
        """Names this namespace's processes resolve (``ip netns exec`` mounts
        /etc/netns/NAME/hosts over /etc/hosts for each command), as cluster DNS would."""
        folder = Path("/etc/netns") / self.name
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", *(f"{ip} {name}" for name, ip in entries.items())]
        (folder / "hosts").write_text("\n".join(lines) + "\n")

    def command(self, *args: str, uid: int | None = None) -> list[str]:
        prefix = ["ip", "netns", "exec", self.name]
        if uid is not None:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        return [*prefix, *args]

    def run(self, *args: str, uid: int | None = None, check: bool = True,
            timeout: float = 30.0, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.command(*args, uid=uid), capture_output=True, text=True,
                                timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): "
                               f"{result.stdout}{result.stderr}")
        return result

    def spawn(self, name: str, *args: str, uid: int | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running process in the namespace; its output goes to a log file."""
        log_path = self.log_dir / f"{self.name}-{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(self.command(*args, uid=uid), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, cwd=REPO)
        self.processes.append((process, log_path))
        return process

    @contextlib.contextmanager
    def load(self, url: str, *, uid: int | None = None, seconds: float = 5.0,
             pause: float = 0.05) -> Iterator[None]:
        """Requests to ``url`` one after another (bounded: ``seconds``) while in the block."""
        script = (f"end=$(( $(date +%s) + {int(seconds) + 1} )); while [ $(date +%s) -lt $end ];"
                  f" do curl -s -o /dev/null --max-time 2 {url}; sleep {pause}; done")
        process = self.spawn("load", "sh", "-c", script, uid=uid)
        try:
            yield
        finally:
            process.terminate()
            process.wait(10)

    def backend(self, name: str, host: str, port: int) -> subprocess.Popen[bytes]:
        """tests.support.backend serving ``host:port`` in the namespace, answering its name."""
        process = self.spawn(name, PYTHON, "-m", "tests.support.backend", "--name", name,
                             "--host", host, "--port", str(port))
        self.wait_for_port(host, port, process)
        return process

    def wait_for_port(self, host: str, port: int, process: subprocess.Popen[bytes],
                      timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        probe = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], "
                 "int(sys.argv[2])), 1).close()\nexcept OSError:\n sys.exit(1)")
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"exited: {self.logs()}")
            if self.run(PYTHON, "-c", probe, host, str(port), check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"nothing listens on {host}:{port} in {self.name}: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for _, path in self.processes if path.exists())

    def close(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes.clear()
        subprocess.run(["ip", "netns", "delete", self.name], check=False)
        shutil.rmtree(Path("/etc/netns") / self.name, ignore_errors=True)
