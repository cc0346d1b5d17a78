"""The Helm chart and ``tulle install``: one source, accepted by a real API server.

``helm lint`` and ``helm template`` are the real helm; ``tulle install`` renders the
same chart in Python and must print exactly what ``helm template`` prints with the
same values. ``helm install`` puts every object into the real API server and ``helm
uninstall`` takes them out again; ``tulle install | kubectl apply -f -`` does the same.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.k8s.cluster import REPO
from tests.k8s.kubectl import Kube
from tests.support.proxy import TULLE
from tulle.cli.install import install_values
from tulle.kube.chart import render, to_text

CHART = REPO / "deploy" / "helm" / "tulle"


def _helm_template(kube_tools: Path, values: dict, namespace: str, *extra: str) -> str:
    return subprocess.run(
        [str(kube_tools / "helm"), "template", "tulle", str(CHART), "-n", namespace,
         "--include-crds", "-f", "-", *extra],
        input=yaml.safe_dump(values), capture_output=True, text=True, check=True).stdout


def test_helm_lint_is_clean(kube_tools: Path) -> None:
    result = subprocess.run([str(kube_tools / "helm"), "lint", "--strict", str(CHART)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize("overrides", [
    {},
    {"webhook": {"url": "https://127.0.0.1:9443/inject", "failurePolicy": "Fail"},
     "mesh": {"defaults": {"loadBalancer": {"algorithm": "round-robin"},
                           "timeouts": {"request": "5s"}}},
     "proxy": {"skipOutboundPorts": "25,3306", "resources": {"limits": {"cpu": "1"}}},
     "image": {"tag": "dev"}},
], ids=["defaults", "everything-set"])
def test_tulle_install_prints_what_helm_template_renders(kube_tools: Path, overrides: dict,
                                                        tmp_path: Path) -> None:
    values = {**install_values("mesh"), **overrides}
    values["webhook"] = {**install_values("mesh")["webhook"], **overrides.get("webhook", {})}
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    ours = subprocess.run([TULLE, "install", "-n", "mesh", "-f", str(tmp_path / "values.yaml")],
                          capture_output=True, text=True, check=True).stdout
    assert ours == _helm_template(kube_tools, values, "mesh")
    assert ours == to_text(render(values, namespace="mesh"))


def test_helm_install_is_accepted_and_uninstall_cleans_up(kube: Kube) -> None:
    namespace = "tulle-helm"
    kube.helm("install", "tulle", str(CHART), "-n", namespace, "--create-namespace",
              "--set", "mesh.defaults.loadBalancer.algorithm=round-robin")
    manifest = kube.helm("get", "manifest", "tulle", "-n", namespace).stdout
    objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
    assert {o["kind"] for o in objects} == {
        "ServiceAccount", "Secret", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Service",
        "Deployment", "MutatingWebhookConfiguration", "ServiceMesh"}
    present = kube.kubectl("get", "-f", "-", "-o", "name", stdin=manifest).stdout.split()
    assert len(present) == len(objects)
    # An upgrade keeps the webhook's certificate (a new one would not match the running
    # control plane until it reloads), and the CA bundle with it.
    before = _webhook_tls(kube, namespace)
    kube.helm("upgrade", "tulle", str(CHART), "-n", namespace, "--reuse-values")
    assert _webhook_tls(kube, namespace) == before
    kube.helm("uninstall", "tulle", "-n", namespace, "--wait")
    left = kube.kubectl("get", "-f", "-", "-o", "name", "--ignore-not-found", stdin=manifest)
    assert left.stdout.strip() == ""
    kube.kubectl("delete", "namespace", namespace, "--wait=false")


def test_tulle_install_applies_with_kubectl(kube: Kube) -> None:
    rendered = subprocess.run([TULLE, "install", "-n", "tulle-kubectl"], capture_output=True,
                              text=True, check=True).stdout
    applied = kube.kubectl("apply", "-f", "-", stdin=rendered).stdout
    assert "namespace/tulle-kubectl created" in applied
    webhook = "mutatingwebhookconfiguration.admissionregistration.k8s.io/tulle-inject-tulle-kubectl"
    assert f"{webhook} created" in applied
    kube.kubectl("delete", "-f", "-", "--wait=false", stdin=_without_crds(rendered))


def _webhook_tls(kube: Kube, namespace: str) -> tuple[str, str, str]:
    secret = kube.get("secret", "tulle-webhook-tls", "-n", namespace)["data"]
    webhook = kube.get("mutatingwebhookconfiguration", f"tulle-inject-{namespace}")
    bundle = webhook["webhooks"][0]["clientConfig"]["caBundle"]
    assert bundle == secret["ca.crt"]
    return secret["ca.crt"], secret["tls.crt"], secret["tls.key"]


def _without_crds(rendered: str) -> str:
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    return yaml.safe_dump_all([d for d in documents if d["kind"] != "CustomResourceDefinition"])
