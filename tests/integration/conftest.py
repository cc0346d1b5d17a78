"""Fixtures for integration tests: real backends and a real ``tulle proxy`` on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.proxy import RunningProxy, mesh_service


@pytest.fixture(scope="module")
def backends() -> Iterator[list[Backend]]:
    servers = [Backend(f"backend-{i}").start() for i in range(3)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def proxy(
    backends: list[Backend], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProxy]:
    """A proxy whose service ``web`` has the three backends as endpoints (one per module)."""
    manifests = tmp_path_factory.mktemp("proxy") / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(
        mesh_service(
            "web",
            [b.address for b in backends],
            "  timeouts: {request: 2s}\n  loadBalancer: {algorithm: round-robin}\n",
        )
    )
    running = RunningProxy(manifests, "--head-timeout", "1")
    yield running
    running.stop()
