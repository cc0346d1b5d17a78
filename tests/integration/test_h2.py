"""HTTP/2 through the proxy with real peers: curl and nghttp as clients, nghttpd (h2c)
and the HTTP/1.1 test backend as endpoints, in every combination of versions."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.tools import find_tool
from tests.support.backend import Backend
from tests.support.proxy import RunningProxy, free_port, mesh_service
from tests.support.tools import require_tools

BIG = 3 * 1024 * 1024 + 17  # past every window on the way


@pytest.fixture(scope="module")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docroot")
    (root / "index.html").write_bytes(b"hello from nghttpd\n")
    (root / "big").write_bytes(bytes(range(256)) * (BIG // 256) + b"x" * (BIG % 256))
    return root


@pytest.fixture(scope="module")
def nghttpd(docroot: Path) -> Iterator[str]:
    """An h2c-only endpoint (nghttpd, --no-tls), echoing uploads."""
    require_tools(["nghttpd"])
    port = free_port()
    process = subprocess.Popen(
        [find_tool("nghttpd"), "--no-tls", "--echo-upload", "-d", str(docroot), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_listening(port)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(5)


def _wait_listening(port: int) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@pytest.fixture(scope="module")
def h1_backend() -> Iterator[Backend]:
    server = Backend("h1-backend").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(nghttpd: str, h1_backend: Backend,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    manifests = tmp_path_factory.mktemp("h2") / "manifests"
    manifests.mkdir()
    (manifests / "services.yaml").write_text(
        mesh_service("web", [h1_backend.address]) + "---\n"
        + mesh_service("h2web", [nghttpd], "  protocol: http2\n"))
    running = RunningProxy(manifests)
    yield running
    running.stop()


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    require_tools(["curl"])
    return subprocess.run([find_tool("curl"), "-s", *args], capture_output=True, timeout=30)


def test_curl_with_prior_knowledge_to_an_http1_endpoint(
    proxy: RunningProxy, h1_backend: Backend
) -> None:
    url = f"http://127.0.0.1:{proxy.outbound_port}/headers"
    done = curl("-i", "--http2-prior-knowledge", "-H", "Host: web", "-H", "Cookie: a=1",
                "-H", "Cookie: b=2", url)
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200"), done
    assert b"via: 2 tulle" in head
    # Translated to HTTP/1.1 (RFC 9113 §8.2.3): :authority became Host, cookies joined.
    lines = body.decode().lower().splitlines()
    assert "host: web" in lines
    assert "cookie: a=1; b=2" in lines
    assert any(line.startswith("via: 1.1 tulle (") for line in lines)  # the HTTP/1.1 hop


def test_http1_and_http2_clients_reach_an_h2c_only_endpoint(
    proxy: RunningProxy, docroot: Path
) -> None:
    url = f"http://127.0.0.1:{proxy.outbound_port}/big"
    want = hashlib.sha256((docroot / "big").read_bytes()).hexdigest()
    for version in ("--http1.1", "--http2-prior-knowledge"):
        done = curl(version, "-H", "Host: h2web", url)
        assert hashlib.sha256(done.stdout).hexdigest() == want, version


def test_uploads_cross_both_translations(proxy: RunningProxy, tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(bytes(range(251)) * 8000)  # ~2 MB, no Content-Length framing issues
    url = f"http://127.0.0.1:{proxy.outbound_port}/echo"
    for version, host in (("--http2-prior-knowledge", "web"),
                          ("--http2-prior-knowledge", "h2web"), ("--http1.1", "h2web")):
        done = curl(version, "-H", f"Host: {host}", "--data-binary", f"@{payload}", url)
        assert done.stdout == payload.read_bytes(), (version, host, len(done.stdout))


def test_nghttp_multiplexes_many_streams_on_one_connection(proxy: RunningProxy) -> None:
    require_tools(["nghttp"])
    url = f"http://127.0.0.1:{proxy.outbound_port}/index.html"
    done = subprocess.run(
        [find_tool("nghttp"), "-nv", "-m", "40", "-H", ":authority: h2web", url],
        capture_output=True, timeout=30)
    out = done.stdout.decode()
    assert done.returncode == 0, out[-2000:]
    # 40 requests, each answered 200 on its own stream, on one connection.
    assert len(re.findall(r"recv HEADERS frame <[^>]*stream_id=(\d+)>", out)) == 40
    assert out.count(":status: 200") == 40
    assert len(set(re.findall(r"send HEADERS frame <[^>]*stream_id=(\d+)>", out))) == 40


def test_nghttp_ping_and_settings_are_answered(proxy: RunningProxy) -> None:
    require_tools(["nghttp"])
    url = f"http://127.0.0.1:{proxy.outbound_port}/index.html"
    done = subprocess.run(
        [find_tool("nghttp"), "-nv", "--window-bits=20", "--max-concurrent-streams=7",
         "-H", ":authority: h2web", url], capture_output=True, timeout=30)
    out = done.stdout.decode()
    assert done.returncode == 0, out[-2000:]
    assert re.search(r"recv SETTINGS frame <length=0, flags=0x01", out)  # our ACK
    assert re.search(r"SETTINGS_MAX_CONCURRENT_STREAMS\(0x03\):100", out)


def test_curl_upgrades_to_h2c_from_http1(proxy: RunningProxy) -> None:
    """``curl --http2`` on an http:// URL asks ``Upgrade: h2c`` (RFC 7540 §3.2): the proxy
    answers 101 and the rest of the connection is HTTP/2, the first request its stream 1."""
    url = f"http://127.0.0.1:{proxy.outbound_port}/index.html"
    done = curl("-v", "--http2", "-H", "Host: h2web", url, url)
    log = done.stderr.decode()
    assert done.returncode == 0, log
    assert "HTTP/1.1 101 Switching Protocols" in log
    assert log.count("< HTTP/2 200") == 2  # the upgraded request, then one more on stream 3
    assert done.stdout == b"hello from nghttpd\n" * 2
