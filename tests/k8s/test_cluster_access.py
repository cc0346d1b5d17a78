"""Reaching the test cluster through the client library: kubeconfig contexts and an exec
credential plugin (how EKS and GKE hand out tokens), against the real API server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.k8s.cluster import TOKEN, Cluster
from tulle.discovery.kubernetes_access import AccessError, from_kubeconfig
from tulle.discovery.kubernetes_api import ApiError, KubeApi

PLUGIN = """\
import json, sys
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential", "status": {"token": sys.argv[1]}}))
"""


def _kubeconfig(cluster: Cluster, tmp_path: Path, users: dict[str, dict]) -> Path:
    base = json.loads(cluster.kubeconfig.read_text())
    cluster_entry = base["clusters"][0]
    document = {
        "apiVersion": "v1", "kind": "Config", "current-context": next(iter(users)),
        "clusters": [cluster_entry],
        "users": [{"name": name, "user": user} for name, user in users.items()],
        "contexts": [{"name": name, "context": {"cluster": cluster_entry["name"], "user": name}}
                     for name in users],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(document))
    return path


async def _namespaces(path: Path, context: str | None = None) -> list[str]:
    async with KubeApi(await from_kubeconfig(path, context)) as api:
        answer = await api.get("/api/v1/namespaces")
    return [item["metadata"]["name"] for item in answer["items"]]


async def test_an_exec_credential_plugin_supplies_the_token(cluster: Cluster,
                                                            tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text(PLUGIN)
    path = _kubeconfig(cluster, tmp_path, {"exec": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
        "args": [str(tmp_path / "plugin.py"), TOKEN]}}})
    assert "default" in await _namespaces(path)


async def test_the_named_context_is_used(cluster: Cluster, tmp_path: Path) -> None:
    path = _kubeconfig(cluster, tmp_path, {"wrong": {"token": "not-a-token"},
                                           "right": {"token": TOKEN}})
    with pytest.raises(ApiError) as refused:
        await _namespaces(path)  # the current context's user is "wrong"
    assert refused.value.status == 401
    assert "default" in await _namespaces(path, "right")


async def test_a_missing_kubeconfig_or_context_is_named(cluster: Cluster, tmp_path: Path) -> None:
    with pytest.raises(AccessError, match="no such file"):
        await from_kubeconfig(tmp_path / "nowhere")
    path = _kubeconfig(cluster, tmp_path, {"right": {"token": TOKEN}})
    with pytest.raises(AccessError, match=str(path)):
        await from_kubeconfig(path, "elsewhere")
