"""``tulle check --cluster`` against the real API server: each check fails while what it
checks is wrong, and passes once it is right. The kubelet's part (marking containers
ready) is played by patching pod status."""

from __future__ import annotations

import json
import subprocess

from tests.k8s.conftest import InstalledMesh
from tests.k8s.kube import unique
from tests.k8s.kubectl import Kube
from tests.k8s.walkthrough import record
from tests.k8s.workloads import namespace
from tests.support.proxy import TULLE


def _check(kube: Kube) -> tuple[int, str]:
    result = subprocess.run([TULLE, "check", "--cluster", "--kubeconfig",
                             str(kube.cluster.kubeconfig)], capture_output=True, text=True,
                            timeout=60)
    return result.returncode, result.stdout + result.stderr


def _ready(kube: Kube, ns: str, pod: str, containers: list[str]) -> None:
    kube.kubectl("patch", "pod", pod, "-n", ns, "--subresource=status", "--type=merge", "-p",
                 json.dumps({"status": {
                     "phase": "Running",
                     "conditions": [{"type": "Ready", "status": "True"},
                                    {"type": "ContainersReady", "status": "True"}],
                     "containerStatuses": [
                         {"name": name, "ready": True, "restartCount": 0, "image": "x",
                          "imageID": "", "state": {"running": {}}} for name in containers]}}))


def test_check_follows_the_cluster(kube: Kube, mesh: InstalledMesh) -> None:
    # The chart's control plane Pod exists but nothing runs it: not ready yet.
    status, output = _check(kube)
    assert status == 1
    assert "✓ CRDs are installed" in output
    assert "✗ control plane tulle/tulle-control is not ready (0/1" in output
    assert "✓ webhook tulle-inject-tulle is reachable" in output, output
    control = kube.get("pods", "-n", mesh.namespace,
                       "-l", "app.kubernetes.io/component=control-plane")["items"][0]
    _ready(kube, mesh.namespace, control["metadata"]["name"], ["control"])
    ns = unique("checked")
    namespace(kube, ns, inject=True)
    kube.kubectl("run", "app", "-n", ns, "--image=example/app:1")
    kube.wait_for("the control plane ready", lambda d: d["status"].get("readyReplicas") == 1,
                  "deployment", "tulle-control", "-n", mesh.namespace)
    status, output = _check(kube)
    assert "✗ 1 of " in output and f"{ns}/app: proxy not ready" in output, output
    _ready(kube, ns, "app", ["tulle-proxy", "app"])
    status, output = _check(kube)
    assert status == 0, output
    record("tulle check --cluster", output)
    assert "✓ control plane tulle/tulle-control is ready (1/1 replicas, version 0.1.0)" in output
    assert "every proxy is ready and on version 0.1.0" in output
    kube.kubectl("annotate", "pod", "app", "-n", ns, "--overwrite",
                 "tulle.dev/proxy-version=0.0.9")
    status, output = _check(kube)
    assert status == 1 and f"{ns}/app: proxy version 0.0.9, control plane 0.1.0" in output
    kube.kubectl("delete", "namespace", ns, "--wait=false")
    mesh.control.stop()
    try:
        status, output = _check(kube)
        assert "✗ webhook tulle-inject-tulle is not reachable" in output, output
    finally:
        mesh.control.start()
