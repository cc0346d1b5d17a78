"""Mutual TLS between two real proxies, with certificates from a real identity service:
what is secured and how it shows; and what is refused — a server with the wrong
identity, an expired or untrusted certificate on either side, plaintext where policy
requires mTLS — and TLS garbage, which costs the inbound side nothing lasting."""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.backend import Backend
from tests.support.client import get
from tests.support.identity_kit import IdentityKit, identity
from tests.support.proxy import TULLE, RunningProxy, mesh_service, metric
from tulle.identity.certificates import CertificateAuthority
from tulle.identity.credentials import new_key, signing_request
from tulle.identity.issuer import write_issuer

WEB, CLI = identity("web"), identity("cli")


class TwoProxies:
    """cli's proxy (outbound) → mTLS → web's proxy (inbound) → the app."""

    def __init__(self, folder: Path, kit: IdentityKit, app: Backend) -> None:
        self.kit = kit
        server_manifests = folder / "web"
        server_manifests.mkdir()
        (server_manifests / "mesh.yaml").write_text(
            "apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\nmetadata: {name: default}\n"
            "spec: {proxy: {workload: {namespace: shop, labels: {app: web}}}}\n")
        self.server_manifests = server_manifests
        self.server, self.inbound = kit.server_proxy(server_manifests, app.address, "web",
                                                     "--allow-tap")
        self.client_manifests = folder / "cli"
        self.client_manifests.mkdir()
        self.route("web", f"127.0.0.1:{self.inbound[1]}", WEB.uri)
        self.client = RunningProxy(self.client_manifests, *kit.proxy_args("cli"),
                                   "--allow-tap")

    def route(self, name: str, address: str, server_identity: str) -> None:
        (self.client_manifests / f"{name}.yaml").write_text(mesh_service(
            name, [address]).replace(f'{{address: "{address}"}}',
                                     f'{{address: "{address}", identity: "{server_identity}"}}'))

    def stop(self) -> None:
        self.client.stop()
        self.server.stop()


@pytest.fixture(scope="module")
def app() -> Iterator[Backend]:
    backend = Backend("app").start()
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityKit]:
    running = IdentityKit(tmp_path_factory.mktemp("identity")).start()
    yield running
    running.stop()


@pytest.fixture
def mesh(tmp_path: Path, kit: IdentityKit, app: Backend) -> Iterator[TwoProxies]:
    both = TwoProxies(tmp_path, kit, app)
    yield both
    both.stop()


def test_meshed_proxies_speak_mutual_tls(mesh: TwoProxies) -> None:
    for _ in range(3):
        status, _, body = get(mesh.client.outbound, "/", host="web")
        assert status == 200 and body == b"app"
    outbound = metric(mesh.client.admin_port, "response_total", direction="outbound",
                      dst_service="web", tls="true", server_id=WEB.uri, status_code="200")
    inbound = metric(mesh.server.admin_port, "response_total", direction="inbound",
                     tls="true", client_id=CLI.uri, status_code="200")
    assert outbound == 3 and inbound == 3
    assert metric(mesh.server.admin_port, "tulle_tls_handshakes_total", direction="inbound",
                  result="terminated") >= 1
    assert metric(mesh.server.admin_port, "tulle_identity_info", identity=WEB.uri) == 1
    expiry = metric(mesh.client.admin_port, "identity_cert_expiration_timestamp_seconds")
    assert 23 * 3600 < expiry - time.time() <= 24 * 3600


def test_tap_shows_the_peer_identity(mesh: TwoProxies) -> None:
    import urllib.request

    url = f"http://127.0.0.1:{mesh.server.admin_port}/tap?rate=100"
    events: list[dict] = []

    def read() -> None:
        with urllib.request.urlopen(url, timeout=10) as stream:
            for line in stream:
                if line.strip():
                    events.append(json.loads(line))
                    return

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 10
    while reader.is_alive() and time.monotonic() < deadline:
        get(mesh.client.outbound, "/tapped", host="web")
        reader.join(0.2)
    assert events and events[0]["identity"] == CLI.uri and events[0]["direction"] == "inbound"


