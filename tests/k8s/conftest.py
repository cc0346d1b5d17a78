"""The session's Kubernetes cluster (etcd + kube-apiserver + kube-controller-manager).

Started once per session on loopback. The binaries are built by
scripts/kube-test-binaries.sh and cached; under CI (CI=true) a missing build is
made here (about 5-9 minutes once), so these tests run rather than skip. Locally a
missing build skips them with the command to run.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.cluster import REPO, Cluster, binaries
from tests.k8s.control_proxy import ControlPlaneProcess, free_port
from tests.k8s.kube import sync_call
from tests.k8s.kubectl import Kube, tools_dir
from tests.k8s.walkthrough import record
from tests.support.tools import in_ci, skip_outside_ci
from tulle.discovery.kubernetes_api import ApiError
from tulle.identity import CertificateAuthority

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
        _wait_for_crds_established(running)
        _wait_for_default_service_account(running)
        yield running
    finally:
        running.stop()


def _wait_for_crds_established(cluster: Cluster, timeout: float = 30.0) -> None:
    """Custom resources are served once their CRD is Established (as helm waits too)."""
    deadline = time.monotonic() + timeout
    for crd in sorted(CRDS.glob("*.yaml")):
        name = yaml.safe_load(crd.read_text())["metadata"]["name"]
        while True:
            answer = sync_call(cluster, "GET",
                               f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = (answer.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in conditions):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} not established in {timeout}s")
            time.sleep(0.1)


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


@dataclass
class InstalledMesh:
    """The chart installed by helm, and ``tulle control`` serving its webhook.

    There is no kubelet to run the chart's control plane Pod, so the control plane runs
    as a process here, with what the chart put in the cluster: the webhook's Secret and
    the tulle-inject ConfigMap. The chart points the webhook at it by URL."""

    namespace: str
    control: ControlPlaneProcess
    webhook_port: int
    inject_config: dict[str, Any]
    identity_port: int  # the identity service, on the chart's issuer (helm's genCA)
    trust_anchors: bytes


@pytest.fixture(scope="session")
def mesh(cluster: Cluster, kube: Kube, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[InstalledMesh]:
    work = tmp_path_factory.mktemp("mesh")
    namespace, webhook_port = "tulle", free_port()
    ca = CertificateAuthority.generate("tulle test webhook CA")
    issued = ca.issue("tulle-control.tulle.svc", dns_names=["tulle-control.tulle.svc"],
                      ip_addresses=["127.0.0.1"])
    values = {"webhook": {"url": f"https://127.0.0.1:{webhook_port}/inject",
                          "caBundle": ca.cert_pem.decode(), "crtPEM": issued.cert_pem.decode(),
                          "keyPEM": issued.key_pem.decode()}}
    installed = kube.helm("install", "tulle", str(REPO / "deploy" / "helm" / "tulle"), "-n",
                          namespace, "--create-namespace", "-f", "-",
                          stdin=yaml.safe_dump(values))
    record("helm install tulle deploy/helm/tulle -n tulle --create-namespace", installed.stdout)
    secret = kube.get("secret", "tulle-webhook-tls", "-n", namespace)["data"]
    certs = work / "webhook"
    certs.mkdir()
    for name in ("tls.crt", "tls.key"):
        (certs / name).write_bytes(base64.b64decode(secret[name]))
    inject_yaml = kube.get("configmap", "tulle-inject", "-n", namespace)["data"]["inject.yaml"]
    (work / "inject.yaml").write_text(inject_yaml)
    issuer = kube.get("secret", "tulle-identity-issuer", "-n", namespace)["data"]
    issuer_dir = work / "identity"
    issuer_dir.mkdir()
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (issuer_dir / name).write_bytes(base64.b64decode(issuer[name]))
    identity_port = free_port()
    control = ControlPlaneProcess(
        cluster, work, "--webhook-listen", f"127.0.0.1:{webhook_port}",
        "--webhook-cert-dir", str(certs), "--inject-config", str(work / "inject.yaml"),
        "--identity-listen", f"127.0.0.1:{identity_port}",
        "--identity-issuer-dir", str(issuer_dir))
    control.start()
    try:
        yield InstalledMesh(namespace, control, webhook_port, yaml.safe_load(inject_yaml),
                            identity_port, (issuer_dir / "ca.crt").read_bytes())
    finally:
        control.stop()
        kube.helm("uninstall", "tulle", "-n", namespace, check=False)
