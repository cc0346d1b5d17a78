"""The default balancer through the real proxy on loopback: the two failures of issue 11,
as a user met them, with bounds derived in tests/unit/balance/test_expected_latency.py.

1. Three equal endpoints, a fresh ``tulle proxy -f``, 300 sequential requests: Linkerd's
   balancer left one endpoint with none.
2. ``tulle demo``'s endpoints (fast, slow ~60 ms, fast failing 5%): Linkerd's balancer
   sent the slow one 20–35% of the traffic.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proxy import RunningProxy, mesh_service
from tulle.demo.runner import DEMO_PROFILES
from tulle.demo.service import ServiceProfile, start_service


def sequential(proxy: RunningProxy, count: int) -> Counter[bytes]:
    """``count`` requests one after another on one keep-alive connection; the bodies."""
    bodies: Counter[bytes] = Counter()
    conn = http.client.HTTPConnection(*proxy.outbound, timeout=10)
    try:
        for _ in range(count):
            conn.request("GET", "/", headers={"Host": "web"})
            bodies[conn.getresponse().read()] += 1
    finally:
        conn.close()
    return bodies


@pytest.fixture
def backend_processes() -> Iterator[list[str]]:
    """Three equal backends, each its own process (threads of this process would share
    its interpreter lock with the client, and not be equal)."""
    processes = [
        subprocess.Popen([sys.executable, "-m", "tests.support.backend", "--name", f"b{i}"],
                         stdout=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    try:
        yield [p.stdout.readline().strip() for p in processes]  # type: ignore[union-attr]
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_equal_endpoints_share_evenly_from_the_first_request(
    backend_processes: list[str], manifests: Path
) -> None:
    """Three backend processes. Equal endpoints take exact turns, a cold first answer
    included (tests/unit/balance: 100 each). Real answers jitter, and on a busy machine a
    process is sometimes paused for tens of milliseconds; a paused one leaves the band,
    gets a second opinion within (quality ÷ 2 × best)^k turns, k ≤ 1 for a pause
    (opinions that count are 0.5 s apart), and is back on its first good answer. The
    bound leaves such a pause 18 turns: at least 82 of 300."""
    (manifests / "web.yaml").write_text(mesh_service("web", backend_processes))
    proxy = RunningProxy(manifests)  # the default balancer, fresh
    try:
        bodies = sequential(proxy, 300)
    finally:
        proxy.stop()
    counts = [bodies[f"b{i}".encode()] for i in range(3)]
    assert sum(counts) == 300
    assert min(counts) >= 82, counts


class DemoServices:
    """``tulle demo``'s three services on free ports, served by a loop in a thread."""

    def __init__(self, profiles: tuple[ServiceProfile, ...]) -> None:
        self.loop = asyncio.new_event_loop()
        self.sockets = []
        for _ in profiles:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.sockets.append(sock)
        self.addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in self.sockets]
        self.servers: list[asyncio.Server] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        for seed, (profile, sock) in enumerate(zip(profiles, self.sockets, strict=True)):
            started = asyncio.run_coroutine_threadsafe(start_service(profile, sock, seed),
                                                       self.loop)
            self.servers.append(started.result(timeout=5))

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def demo_services() -> Iterator[DemoServices]:
    services = DemoServices(DEMO_PROFILES)
    yield services
    services.close()


def test_the_slow_endpoint_stays_small_in_the_demo_mix(
    demo_services: DemoServices, manifests: Path
) -> None:
    """600 requests one at a time over fast (~5 ms), slow (~60 ms) and flaky (~5 ms,
    fails 5%): about 5 s, 100 turns a second. The slow one is out of the band after its
    2 warm-up answers (12×, 6× the band's edge); second opinions follow 6^k turns apart,
    k rising at most once per 0.5 s (50 turns): at most 1 + 50 / 6 = 9 at level 1, 2 at
    level 2, then one per level: 8 levels in 5 s at most, 17; no staleness probe (13 s).
    At most 2 + 17 = 19 of 600. The failing
    one's average failure rate is at most 5% × (1 - e^(-0.5)) = 2% over the run, so its
    turns are at least 1/1.2 of the fast one's: 40–52% of the requests."""
    (manifests / "web.yaml").write_text(mesh_service("web", demo_services.addresses))
    proxy = RunningProxy(manifests)
    try:
        bodies = sequential(proxy, 600)
    finally:
        proxy.stop()
    by_name = Counter[str]()
    for body, count in bodies.items():
        by_name[body.decode().split()[-1]] += count  # "hello from web-2", "... by web-3"
    fast, slow, flaky = (by_name[p.name] for p in DEMO_PROFILES)
    assert fast + slow + flaky == 600
    assert slow <= 19, by_name
    assert 0.40 <= flaky / 600 <= 0.52, by_name
    assert fast >= flaky, by_name
