"""What an idle proxy keeps out of its memory (issue 10): libraries it loads only when
something needs them, and what the workers' supervisor never loads. A real ``tulle
proxy``, run in a probe that lists the modules it had loaded when it stopped."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.support.proxy import free_port, mesh_service

# Runs the `tulle` command in this interpreter; once it exits (SIGTERM), prints sys.modules.
PROBE = (
    "import json, sys\n"
    "from tulle.cli.main import cli\n"
    "try:\n    cli(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def modules_loaded(tmp_path: Path, use: Callable[[int, int], None] | None = None,
                   options: tuple[str, ...] = ()) -> set[str]:
    """The modules a proxy on one service (run with ``options`` too) had loaded when it
    stopped, after ``use`` was given its outbound and admin ports."""
    manifest = tmp_path / "web.yaml"
    manifest.write_text(mesh_service("web", ["127.0.0.1:9"]))
    outbound, admin = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE, "proxy", "-f", str(manifest),
         "--outbound", f"127.0.0.1:{outbound}", "--admin", f"127.0.0.1:{admin}",
         "--inbound", "off", *options],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, "the proxy exited"
            assert time.monotonic() < deadline, "the proxy was not ready in 15 s"
            try:
                if _get(admin, "/ready") == 200:
                    break
            except OSError:
                time.sleep(0.05)
        if use is not None:
            use(outbound, admin)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=15)
    finally:
        process.kill()
        process.wait()
    return set(json.loads(out.splitlines()[-1]))


def _scrape(outbound: int, admin: int) -> None:
    assert _get(admin, "/metrics") == 200


def _speak_http2(outbound: int, admin: int) -> None:
    with socket.create_connection(("127.0.0.1", outbound), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert sock.recv(9)[3] == 0x4  # the proxy's SETTINGS: it speaks HTTP/2


def test_an_idle_proxy_has_not_loaded_prometheus_client_or_h2(tmp_path: Path) -> None:
    loaded = modules_loaded(tmp_path)
    assert "tulle.proxy.server" in loaded  # the probe saw a proxy run
    assert not {name for name in loaded
                if name.split(".")[0] in ("prometheus_client", "h2", "hpack", "hyperframe")}


def test_the_first_scrape_loads_prometheus_client(tmp_path: Path) -> None:
    assert "prometheus_client.exposition" in modules_loaded(tmp_path, _scrape)


def test_the_first_http2_client_loads_h2(tmp_path: Path) -> None:
    assert "h2.connection" in modules_loaded(tmp_path, _speak_http2)


def test_the_workers_supervisor_loads_no_configuration_checking(tmp_path: Path) -> None:
    # It runs no proxy: pydantic, PyYAML and the schema are its workers' to load.
    loaded = modules_loaded(tmp_path, _scrape, options=("--workers", "2"))
    assert "tulle.proxy.workers" in loaded  # the probe was the supervisor
    assert not {name for name in loaded
                if name.split(".")[0] in ("pydantic", "pydantic_core", "yaml")
                or name.startswith("tulle.config")}
