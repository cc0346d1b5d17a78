"""The identity service over real TLS: a proxy's signing request and join token become a
24-hour certificate for the token's workload; bad tokens, bad requests and an
untrusted service are refused; a new issuer on disk is picked up."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from tulle.control.identity import IdentityService
from tulle.discovery.http_stream import request
from tulle.identity.certificates import CertificateAuthority
from tulle.identity.client import IdentityClient, IdentityUnavailable
from tulle.identity.issuer import IssuerStore, write_issuer
from tulle.identity.join_tokens import JoinTokens, new_token
from tulle.identity.spiffe import WorkloadIdentity

CONTROL = WorkloadIdentity("mesh.test", "tulle", "tulle-control")


class Mesh:
    """An issuer on disk, a join-token file, and the identity service on loopback."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "issuer"
        self.anchor = CertificateAuthority.generate("test anchor")
        self.issuer = self.anchor.issue_issuer("test issuer")
        write_issuer(self.dir, self.issuer, self.anchor.cert_pem)
        self.tokens = tmp_path / "join-tokens"
        self.web_token, self.api_token = new_token(), new_token()
        self.tokens.write_text(f"# test tokens\n{self.web_token} shop/web\n\n"
                               f"{self.api_token} shop/api\n")
        self.store = IssuerStore(self.dir, check_every=0.0)
        self.service = IdentityService(self.store, JoinTokens(self.tokens, "mesh.test"), CONTROL)
        self.address = ("127.0.0.1", 0)

    async def start(self) -> None:
        self.address = await self.service.start("127.0.0.1", 0)

    def client(self, tmp_path: Path, token: str, anchors: bytes | None = None,
               server_name: str = CONTROL.dns_name) -> IdentityClient:
        token_file = tmp_path / f"token-{token[:6]}"
        token_file.write_text(token + "\n")
        return IdentityClient(self.address[0], self.address[1], server_name, token_file,
                              anchors or self.anchor.cert_pem)


@pytest.fixture
async def mesh(tmp_path: Path):
    running = Mesh(tmp_path)
    await running.start()
    yield running
    running.service.stop()


async def test_a_join_token_gets_a_certificate_for_its_workload(mesh: Mesh,
                                                                tmp_path: Path) -> None:
    credentials = await mesh.client(tmp_path, mesh.web_token).fetch()
    assert credentials.identity == WorkloadIdentity("mesh.test", "shop", "web")
    leaf = x509.load_pem_x509_certificate(credentials.cert_pem)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(
        hours=24, minutes=5)
    assert credentials.chain_pem == mesh.issuer.cert_pem
    assert credentials.anchors_pem == mesh.anchor.cert_pem
    api = await mesh.client(tmp_path, mesh.api_token).fetch()
    assert api.identity.service_account == "api"
    assert mesh.store.issued >= 2


async def test_tokens_that_prove_nothing_are_refused(mesh: Mesh, tmp_path: Path) -> None:
    with pytest.raises(IdentityUnavailable, match="401"):
        await mesh.client(tmp_path, new_token()).fetch()
    # Revoked: the file is read again for every request.
    mesh.tokens.write_text(f"{mesh.api_token} shop/api\n")
    with pytest.raises(IdentityUnavailable, match="401"):
        await mesh.client(tmp_path, mesh.web_token).fetch()
    assert mesh.service.refused == 2


async def test_an_identity_service_the_anchors_do_not_trust_gets_no_token(
        mesh: Mesh, tmp_path: Path) -> None:
    stranger = CertificateAuthority.generate("stranger")
    with pytest.raises(IdentityUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await mesh.client(tmp_path, mesh.web_token, anchors=stranger.cert_pem).fetch()
    with pytest.raises(IdentityUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await mesh.client(tmp_path, mesh.web_token, server_name="evil.tulle.serviceaccount."
                          "identity.mesh.test").fetch()
    assert mesh.service.refused == 0  # nothing reached it


async def _post(mesh: Mesh, body: bytes, target: str = "/v1/certify",
                method: str = "POST") -> tuple[int, dict]:
    context = ssl.create_default_context(cadata=mesh.anchor.cert_pem.decode())
    response = await request(mesh.address[0], mesh.address[1], method, target, body=body,
                             ssl=context, server_hostname=CONTROL.dns_name)
    async with response:
        return response.status, json.loads(await response.read())


async def test_bad_requests(mesh: Mesh) -> None:
    assert (await _post(mesh, b"not json"))[0] == 400
    assert (await _post(mesh, json.dumps({"csr": 1, "token": "x"}).encode()))[0] == 400
    status, answer = await _post(mesh, json.dumps(
        {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "token": mesh.web_token}
    ).encode())
    assert status == 400 and "signing request" in answer["error"]
    assert (await _post(mesh, b"x" * 70_000))[0] == 413
    assert (await _post(mesh, b"", target="/nowhere"))[0] == 404
    assert (await _post(mesh, b"", method="GET"))[0] == 405
    status, answer = await _post(mesh, b"", target="/live", method="GET")
    assert status == 200 and "issued" in answer


async def test_tls_garbage_and_silence_cost_nothing(mesh: Mesh) -> None:
    host, port = mesh.address
    for garbage in (b"\x16\x03\x01\x00\x05\x01abcd", b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 100):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(garbage)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    assert (await mesh.client(Path(mesh.tokens.parent), mesh.web_token).fetch()).identity


async def test_a_new_issuer_on_disk_is_used_for_the_next_certificate(
        mesh: Mesh, tmp_path: Path) -> None:
    client = mesh.client(tmp_path, mesh.web_token)
    first = await client.fetch()
    successor = mesh.anchor.issue_issuer("successor issuer")
    write_issuer(mesh.dir, successor, mesh.anchor.cert_pem)
    second = await client.fetch()
    assert second.chain_pem == successor.cert_pem != first.chain_pem
    # A broken issuer (a key that is not its own) is refused; the last good one stays.
    (mesh.dir / "tls.key").write_bytes(mesh.issuer.key_pem)
    third = await client.fetch()
    assert third.chain_pem == successor.cert_pem
