"""The admission webhook against the real API server and controller-manager.

A Deployment is created with kubectl; the controller-manager makes its ReplicaSet and
Pods; the API server sends each Pod to the control plane's webhook (TLS, the chart's
certificate), which injects it when its namespace says so.
"""

from __future__ import annotations

from tests.k8s.conftest import InstalledMesh
from tests.k8s.kube import unique
from tests.k8s.kubectl import Kube
from tests.k8s.workloads import containers, deployment, namespace, pods_of


def test_pods_in_an_annotated_namespace_get_the_proxy(kube: Kube, mesh: InstalledMesh) -> None:
    ns = unique("meshed")
    namespace(kube, ns, inject=True)
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=deployment("web"))
    pods = pods_of(kube, ns, "web", 2)
    for pod in pods:
        assert containers(pod) == (["tulle-init"], ["tulle-proxy", "app"]), pod["spec"]
        proxy = pod["spec"]["containers"][0]
        assert proxy["image"] == mesh.inject_config["image"]
        assert "--transparent" in proxy["args"]
        assert pod["metadata"]["annotations"]["tulle.dev/proxy-version"] == \
            mesh.inject_config["version"]
        # Identity: the projected token for the mesh's audience, the anchors the issuer
        # Secret holds, the identity service; the pod's labels for policy.
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        token = volumes["tulle-identity-token"]["projected"]["sources"][0]
        assert token["serviceAccountToken"]["audience"] == "identity.tulle.dev"
        env = {e["name"]: e.get("value") for e in proxy["env"]}
        assert env["TULLE_TRUST_ANCHORS_PEM"] == mesh.trust_anchors.decode()
        assert env["TULLE_IDENTITY_ADDRESS"] == "tulle-control.tulle.svc:8080"
        assert env["TULLE_IDENTITY_SERVER_NAME"] == \
            "tulle-control.tulle.serviceaccount.identity.cluster.local"
        assert "tulle-podinfo" in volumes
    # The Deployment itself is as it was written: only pods are injected.
    template = kube.get("deployment", "web", "-n", ns)["spec"]["template"]["spec"]
    assert [c["name"] for c in template["containers"]] == ["app"]
    kube.kubectl("delete", "namespace", ns, "--wait=false")  # no unready proxies left behind


def test_a_pod_annotated_disabled_is_left_alone(kube: Kube, mesh: InstalledMesh) -> None:
    ns = unique("optout")
    namespace(kube, ns, inject=True)
    kube.kubectl("run", "plain", "-n", ns, "--image=example/app:1",
                 "--annotations=tulle.dev/inject=disabled")
    assert containers(kube.get("pod", "plain", "-n", ns)) == ([], ["plain"])


def test_an_unannotated_namespace_is_left_untouched(kube: Kube, mesh: InstalledMesh) -> None:
    ns = unique("plain")
    namespace(kube, ns, inject=False)
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=deployment("web"))
    for pod in pods_of(kube, ns, "web", 2):
        assert containers(pod) == ([], ["app"])


def test_with_the_webhook_down_pods_are_still_created(kube: Kube, mesh: InstalledMesh) -> None:
    ns = unique("down")
    namespace(kube, ns, inject=True)
    mesh.control.stop()
    try:
        kube.kubectl("apply", "-n", ns, "-f", "-", stdin=deployment("web"))
        for pod in pods_of(kube, ns, "web", 2):  # failurePolicy: Ignore
            assert containers(pod) == ([], ["app"])
    finally:
        mesh.control.start()