def _while_requests_flow(mesh: TwoProxies, *args: str) -> subprocess.CompletedProcess[str]:
    """``tulle *args`` (a monitoring command), with requests from cli to web meanwhile."""
    command = subprocess.Popen([TULLE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 20
    while command.poll() is None and time.monotonic() < deadline:
        assert get(mesh.client.outbound, "/watched", host="web")[0] == 200
        time.sleep(0.02)
    stdout, stderr = command.communicate(timeout=5)
    return subprocess.CompletedProcess(command.args, command.returncode, stdout, stderr)


def test_tulle_edges_and_tap_name_both_identities(mesh: TwoProxies) -> None:
    """What a user runs: ``tulle edges`` sees the edge cli → web from both proxies,
    secured, with the identity each side proved; ``tulle tap`` prints the peer's
    identity on each side (the client's inbound, the server's outbound)."""
    server, client = (f"127.0.0.1:{proxy.admin_port}" for proxy in (mesh.server, mesh.client))
    result = _while_requests_flow(mesh, "edges", "--admin", server, "--admin", client,
                                  "--name", f"{client}=cli-proxy", "--window", "2s", "-o",
                                  "json")
    assert result.returncode == 0, result.stderr
    edges = {edge["seenBy"]: edge for edge in json.loads(result.stdout)["edges"]}
    outbound, inbound = edges["outbound of cli-proxy"], edges[f"inbound of {server}"]
    assert (outbound["src"], outbound["dst"]) == ("cli-proxy", "web")
    assert inbound["src"] == CLI.uri  # the caller, as its certificate names it
    for edge in (outbound, inbound):
        assert edge["secured"] is True
        assert (edge["clientId"], edge["serverId"]) == (CLI.uri, WEB.uri)
        assert edge["successRate"] == 1.0
    wide = _while_requests_flow(mesh, "edges", "--admin", server, "--window", "1s",
                                "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    assert "√" in wide.stdout and CLI.uri in wide.stdout and WEB.uri in wide.stdout
    for admin, direction, peer in ((server, "inbound", CLI), (client, "outbound", WEB)):
        tapped = _while_requests_flow(mesh, "tap", "--admin", admin, "--path", "/watched",
                                      "--max-events", "1", "--duration", "15s")
        assert tapped.returncode == 0, tapped.stderr
        (line,) = tapped.stdout.splitlines()
        assert f" {direction} GET " in line and "-> 200" in line
        assert f" tls={peer.uri} " in line


def _first_failure(mesh: TwoProxies) -> tuple[int, dict[str, str]]:
    """The first answer that is not a 200 (the endpoint is unreachable after it: 503s)."""
    answers: list[tuple[int, dict[str, str], bytes]] = []
    _until(lambda: answers.append(get(mesh.client.outbound, "/", host="web")) or
           answers[-1][0] != 200)
    return answers[-1][0], answers[-1][1]


def test_a_server_with_another_identity_is_refused(mesh: TwoProxies, tmp_path: Path) -> None:
    # A server that proves it is web, where api was expected: OpenSSL says no.
    server = TlsServer(tmp_path, *mesh.kit.leaf(WEB))
    try:
        mesh.route("web", f"127.0.0.1:{server.port}", identity("api").uri)
        status, headers = _first_failure(mesh)
        assert status == 502 and "Hostname mismatch" in headers["tulle-error"]
        assert server.handshakes == 0
    finally:
        server.close()
    # web's own proxy, asked for api: the ClientHello does not name it, so it is passed
    # on as the app's own TLS (never decrypted), and the client gets no answer it trusts.
    passed_on = metric(mesh.server.admin_port, "tulle_tls_handshakes_total",
                       direction="inbound", result="passed_on")
    mesh.route("web", f"127.0.0.1:{mesh.inbound[1]}", identity("api").uri)
    assert _first_failure(mesh)[0] in (502, 503)
    assert metric(mesh.server.admin_port, "tulle_tls_handshakes_total", direction="inbound",
                  result="passed_on") > passed_on


class TlsServer:
    """A TLS server on loopback presenting ``chain``/``key``, answering 200 to anything."""

    def __init__(self, folder: Path, chain: bytes, key: bytes) -> None:
        (folder / "server.crt").write_bytes(chain)
        (folder / "server.key").write_bytes(key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(folder / "server.crt", folder / "server.key")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.handshakes += 1
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("problem", ["expired", "untrusted"])
def test_a_server_whose_certificate_is_expired_or_untrusted_is_refused(
        mesh: TwoProxies, tmp_path: Path, problem: str) -> None:
    chain, key = mesh.kit.leaf(WEB, **{problem: True})
    server = TlsServer(tmp_path, chain, key)
    try:
        mesh.route("web", f"127.0.0.1:{server.port}", WEB.uri)
        status, headers = _first_failure(mesh)
        assert status == 502
        expected = "certificate has expired" if problem == "expired" else "unable to get local"
        assert expected in headers["tulle-error"]
        assert server.handshakes == 0
    finally:
        server.close()


def _client_context(kit: IdentityKit, folder: Path, chain: bytes | None,
                    key: bytes | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=kit.anchor.cert_pem.decode())
    if chain is not None and key is not None:
        (folder / "client.crt").write_bytes(chain)
        (folder / "client.key").write_bytes(key)
        context.load_cert_chain(folder / "client.crt", folder / "client.key")
    return context


def _tls_request(address: tuple[str, int], context: ssl.SSLContext) -> bytes:
    """A request over TLS with the server name of web's identity: the answer, or b""."""
    with socket.create_connection(address, timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=WEB.dns_name) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
                return tls.recv(65536)
        except (ssl.SSLError, ConnectionResetError):
            return b""


@pytest.mark.parametrize("problem", ["expired", "untrusted", "none"])
def test_a_client_whose_certificate_is_expired_untrusted_or_missing_is_refused(
        mesh: TwoProxies, tmp_path: Path, problem: str) -> None:
    if problem == "none":
        chain = key = None
    else:
        chain, key = mesh.kit.leaf(CLI, **{problem: True})
    failed_before = metric(mesh.server.admin_port, "tulle_tls_handshakes_total",
                           direction="inbound", result="failed")
    assert _tls_request(mesh.inbound, _client_context(mesh.kit, tmp_path, chain, key)) == b""
    _until(lambda: metric(mesh.server.admin_port, "tulle_tls_handshakes_total",
                          direction="inbound", result="failed") > failed_before)
    # A good client certificate, on the same port, is served.
    good = _tls_request(mesh.inbound, _client_context(mesh.kit, tmp_path, *mesh.kit.leaf(CLI)))
    assert good.startswith(b"HTTP/1.1 200")


REQUIRE_MTLS = """---
apiVersion: policy.tulle.dev/v1alpha1
kind: Server
metadata: {name: web-http, namespace: shop}
spec: {podSelector: {matchLabels: {app: web}}, port: PORT}
---
apiVersion: policy.tulle.dev/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: cli-only, namespace: shop}
spec: {identityRefs: [{kind: ServiceAccount, name: cli}]}
---
apiVersion: policy.tulle.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: cli-calls-web, namespace: shop}
spec:
  targetRef: {group: policy.tulle.dev, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{kind: MeshTLSAuthentication, name: cli-only}]
"""


def test_plaintext_where_policy_requires_mtls_is_refused(mesh: TwoProxies, app: Backend) -> None:
    port = app.address.rsplit(":", 1)[1]
    mesh_file = mesh.server_manifests / "mesh.yaml"
    mesh_file.write_text(mesh_file.read_text() + REQUIRE_MTLS.replace("PORT", port))
    _until(lambda: get(mesh.inbound, "/")[0] == 403)
    _, headers, _ = get(mesh.inbound, "/")
    assert headers["tulle-error"] == "127.0.0.1 may not reach web-http (unauthenticated)"
    assert get(mesh.client.outbound, "/", host="web")[0] == 200  # cli over mTLS
    assert metric(mesh.server.admin_port, "inbound_http_authz_allow_total",
                  srv_name="web-http", authz_name="authorizationpolicy:cli-calls-web") >= 1


LIMITS = """---
apiVersion: policy.tulle.dev/v1alpha1
kind: Server
metadata: {name: web-http, namespace: shop}
spec: {podSelector: {matchLabels: {app: web}}, port: PORT, accessPolicy: all-unauthenticated}
---
apiVersion: policy.tulle.dev/v1alpha1
kind: HTTPLocalRateLimitPolicy
metadata: {name: web-rl, namespace: shop}
spec:
  targetRef: {group: policy.tulle.dev, kind: Server, name: web-http}
  total: {requestsPerSecond: 1000}
  identity: {requestsPerSecond: 5}
  overrides:
    - requestsPerSecond: OVERRIDE
      clientRefs: [{kind: ServiceAccount, name: cli, namespace: shop}]
"""


def test_rate_limit_overrides_go_by_the_identity_mtls_proved(mesh: TwoProxies,
                                                              app: Backend) -> None:
    """Per-identity limits and overrides keyed by the client's certificate: plaintext
    callers share the identity bucket (5/s); cli, named in an override, has its own.
    With the override at 200/s, 60 requests from cli at once all pass while plaintext
    is refused; at 2/s, cli's requests back to back are admitted within the GCRA bounds
    (burst B = R = 2, see tests/unit/policy/test_rate_limit.py), the rest answered 429
    with Retry-After and counted as the override's."""
    port = app.address.rsplit(":", 1)[1]
    mesh_file = mesh.server_manifests / "mesh.yaml"
    plain = mesh_file.read_text()
    admin = mesh.server.admin_port

    def limited(limit: str) -> float:
        return metric(admin, "tulle_inbound_rate_limited_total", srv_name="web-http",
                      limit=limit)

    mesh_file.write_text(plain + LIMITS.replace("PORT", port).replace("OVERRIDE", "200"))
    _until(lambda: get(mesh.inbound, "/")[0] == 429)  # plaintext: the shared bucket
    statuses = [get(mesh.client.outbound, "/", host="web")[0] for _ in range(60)]
    assert statuses == [200] * 60
    assert limited("identity") >= 1 and limited("override") == 0

    mesh_file.write_text(plain + LIMITS.replace("PORT", port).replace("OVERRIDE", "2"))
    _until(lambda: get(mesh.client.outbound, "/", host="web")[0] == 429)
    refused_before = limited("override")
    time.sleep(1.1)  # the bucket fills again (a burst of 2 at 2/s: 1 s)
    sends: list[float] = []
    answers: list[tuple[int, dict[str, str], bytes]] = []
    for _ in range(20):
        sends.append(time.monotonic())
        answers.append(get(mesh.client.outbound, "/", host="web"))
    span, gap = sends[-1] - sends[0], max(b - a for a, b in itertools.pairwise(sends))
    admitted = sum(status == 200 for status, _, _ in answers)
    refused = [headers for status, headers, _ in answers if status == 429]
    assert gap < 0.5  # below the tolerance (B - 1)/R, where the bounds hold
    assert 2 + int((span - gap) * 2) - 1 <= admitted <= 2 + int(span * 2) + 1
    assert len(refused) == 20 - admitted
    assert all(headers["retry-after"] == "1" for headers in refused)
    assert limited("override") - refused_before == len(refused)


def test_tls_garbage_on_the_inbound_port_costs_nothing_lasting(mesh: TwoProxies) -> None:
    import random

    rng = random.Random(1414)
    admin = mesh.server.admin_port
    assert get(mesh.client.outbound, "/", host="web")[0] == 200
    rss_before = mesh.server.rss_kib()
    hello = _hello()
    payloads = [
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",  # a ClientHello too short for its length
        b"\x16\x03\x01\xff\xff\x01" + bytes(100),  # a record announcing 64 KiB, then silence
        hello[:40],  # half a real ClientHello, then close
        hello + b"\x17\x03\x03\x00\x10" + bytes(16),  # a ClientHello, then junk records
    ]
    for _ in range(200):  # records that say ClientHello, of random length and content
        size = rng.randrange(1, 600)
        payloads.append(b"\x16\x03\x01" + size.to_bytes(2, "big") + b"\x01"
                        + rng.randbytes(rng.randrange(0, size + 50)))
    for index, payload in enumerate(payloads):
        with socket.create_connection(mesh.inbound, timeout=5) as sock:
            try:
                sock.sendall(payload)
                if index % 2:
                    sock.shutdown(socket.SHUT_WR)
                sock.settimeout(0.05 if index > 3 else 1.0)
                sock.recv(65536)
            except (OSError, TimeoutError):
                pass
    # Every one of them is gone (the silent ones within the ClientHello timeout), the
    # proxy serves as before, and its memory did not grow with them.
    _until(lambda: metric(admin, "tcp_open_connections", direction="inbound",
                          peer="src") <= 1, timeout=15)
    assert get(mesh.client.outbound, "/", host="web")[0] == 200
    assert mesh.server.rss_kib() - rss_before < 4096
    assert metric(admin, "tulle_tls_handshakes_total", direction="inbound",
                  result="failed") + metric(admin, "tulle_tls_handshakes_total",
                                            direction="inbound", result="passed_on") >= 200


def _hello() -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=WEB.dns_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")



def _server_certificate(address: tuple[str, int], kit: IdentityKit, folder: Path) -> bytes:
    """The certificate web's proxy presents to a new mTLS connection (DER)."""
    context = _client_context(kit, folder, *kit.leaf(CLI))
    with socket.create_connection(address, timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=WEB.dns_name) as tls:
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def test_certificates_rotate_under_load_and_nothing_is_lost(
        tmp_path: Path, app: Backend) -> None:
    """Leaves of 3 s, renewed at about 2 s: four clients keep requests flowing through
    both proxies for 8 s, across several renewals on each side. Every request is
    answered 200; the mTLS connections opened before the first renewal carry on (none
    is reopened); and a new connection meets the newest certificate."""
    kit = IdentityKit(tmp_path / "identity", leaf_lifetime="3s").start()
    mesh = TwoProxies(tmp_path, kit, app)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        first = _server_certificate(mesh.inbound, kit, tmp_path)
        threads, statuses, errors = _load(mesh, 4, stop)
        time.sleep(1)
        opened = metric(mesh.server.admin_port, "tcp_open_total", direction="inbound",
                        peer="src")
        time.sleep(7)
        stop.set()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(statuses) > 200 and set(statuses) == {200}
        for proxy in (mesh.client, mesh.server):
            assert metric(proxy.admin_port, "identity_cert_refresh_total") >= 2
        # No connection between the proxies was reopened by the renewals.
        assert metric(mesh.server.admin_port, "tcp_open_total", direction="inbound",
                      peer="src") == opened
        assert _server_certificate(mesh.inbound, kit, tmp_path) != first
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        mesh.stop()
        kit.stop()


def _load(mesh: TwoProxies, clients: int, stop: threading.Event
          ) -> tuple[list[threading.Thread], list[int], list[BaseException]]:
    """``clients`` keep-alive clients sending cli → web until ``stop``: the threads, the
    statuses they saw and their errors."""
    import http.client

    statuses: list[int] = []
    errors: list[BaseException] = []

    def client() -> None:
        conn = http.client.HTTPConnection(*mesh.client.outbound, timeout=10)
        try:
            while not stop.is_set():
                conn.request("GET", "/", headers={"Host": "web"})
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    return threads, statuses, errors


def _context_under(anchor: CertificateAuthority, issuer: CertificateAuthority,
                   folder: Path) -> ssl.SSLContext:
    """A client context trusting ``anchor``, with a leaf for cli made by ``issuer``."""
    key = new_key()
    chain = issuer.certify(signing_request(key), CLI, datetime.timedelta(hours=1))
    (folder / "rotated.crt").write_bytes(chain + issuer.cert_pem)
    (folder / "rotated.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=anchor.cert_pem.decode())
    context.load_cert_chain(folder / "rotated.crt", folder / "rotated.key")
    return context


def test_the_trust_anchor_rotates_in_three_steps_under_load(
        tmp_path: Path, app: Backend) -> None:
    """docs/security.md's anchor rotation, done to a running mesh: trust both anchors,
    issue from the new one, drop the old one, each step waiting for both proxies to
    renew (leaves of 3 s). Requests flow throughout and every one is answered 200; at
    the end web's proxy presents a leaf of the new anchor and refuses a client whose
    leaf is of the old one."""
    kit = IdentityKit(tmp_path / "identity", leaf_lifetime="3s").start()
    mesh = TwoProxies(tmp_path, kit, app)
    old, new = kit.anchor, CertificateAuthority.generate("the next trust anchor")
    new_issuer = new.issue_issuer("the next issuer")
    stop = threading.Event()
    threads, statuses, errors = _load(mesh, 2, stop)

    def step(issuer: CertificateAuthority, anchors: bytes) -> None:
        # Two renewals after the write: the first may have been under way before it.
        before = [metric(proxy.admin_port, "identity_cert_refresh_total")
                  for proxy in (mesh.client, mesh.server)]
        write_issuer(kit.issuer_dir, issuer, anchors)
        _until(lambda: all(metric(proxy.admin_port, "identity_cert_refresh_total") >= seen + 2
                           for proxy, seen in zip((mesh.client, mesh.server), before,
                                                  strict=True)), timeout=20)

    try:
        step(kit.issuer, old.cert_pem + new.cert_pem)  # 1. trust both
        step(new_issuer, new.cert_pem + old.cert_pem)  # 2. issue from the new anchor
        step(new_issuer, new.cert_pem)  # 3. drop the old one
        stop.set()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(statuses) > 100 and set(statuses) == {200}
        # New connections: web's proxy proves itself under the new anchor (a client that
        # trusts only it, with a leaf of the new issuer, is served)...
        assert _tls_request(mesh.inbound, _context_under(new, new_issuer, tmp_path)
                            ).startswith(b"HTTP/1.1 200")
        # ...and no longer takes a client whose leaf chains to the old anchor.
        assert _tls_request(mesh.inbound, _context_under(new, old.issue_issuer("old"),
                                                         tmp_path)) == b""
        assert get(mesh.client.outbound, "/", host="web")[0] == 200
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        mesh.stop()
        kit.stop()


class EchoServer:
    """A TCP server that sends back what it reads (an opaque protocol, not HTTP)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.listener.close()


def _tunnel(address: tuple[str, int], authority: str, payload: bytes) -> bytes:
    """CONNECT through the outbound listener, then ``payload`` through the tunnel."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            piece = sock.recv(4096)
            if not piece:
                return head
            head += piece
        if not head.startswith(b"HTTP/1.1 200"):
            return head
        sock.sendall(payload)
        answer = b""
        try:
            while len(answer) < len(payload):
                piece = sock.recv(65536)
                if not piece:
                    break
                answer += piece
        except OSError:
            pass
        return answer


def test_opaque_tcp_between_meshed_proxies_is_mutual_tls(
        tmp_path: Path, kit: IdentityKit) -> None:
    """A CONNECT tunnel to a TCP service whose endpoint is a meshed proxy: the proxies
    speak mTLS with ALPN tulle.opaque/1, and the callee's proxy splices the plaintext to
    its app; its inbound policy admits or resets the connection by the caller's identity."""
    echo = EchoServer()
    server_manifests = tmp_path / "web"
    server_manifests.mkdir()
    mesh_yaml = ("apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\nmetadata: {name: default}\n"
                 "spec: {proxy: {workload: {namespace: shop, labels: {app: web}}}}\n")
    (server_manifests / "mesh.yaml").write_text(mesh_yaml)
    server, inbound = kit.server_proxy(server_manifests, f"127.0.0.1:{echo.port}", "web")
    client_manifests = tmp_path / "cli"
    client_manifests.mkdir()
    (client_manifests / "echo.yaml").write_text(
        "apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {name: echo}\n"
        "spec:\n  protocol: tcp\n  endpoints:\n"
        f'    - {{address: "127.0.0.1:{inbound[1]}", identity: "{WEB.uri}"}}\n')
    client = RunningProxy(client_manifests, *kit.proxy_args("cli"))
    try:
        payload = b"\x00opaque bytes, not HTTP\xff" * 100
        assert _tunnel(client.outbound, "echo:80", payload) == payload
        assert metric(server.admin_port, "tulle_tls_handshakes_total", direction="inbound",
                      result="terminated") >= 1
        assert metric(server.admin_port, "inbound_tcp_authz_allow_total",
                      srv_name="default:all-unauthenticated") >= 1
        # Only api may connect now: cli's tunnel is reset, and counted.
        (server_manifests / "mesh.yaml").write_text(mesh_yaml + REQUIRE_MTLS.replace(
            "PORT", str(echo.port)).replace("name: cli}", "name: api}"))
        answers: list[bytes] = []

        def denied() -> bool:
            answers.append(_tunnel(client.outbound, "echo:80", b"ping"))
            return metric(server.admin_port, "inbound_tcp_authz_deny_total",
                          srv_name="web-http") > 0

        _until(denied)
        assert answers[-1] == b""  # the tunnel opened, and then its far end was reset
    finally:
        client.stop()
        server.stop()
        echo.close()


def test_http2_between_meshed_proxies_is_negotiated_by_alpn(mesh: TwoProxies) -> None:
    """A service declared http2: the caller's proxy offers ALPN h2, the callee's proxy
    serves HTTP/2 over the mTLS connection, and HTTP/1.1 to its app."""
    (mesh.client_manifests / "web.yaml").write_text(
        "apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {name: web}\n"
        "spec:\n  protocol: http2\n  endpoints:\n"
        f'    - {{address: "127.0.0.1:{mesh.inbound[1]}", identity: "{WEB.uri}"}}\n')
    before = metric(mesh.server.admin_port, "tulle_tls_handshakes_total", direction="inbound",
                    result="terminated")
    _until(lambda: metric(mesh.server.admin_port, "tulle_tls_handshakes_total",
                          direction="inbound", result="terminated") > before
           if get(mesh.client.outbound, "/h2", host="web")[0] == 200 else False)
    for _ in range(5):
        status, _, body = get(mesh.client.outbound, "/h2", host="web")
        assert status == 200 and body == b"app"
    assert metric(mesh.server.admin_port, "response_total", direction="inbound", tls="true",
                  client_id=CLI.uri, status_code="200") >= 5
