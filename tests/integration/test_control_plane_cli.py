"""The control plane off Kubernetes, through the real commands: `tulle control -f`,
`tulle proxy --control`, and `tulle stat --control` reading every subscribed proxy."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.client import get
from tests.support.proxy import TULLE, free_port, mesh_service
from tulle.cli.admins import proxies_of_control_plane


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the process exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} not ready after {timeout}s")


@pytest.fixture
def control_plane(manifests: Path, backends: list[Backend]) -> Iterator[str]:
    (manifests / "web.yaml").write_text(mesh_service("web", [b.address for b in backends]))
    port = free_port()
    process = subprocess.Popen(
        [TULLE, "control", "-f", str(manifests), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(f"{url}/ready", process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_stat_reads_every_proxy_subscribed_to_the_control_plane(control_plane: str) -> None:
    proxies = []
    try:
        for _ in range(2):
            outbound, admin = free_port(), free_port()
            process = subprocess.Popen(
                [TULLE, "proxy", "--control", control_plane, "--inbound", "off",
                 "--outbound", f"127.0.0.1:{outbound}", "--admin", f"127.0.0.1:{admin}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            proxies.append(process)
            _wait_ready(f"http://127.0.0.1:{admin}/ready", process)
            for _ in range(20):
                assert get(("127.0.0.1", outbound))[0] == 200
        with urllib.request.urlopen(f"{control_plane}/proxies", timeout=5) as response:
            assert len(json.load(response)["proxies"]) == 2

        result = subprocess.run(
            [TULLE, "stat", "--control", control_plane, "--window", "1s", "-o", "json"],
            capture_output=True, text=True, timeout=30, check=True,
        )
        shown = json.loads(result.stdout)
        assert any(row["service"] == "web" for row in shown["rows"])
        listed = " ".join(shown["tcpOpenConnections"])
        # Both proxies were read; the control plane names each by the id it subscribed
        # with (the proxy's pid here).
        assert all(f"pid-{process.pid} " in listed for process in proxies), listed
    finally:
        for process in proxies:
            process.terminate()
            process.wait(10)



def test_a_proxy_with_workers_is_read_once_through_its_one_admin_address(
    control_plane: str,
) -> None:
    """Each worker subscribes; the monitoring commands read the supervisor's admin once."""
    outbound, admin = free_port(), free_port()
    process = subprocess.Popen(
        [TULLE, "proxy", "--control", control_plane, "--workers", "2", "--inbound", "off",
         "--outbound", f"127.0.0.1:{outbound}", "--admin", f"127.0.0.1:{admin}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{admin}/ready", process)
        assert get(("127.0.0.1", outbound))[0] == 200
        with urllib.request.urlopen(f"{control_plane}/proxies", timeout=5) as response:
            subscribed = json.load(response)["proxies"]
        public = f"127.0.0.1:{admin}"
        assert [entry["admin"] for entry in subscribed] == [public, public]
        assert [found for found, _ in proxies_of_control_plane(control_plane)] == [public]
    finally:
        process.terminate()
        assert process.wait(15) == 0
