"""What an idle proxy keeps out of its memory (issue 10): libraries it loads only when
something needs them, what the process serving traffic never loads (the command line's
and the configuration checker's), and what the workers' supervisor never loads. A real
``tulle proxy``, with a ``sitecustomize`` that has each Python process write the
modules it had loaded when it exited."""

from __future__ import annotations

import json
import os
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

# Loaded by every Python started with it on PYTHONPATH: at exit, the process writes its
# modules to <folder>/<pid>.json. A process that execs another program never exits, so
# `tulle proxy`'s own file is written by the proxy process it becomes (same PID).
PROBE = (
    "import atexit, json, os, sys\n"
    "def _write():\n"
    "    folder = os.environ['TULLE_TEST_MODULES']\n"
    "    with open(os.path.join(folder, f'{os.getpid()}.json'), 'w') as out:\n"
    "        json.dump(sorted(sys.modules), out)\n"
    "atexit.register(_write)\n"
)


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _body(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return bytes(response.read())


def modules_loaded(tmp_path: Path, use: Callable[[int, int], None] | None = None,
                   options: tuple[str, ...] = ()) -> set[str]:
    """The modules a proxy on one service (run with ``options`` too) had loaded when it
    stopped, after ``use`` was given its outbound and admin ports."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(mesh_service("web", ["127.0.0.1:9"]))
    probe, written = tmp_path / "probe", tmp_path / "modules"
    probe.mkdir()
    written.mkdir()
    (probe / "sitecustomize.py").write_text(PROBE)
    outbound, admin = free_port(), free_port()
    environment = {**os.environ, "TULLE_TEST_MODULES": str(written),
                   "PYTHONPATH": os.pathsep.join(filter(None, (
                       str(probe), os.environ.get("PYTHONPATH"))))}
    process = subprocess.Popen(
        [sys.executable, "-m", "tulle", "proxy", "-f", str(manifests),
         "--outbound", f"127.0.0.1:{outbound}", "--admin", f"127.0.0.1:{admin}",
         "--inbound", "off", *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
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
        process.wait(timeout=15)
    finally:
        process.kill()
        process.wait()
    return set(json.loads((written / f"{process.pid}.json").read_text()))


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


def test_the_process_serving_traffic_never_loaded_the_cli_or_the_configuration_checker(
        tmp_path: Path) -> None:
    # tulle proxy checks the manifests, then execs the proxy process (tulle.proxy.process).
    loaded = modules_loaded(tmp_path)
    assert "tulle.proxy.process" in loaded
    assert not {name for name in loaded
                if name.split(".")[0] in ("click", "pydantic", "pydantic_core", "yaml")
                or name in ("tulle.config.loading", "tulle.cli.main")}


def test_a_reload_is_checked_in_a_child_and_loads_no_schema_here(tmp_path: Path) -> None:
    def reload(outbound: int, admin: int) -> None:
        (tmp_path / "manifests" / "api.yaml").write_text(mesh_service("api", ["127.0.0.1:9"]))
        deadline = time.monotonic() + 15
        while b"api" not in _body(admin, "/endpoints"):
            assert time.monotonic() < deadline, "the new service never appeared"
            time.sleep(0.1)

    loaded = modules_loaded(tmp_path, reload)
    assert "tulle.config.checker" in loaded
    assert not {name for name in loaded if name.split(".")[0] in ("pydantic", "yaml")}


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
