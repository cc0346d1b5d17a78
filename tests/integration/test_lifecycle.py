"""Reloads (SIGHUP and file changes), graceful shutdown (SIGTERM) and the start-up
open-files limit of a running proxy."""

from __future__ import annotations

import resource
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.client import get
from tests.support.proxy import RunningProxy, mesh_service, metric
from tests.support.tools import skip_outside_ci

# Reload tests read which endpoints answer: spread requests evenly.
ROUND_ROBIN = "  loadBalancer: {algorithm: round-robin}\n"


def _answers(proxy: RunningProxy, count: int = 6) -> set[str]:
    return {get(proxy.outbound)[2].decode() for _ in range(count)}


def _eventually(check, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def two_backend_proxy(backends: list[Backend], manifests: Path):  # type: ignore[no-untyped-def]
    (manifests / "web.yaml").write_text(mesh_service("web", [backends[0].address]))
    proxy = RunningProxy(manifests)
    yield proxy
    proxy.stop()


def test_sighup_applies_a_good_configuration(
    two_backend_proxy: RunningProxy, backends: list[Backend], manifests: Path
) -> None:
    proxy = two_backend_proxy
    assert _answers(proxy) == {"backend-0"}
    (manifests / "web.yaml").write_text(mesh_service("web", [backends[1].address]))
    proxy.signal(signal.SIGHUP)
    assert _eventually(lambda: _answers(proxy) == {"backend-1"})
    assert "configuration reloaded (SIGHUP)" in proxy.log()


def test_a_bad_configuration_is_refused_and_the_old_one_keeps_serving(
    two_backend_proxy: RunningProxy, manifests: Path
) -> None:
    proxy = two_backend_proxy
    (manifests / "web.yaml").write_text("kind: MeshService\nspec: {port: eighty}\n")
    proxy.signal(signal.SIGHUP)
    assert _eventually(lambda: "configuration refused" in proxy.log())
    assert "web.yaml" in proxy.log()
    assert _answers(proxy) == {"backend-0"}


def test_a_changed_file_is_reloaded_without_a_signal(
    two_backend_proxy: RunningProxy, backends: list[Backend], manifests: Path
) -> None:
    proxy = two_backend_proxy
    (manifests / "web.yaml").write_text(
        mesh_service("web", [backends[0].address, backends[2].address], ROUND_ROBIN)
    )
    assert _eventually(lambda: _answers(proxy) == {"backend-0", "backend-2"})
    assert "configuration reloaded (the manifests changed)" in proxy.log()


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(
    backends: list[Backend], manifests: Path
) -> None:
    (manifests / "web.yaml").write_text(mesh_service("web", [backends[0].address]))
    proxy = RunningProxy(manifests)
    results: list[int] = []

    def slow_request() -> None:
        results.append(get(proxy.outbound, "/sleep/800")[0])

    clients = [threading.Thread(target=slow_request) for _ in range(3)]
    for client in clients:
        client.start()
    time.sleep(0.3)  # the requests are at the backend now
    proxy.signal(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(proxy.outbound, timeout=1).close()
    for client in clients:
        client.join(timeout=10)
    assert results == [200, 200, 200]
    assert proxy.process.wait(timeout=10) == 0
    proxy.stop()


def test_the_proxy_raises_its_open_files_limit_and_says_how_many_connections_fit(
    backends: list[Backend], manifests: Path
) -> None:
    hard = 1024  # the child's, set here (lowering it needs no privilege)
    ours = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if ours != resource.RLIM_INFINITY and ours < hard:
        skip_outside_ci(f"needs a hard open-files limit of at least {hard} (it is {ours})")
    (manifests / "web.yaml").write_text(mesh_service("web", [backends[0].address]))

    def low_soft_limit() -> None:  # what `ulimit -n 512` (hard 1024) gives a child
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))

    proxy = RunningProxy(manifests, preexec=low_soft_limit)
    try:
        limits = Path(f"/proc/{proxy.process.pid}/limits").read_text()
        [line] = [row for row in limits.splitlines() if row.startswith("Max open files")]
        assert line.split()[3:5] == [str(hard), str(hard)]
        assert f"open files limit {hard} (raised from 512): room for about" in proxy.log()
    finally:
        proxy.stop()


def test_clients_past_what_the_open_files_limit_allows_are_refused_counted_and_logged(
    backends: list[Backend], manifests: Path
) -> None:
    """Issue 15 #4: with a hard limit of 128 descriptors, idle clients past the proxy's
    budget are cut at once (not left to libuv's silent EMFILE close), each refusal is
    counted and logged, and once clients leave a request is served again."""
    (manifests / "web.yaml").write_text(mesh_service("web", [backends[0].address]))

    def hard_limit_128() -> None:  # `ulimit -Hn 128`: the proxy cannot raise it
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    proxy = RunningProxy(manifests, preexec=hard_limit_128)
    clients: list[socket.socket] = []
    try:
        for _ in range(100):
            clients.append(socket.create_connection(proxy.outbound, timeout=5))
        time.sleep(0.5)
        refused = 0
        for client in clients:
            client.settimeout(0.05)
            try:
                refused += client.recv(1) == b""
            except TimeoutError:
                pass  # still open, waiting for a request
            except ConnectionResetError:
                refused += 1
        assert 0 < refused < 100
        counted = metric(proxy.admin_port, "tulle_connect_local_exhaustion_total",
                         direction="outbound", peer="src")
        assert counted == refused
        assert "refusing client connections" in proxy.log()
        for client in clients:
            client.close()
        clients.clear()
        assert _eventually(lambda: get(proxy.outbound)[0] == 200)
    finally:
        for client in clients:
            client.close()
        proxy.stop()
