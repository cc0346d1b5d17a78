"""The admission webhook's HTTPS server on loopback: a review in, a JSON patch out; bad
input gets a clear 4xx and the connection closed (the API server's side is in tests/k8s)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tulle.control.webhook import (
    MAX_BODY,
    InjectionWebhook,
    ReloadingCertificate,
    server_context,
)
from tulle.identity import CertificateAuthority
from tulle.kube.inject import InjectConfig


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    ca = CertificateAuthority.generate("test")
    issued = ca.issue("webhook", ip_addresses=["127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(issued.cert_pem)
    (tmp_path / "tls.key").write_bytes(issued.key_pem)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)

    async def annotations(namespace: str) -> dict[str, str]:
        if namespace == "broken":
            raise OSError("the API server is away")
        return {"tulle.dev/inject": "enabled"} if namespace == "meshed" else {}

    server = InjectionWebhook(InjectConfig.from_chart(), annotations)
    _, port = await server.start("127.0.0.1", 0, server_context(tmp_path))
    yield port, ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    server.stop()


def _exchange(port: int, context: ssl.SSLContext, raw: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(raw)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _post(body: bytes) -> bytes:
    return (b"POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def _review(namespace: str, annotations: dict[str, str] | None = None) -> bytes:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "web-", "annotations": annotations or {}},
           "spec": {"containers": [{"name": "app", "image": "app"}]}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": "u-1", "namespace": namespace, "object": pod}}).encode()


async def _in_thread(port: int, context: ssl.SSLContext, raw: bytes) -> tuple[int, dict]:
    return await asyncio.to_thread(_exchange, port, context, raw)


async def test_a_pod_in_an_annotated_namespace_is_patched(webhook: tuple) -> None:
    port, context = webhook
    status, answer = await _in_thread(port, context, _post(_review("meshed")))
    assert status == 200 and answer["response"]["uid"] == "u-1"
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    assert [op["path"] for op in patch] == ["/metadata/annotations", "/spec/initContainers",
                                           "/spec/containers", "/spec/volumes"]
    assert [c["name"] for c in patch[2]["value"]] == ["tulle-proxy", "app"]


@pytest.mark.parametrize(("namespace", "annotations"), [
    ("plain", None), ("meshed", {"tulle.dev/inject": "disabled"}), ("broken", None)])
async def test_other_pods_are_allowed_unchanged(webhook: tuple, namespace: str,
                                                annotations: dict | None) -> None:
    port, context = webhook
    status, answer = await _in_thread(port, context, _post(_review(namespace, annotations)))
    assert status == 200 and answer["response"] == {"uid": "u-1", "allowed": True}


@pytest.mark.parametrize(("raw", "status"), [
    (_post(b"not json"), 400),
    (_post(b'{"request": {"uid": 7, "object": {}}}'), 400),
    (b"GET /inject HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (_post(b"x" * (MAX_BODY + 1)), 413),
])
async def test_bad_input_gets_a_clear_4xx(webhook: tuple, raw: bytes, status: int) -> None:
    port, context = webhook
    got, answer = await _in_thread(port, context, raw)
    assert got == status and "error" in answer


def _write_pair(folder: Path, ca: CertificateAuthority, bump: float) -> None:
    issued = ca.issue("webhook", ip_addresses=["127.0.0.1"])
    for name, data in (("tls.crt", issued.cert_pem), ("tls.key", issued.key_pem)):
        path = folder / name
        path.write_bytes(data)
        os.utime(path, (bump, bump))


async def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    old, new = CertificateAuthority.generate("old"), CertificateAuthority.generate("new")
    _write_pair(tmp_path, old, 1_000_000)
    certificate = ReloadingCertificate(tmp_path, check_every=0)
    server = InjectionWebhook(InjectConfig.from_chart(), lambda namespace: _no_annotations())
    _, port = await server.start("127.0.0.1", 0, certificate.context)
    try:
        live = b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n"
        trusting = {name: ssl.create_default_context(cadata=ca.cert_pem.decode())
                    for name, ca in (("old", old), ("new", new))}
        assert (await _in_thread(port, trusting["old"], live))[0] == 200
        _write_pair(tmp_path, new, 2_000_000)  # as the kubelet updates a mounted Secret
        assert (await _in_thread(port, trusting["new"], live))[0] == 200
        assert certificate.reloads == 1
        with pytest.raises(ssl.SSLCertVerificationError):
            await _in_thread(port, trusting["old"], live)
    finally:
        server.stop()


async def _no_annotations() -> dict[str, str]:
    return {}
