"""Identity against the real API server: proxies' ServiceAccount tokens checked with
TokenReview, certificates issued by the chart's own issuer (helm's genCA, an RSA CA that
is anchor and issuer at once), and meshed pods' endpoints carrying their identity."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.k8s.cluster import Cluster
from tests.k8s.conftest import InstalledMesh
from tests.k8s.kube import SERVICES, api, service, unique
from tulle.control.token_review import TokenReviewer
from tulle.discovery.kubernetes import KubernetesSource
from tulle.discovery.kubernetes_access import from_kubeconfig
from tulle.discovery.kubernetes_api import ApiError
from tulle.identity.client import IdentityClient, IdentityUnavailable
from tulle.identity.join_tokens import Unauthenticated
from tulle.identity.spiffe import WorkloadIdentity
from tulle.kube.inject import AUDIENCE

SERVER_NAME = "tulle-control.tulle.serviceaccount.identity.cluster.local"


async def _call(cluster: Cluster, method: str, path: str, body: Any = None) -> dict[str, Any]:
    async with api(cluster) as client:
        return await client.call(method, path, body)


async def _service_account(cluster: Cluster, namespace: str, name: str) -> None:
    with contextlib.suppress(ApiError):  # the namespace may exist already
        await _call(cluster, "POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    await _call(cluster, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})


async def _token(cluster: Cluster, namespace: str, name: str,
                 audiences: list[str] | None) -> str:
    """A token for the ServiceAccount (TokenRequest), as a projected volume would hold."""
    spec: dict[str, Any] = {"expirationSeconds": 3600}
    if audiences is not None:
        spec["audiences"] = audiences
    answer = await _call(cluster, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/"
                                          f"{name}/token",
                         {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                          "spec": spec})
    return str(answer["status"]["token"])


async def test_token_review_names_the_service_account(cluster: Cluster) -> None:
    namespace = unique("shop")
    await _service_account(cluster, namespace, "web")
    async with api(cluster) as client:
        reviewer = TokenReviewer(client, "cluster.local")
        token = await _token(cluster, namespace, "web", [AUDIENCE])
        assert await reviewer.authenticate(token) == WorkloadIdentity(
            "cluster.local", namespace, "web")
        # A token for the API server's own audience proves nothing to the mesh.
        with pytest.raises(Unauthenticated):
            await reviewer.authenticate(await _token(cluster, namespace, "web", None))
        with pytest.raises(Unauthenticated):
            await reviewer.authenticate("not.a.token")
        # A deleted ServiceAccount's tokens stop working (once the API server's cache of
        # authenticated tokens, 10 s, forgets it).
        await client.call("DELETE", f"/api/v1/namespaces/{namespace}/serviceaccounts/web")
        for _ in range(300):
            try:
                await reviewer.authenticate(token)
            except Unauthenticated:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("a deleted ServiceAccount's token was still accepted")


async def test_a_proxy_with_its_token_gets_a_certificate_from_the_chart_issuer(
        cluster: Cluster, mesh: InstalledMesh, tmp_path: Path) -> None:
    namespace = unique("shop")
    await _service_account(cluster, namespace, "api")
    token_file = tmp_path / "token"
    token_file.write_text(await _token(cluster, namespace, "api", [AUDIENCE]))
    client = IdentityClient("127.0.0.1", mesh.identity_port, SERVER_NAME, token_file,
                            mesh.trust_anchors)
    credentials = await client.fetch()
    assert credentials.identity == WorkloadIdentity("cluster.local", namespace, "api")
    leaf = x509.load_pem_x509_certificate(credentials.cert_pem)
    anchor = x509.load_pem_x509_certificate(mesh.trust_anchors)
    leaf.verify_directly_issued_by(anchor)  # the chart's genCA: anchor and issuer
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(
        hours=24, minutes=5)
    assert leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == [f"spiffe://cluster.local/ns/{namespace}/sa/api"]
    token_file.write_text(await _token(cluster, namespace, "api", None))
    with pytest.raises(IdentityUnavailable, match="401"):
        await client.fetch()


async def test_meshed_pods_endpoints_carry_their_identity(cluster: Cluster) -> None:
    async with api(cluster) as client:
        with contextlib.suppress(ApiError):
            await client.call("POST", "/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
        app = unique("meshed")
        await _service_account(cluster, "default", app)
        await client.call("POST", SERVICES.format(ns="default"),
                          service(app, 80, target=8080, selector={"app": app}))
        for name, ip, containers in ((f"{app}-a", "127.0.0.21", ["tulle-proxy", "app"]),
                                     (f"{app}-b", "127.0.0.22", ["app"])):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "labels": {"app": app}},
                   "spec": {"nodeName": "node-1", "serviceAccountName": app, "containers": [
                       {"name": c, "image": "example/app"} for c in containers]}}
            for _ in range(100):  # until the token controller has made the account's token
                try:
                    await client.call("POST", "/api/v1/namespaces/default/pods", pod)
                    break
                except ApiError as exc:
                    if exc.status != 500:
                        raise
                    await asyncio.sleep(0.1)
            await client.call(
                "PATCH", f"/api/v1/namespaces/default/pods/{name}/status",
                {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                            "conditions": [{"type": "Ready", "status": "True"},
                                           {"type": "ContainersReady", "status": "True"}]}},
                content_type="application/merge-patch+json")
    source = KubernetesSource(await from_kubeconfig(cluster.kubeconfig), debounce=0.01,
                              trust_domain="cluster.local")
    try:
        identities: dict[str, str | None] = {}
        for _ in range(100):
            config = await source.initial() if not identities else source._build()
            found = config.services.get(f"{app}.default")
            identities = {e.host: e.identity for e in found.endpoints} if found else {}
            if len(identities) == 2:
                break
            await asyncio.sleep(0.1)
        assert identities == {"127.0.0.21": f"spiffe://cluster.local/ns/default/sa/{app}",
                              "127.0.0.22": None}
    finally:
        await source.aclose()
