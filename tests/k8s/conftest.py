"""The session's Kubernetes cluster (etcd + kube-apiserver + kube-controller-manager).

Started once per session on loopback. The binaries are built by
scripts/kube-test-binaries.sh and cached; under CI (CI=true) a missing build is
made here (about 5-9 minutes once), so these tests run rather than skip. Locally a
missing build skips them with the command to run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.k8s.cluster import REPO, Cluster, binaries
from tests.k8s.kube import sync_call
from tests.k8s.kubectl import Kube, tools_dir
from tests.support.tools import in_ci, skip_outside_ci
from tulle.discovery.kubernetes_api import ApiError

CRDS = REPO / "deploy" / "crds"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    bin_dir = binaries(build=in_ci() or os.environ.get("TULLE_K8S_BUILD") == "1")
    if bin_dir is None:
        skip_outside_ci("kube-apiserver 1.20.2 is not built: run scripts/kube-test-binaries.sh "
                        "(about 9 minutes once), or set CI=true / TULLE_K8S_BUILD=1")
    running = Cluster(bin_dir, Path(tmp_path_factory.mktemp("k8s"))).start()
    try:
        for crd in sorted(CRDS.glob("*.yaml")):
            sync_call(running, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                      yaml.safe_load(crd.read_text()))
        _wait_for_default_service_account(running)
        yield running
    finally:
        running.stop()


def _wait_for_default_service_account(cluster: Cluster, timeout: float = 30.0) -> None:
    """Pods are refused until the controller-manager has made namespace default's account."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sync_call(cluster, "GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return
        except ApiError:
            time.sleep(0.2)
    raise RuntimeError(f"no default service account: {cluster.log('kube-controller-manager')}")


@pytest.fixture(scope="session")
def kube_tools() -> Path:
    """The folder with the real kubectl and helm."""
    return tools_dir()


@pytest.fixture(scope="session")
def kube(cluster: Cluster, kube_tools: Path) -> Kube:
    """kubectl and helm against the session's cluster."""
    return Kube(cluster, kube_tools)
