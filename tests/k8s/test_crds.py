"""The CRDs, made from the manifest models, in a real API server: the examples are
accepted, and mistakes are refused with the field's path."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.k8s.cluster import REPO
from tests.k8s.kubectl import Kube
from tests.k8s.walkthrough import record

KINDS = ("MeshService", "ServiceMesh", "HTTPRoute")


def test_every_example_is_accepted(kube: Kube) -> None:
    documents = [doc for path in sorted((REPO / "examples").glob("*.yaml"))
                 for doc in yaml.safe_load_all(path.read_text())
                 if doc and doc.get("kind") in KINDS]
    assert {doc["kind"] for doc in documents} == set(KINDS)
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-",
                          stdin=yaml.safe_dump_all(documents))
    assert result.stdout.count("(server dry run)") == len(documents), result.stdout


@pytest.mark.parametrize(("spec", "error"), [
    ({"loadBalancer": {"algorithm": "fastest"}},
     'spec.loadBalancer.algorithm: Unsupported value: "fastest"'),
    ({"port": 70000}, "spec.port: Invalid value: 70000"),
    ({"timeouts": {"request": "soon"}}, 'spec.timeouts.request: Invalid value: "soon"'),
    ({"endpoints": [{"address": "127.0.0.1:80", "weight": 0}]},
     "spec.endpoints.weight: Invalid value: 0"),
    ({"protocol": "carrier-pigeon"}, 'spec.protocol: Unsupported value: "carrier-pigeon"'),
])
def test_a_wrong_mesh_service_is_refused_with_the_field_path(kube: Kube, spec: dict,
                                                             error: str) -> None:
    document = {"apiVersion": "tulle.dev/v1alpha1", "kind": "MeshService",
                "metadata": {"name": "wrong", "namespace": "default"}, "spec": spec}
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", check=False,
                          stdin=yaml.safe_dump(document))
    assert result.returncode != 0 and error in result.stderr, result.stderr
    record(f"kubectl apply -f bad.yaml   # spec: {json.dumps(spec)}", result.stderr)


def test_a_wrong_route_is_refused_with_the_field_path(kube: Kube) -> None:
    document = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "wrong", "namespace": "default"},
                "spec": {"parentRefs": [{"name": "web"}],
                         "rules": [{"backendRefs": [{"name": "web", "weight": "heavy"}]}]}}
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", check=False,
                          stdin=yaml.safe_dump(document))
    assert result.returncode != 0 and "spec.rules.backendRefs.weight" in result.stderr, \
        result.stderr
