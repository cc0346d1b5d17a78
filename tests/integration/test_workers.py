"""``tulle proxy --workers 2``: real worker processes on one SO_REUSEPORT port.

Each request goes on a fresh connection, which the kernel hands to one worker by a hash
of its addresses (random per connection): n connections all land on the same one of two
workers with probability 2^(1-n), so with n >= 30 "both workers served" fails about once
in 500 million runs. Which worker served what is read from each worker's own admin
port (listed on the supervisor's /workers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.client import get
from tests.support.proxy import RunningProxy, mesh_service
from tulle.telemetry.scrape import fetch_metrics

TULLE = str(Path(sys.executable).parent / "tulle")
ROUND_ROBIN = "  loadBalancer: {algorithm: round-robin}\n"


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def workers(proxy: RunningProxy) -> list[dict[str, object]]:
    status, body = proxy.admin_get("/workers")
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


def counted(admin: str, endpoint: str = "") -> float:
    """request_total of ``web`` (to ``endpoint`` only, if given) on this admin port."""
    total = 0.0
    for line in fetch_metrics(admin).splitlines():
        if not line.startswith("request_total{") or 'dst_service="web"' not in line:
            continue
        if not endpoint or f'endpoint="{endpoint}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def gauge(admin: str, name: str) -> float:
    for line in fetch_metrics(admin).splitlines():
        if line.startswith(f"{name} ") or line.startswith(f"{name}{{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose only once reaped; /proc shows its state.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] != "Z"


class TwoWorkers:
    """A 2-worker proxy; every worker pid it ever had is checked gone at the end."""

    def __init__(self, manifests: Path, *args: str) -> None:
        self.proxy = RunningProxy(manifests, "--workers", "2", *args)
        self.pids: set[int] = set()

    def admins(self) -> list[str]:
        listed = workers(self.proxy)
        self.pids.update(int(w["pid"]) for w in listed if w["pid"])  # type: ignore[call-overload]
        return [str(w["admin"]) for w in listed]

    @property
    def public(self) -> str:
        return f"127.0.0.1:{self.proxy.admin_port}"

    def stop(self) -> int:
        if self.proxy.process.poll() is None:
            self.admins()  # the pids of the workers serving now
        code = self.proxy.stop()
        assert eventually(lambda: not any(alive(pid) for pid in self.pids), 5.0), (
            "a worker outlived its supervisor")
        return code


@pytest.fixture
def two_workers(backends: list[Backend], manifests: Path) -> Iterator[TwoWorkers]:
    (manifests / "web.yaml").write_text(mesh_service("web", [backends[0].address]))
    running = TwoWorkers(manifests, "--allow-tap")
    yield running
    running.stop()


def test_requests_are_served_by_both_workers_and_counted_once_on_the_public_port(
    two_workers: TwoWorkers, backends: list[Backend]
) -> None:
    admins = two_workers.admins()
    assert len(admins) == 2 and [w["state"] for w in workers(two_workers.proxy)] == [
        "serving", "serving"]
    for index in range(40):
        assert get(two_workers.proxy.outbound, f"/r{index}")[0] == 200
    per_worker = [counted(admin) for admin in admins]
    assert all(count > 0 for count in per_worker), per_worker
    assert sum(per_worker) == 40
    assert counted(two_workers.public) == 40
    assert counted(two_workers.public, backends[0].address) == 40
    assert gauge(two_workers.public, "tulle_workers_serving") == 2
    # /endpoints: one entry for the endpoint, the workers' views merged.
    status, body = two_workers.proxy.admin_get("/endpoints")
    assert status == 200
    [web] = json.loads(body)["outbound"]
    assert [e["address"] for e in web["endpoints"]] == [backends[0].address]
    assert web["endpoints"][0]["state"] == "active"


def test_tulle_tap_on_the_public_port_sees_the_requests_of_every_worker(
    two_workers: TwoWorkers,
) -> None:
    admins = two_workers.admins()
    tap = subprocess.Popen(
        [TULLE, "tap", "web", "--admin", two_workers.public, "--rate", "100",
         "--max-events", "30", "-o", "json", "--duration", "20s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Tapped: each worker's admin has the relay's stream open, besides this scrape.
        assert eventually(lambda: all(
            gauge(admin, "tulle_admin_open_connections") >= 2 for admin in admins))
        sent = {f"/tapped/{index}" for index in range(30)}
        for path in sorted(sent):
            assert get(two_workers.proxy.outbound, path)[0] == 200
        out, err = tap.communicate(timeout=20)
    finally:
        if tap.poll() is None:
            tap.kill()
            tap.communicate()
    assert tap.returncode == 0, err
    seen = {json.loads(line)["path"] for line in out.splitlines()}
    assert seen == sent
    assert all(counted(admin) > 0 for admin in admins)  # both workers served some


def test_sighup_applies_a_new_manifest_in_every_worker(
    two_workers: TwoWorkers, backends: list[Backend], manifests: Path
) -> None:
    admins = two_workers.admins()
    (manifests / "web.yaml").write_text(mesh_service("web", [backends[1].address]))
    two_workers.proxy.signal(signal.SIGHUP)
    for index in (1, 2):
        assert eventually(lambda i=index: f"[worker {i}] tulle.proxy: configuration reloaded "
                          "(SIGHUP)" in two_workers.proxy.log())
    for admin in admins:
        config = json.loads(fetch_metrics(admin, path="/config"))
        [web] = [s for s in config["services"] if s["name"] == "web"]
        assert [e["address"] for e in web["endpoints"]] == [backends[1].address]
    answers = {get(two_workers.proxy.outbound)[2] for _ in range(30)}
    assert answers == {b"backend-1"}


def test_sigterm_lets_every_workers_requests_in_flight_finish_then_exits_0(
    backends: list[Backend], manifests: Path
) -> None:
    (manifests / "web.yaml").write_text(mesh_service("web", [backends[0].address]))
    running = TwoWorkers(manifests)
    admins = running.admins()
    results: list[int] = []
    clients = [threading.Thread(target=lambda: results.append(
        get(running.proxy.outbound, "/sleep/3000")[0])) for _ in range(30)]
    for client in clients:
        client.start()

    def in_flight(admin: str) -> float:
        page = json.loads(fetch_metrics(admin, path="/endpoints"))
        return float(page["outbound"][0]["endpoints"][0]["inFlight"])

    assert eventually(lambda: sum(in_flight(admin) for admin in admins) == 30, 5.0)
    assert all(in_flight(admin) > 0 for admin in admins)  # both workers have some
    running.proxy.signal(signal.SIGTERM)
    assert eventually(lambda: running.proxy.admin_get("/ready")[0] == 503, 2.0)
    for client in clients:
        client.join(timeout=15)
    assert results == [200] * 30
    assert running.proxy.process.wait(timeout=15) == 0
    assert running.stop() == 0
    log = running.proxy.log()
    assert "[worker 1] tulle.proxy: stopped" in log and "[worker 2] tulle.proxy: stopped" in log


def test_a_killed_worker_is_logged_and_replaced_and_requests_keep_being_served(
    two_workers: TwoWorkers, backends: list[Backend]
) -> None:
    proxy = two_workers.proxy
    for index in range(10):
        assert get(proxy.outbound, f"/before/{index}")[0] == 200
    assert counted(two_workers.public) == 10  # read: the killed worker's counts are kept
    victim = int(workers(proxy)[0]["pid"])  # type: ignore[call-overload]
    os.kill(victim, signal.SIGKILL)
    assert eventually(lambda: f"worker 1 (pid {victim}) was killed by SIGKILL" in proxy.log())
    for index in range(20):  # served by worker 2 meanwhile, or by the replacement
        assert get(proxy.outbound, f"/during/{index}")[0] == 200

    def replaced() -> bool:
        first = workers(proxy)[0]
        return first["state"] == "serving" and first["pid"] != victim
    assert eventually(replaced)
    admins = two_workers.admins()
    assert workers(proxy)[0]["restarts"] == 1
    assert gauge(two_workers.public, "tulle_worker_restarts_total") == 1
    for index in range(40):
        assert get(proxy.outbound, f"/after/{index}")[0] == 200
    assert counted(admins[0]) > 0  # the replacement serves
    assert counted(two_workers.public) == 10 + 20 + 40


def test_a_bad_manifest_fails_the_start_and_leaves_no_worker(manifests: Path) -> None:
    (manifests / "web.yaml").write_text("kind: MeshService\nspec: {port: eighty}\n")
    done = subprocess.run(
        [TULLE, "proxy", "-f", str(manifests), "--workers", "2", "--outbound", "127.0.0.1:0",
         "--admin", "127.0.0.1:0", "--inbound", "off"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 1
    assert "web.yaml" in done.stderr
    assert "worker 1 (pid" in done.stderr and "before serving" in done.stderr
    assert "[worker 2]" not in done.stderr  # not started on a configuration that fails


def test_workers_must_be_a_count_or_auto(manifests: Path) -> None:
    done = subprocess.run([TULLE, "proxy", "-f", str(manifests), "--workers", "0"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "expected a number from 1 to 256 or 'auto', got '0'" in done.stderr
