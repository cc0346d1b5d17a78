"""Fixtures for the end-to-end monitoring tests: one mesh under load, Prometheus, a browser.

The mesh (backends, a real proxy with tap allowed, steady load) is shared by
the session so the Prometheus and browser tests pay for it once. A test that
needs a system tool (prometheus, chromium) skips when it is missing on a
developer's machine and FAILS in CI (``CI=true``), where a skip would hide a
broken setup.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.mesh_harness import MonitoredMesh, require_tool
from tests.e2e.prometheus_harness import RunningPrometheus


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitoredMesh]:
    running = MonitoredMesh(tmp_path_factory.mktemp("mesh"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def prometheus(
    mesh: MonitoredMesh, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPrometheus]:
    binary = require_tool("prometheus")
    running = RunningPrometheus(binary, tmp_path_factory.mktemp("prometheus"), [mesh.admin])
    yield running
    running.stop()
