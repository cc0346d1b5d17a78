"""Fixtures for the end-to-end monitoring tests: one mesh under load, Prometheus, a browser.

The mesh (backends, a real proxy with tap allowed, steady load) is shared by
the session so the Prometheus and browser tests pay for it once. A test that
needs a system tool (prometheus, chromium) skips when it is missing on a
developer's machine and FAILS in CI (``CI=true``), where a skip would hide a
broken setup.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh_harness import MonitoredMesh, in_ci
from tests.e2e.prometheus_harness import RunningPrometheus


def require_tool(name: str, path: str | None = None) -> str:
    """The tool's path; skip without it locally, fail without it in CI."""
    found = path if path and Path(path).exists() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed (make test installs it: scripts/install-system-deps.sh)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found


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
