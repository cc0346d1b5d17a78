"""A mesh with identity on loopback: a trust anchor and issuer on disk, join tokens, a
real ``tulle control`` serving certificates, and real proxies that get theirs from it."""

from __future__ import annotations

import datetime
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.proxy import TULLE, RunningProxy, free_port
from tulle.identity.certificates import CertificateAuthority
from tulle.identity.issuer import write_issuer
from tulle.identity.join_tokens import new_token
from tulle.identity.spiffe import WorkloadIdentity

TRUST_DOMAIN = "mesh.test"


def identity(service_account: str, namespace: str = "shop") -> WorkloadIdentity:
    return WorkloadIdentity(TRUST_DOMAIN, namespace, service_account)


class IdentityKit:
    """The trust material and the control plane's identity service (``start``)."""

    def __init__(self, folder: Path, leaf_lifetime: str = "24h") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.anchor = CertificateAuthority.generate("test trust anchor")
        self.issuer = self.anchor.issue_issuer("test issuer")
        self.issuer_dir = folder / "issuer"
        write_issuer(self.issuer_dir, self.issuer, self.anchor.cert_pem)
        self.anchors = folder / "anchors.pem"
        self.anchors.write_bytes(self.anchor.cert_pem)
        self.tokens = folder / "join-tokens"
        self.tokens.write_text("")
        self.leaf_lifetime = leaf_lifetime
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "control.log"

    def token_for(self, service_account: str, namespace: str = "shop") -> Path:
        """A join token for ``namespace/service_account``, in a file for its proxy."""
        token = new_token()
        with self.tokens.open("a") as tokens:
            tokens.write(f"{token} {namespace}/{service_account}\n")
        path = self.folder / f"token-{namespace}-{service_account}-{token[:4]}"
        path.write_text(token)
        return path

    def start(self) -> IdentityKit:
        manifests = self.folder / "control-manifests"
        manifests.mkdir(exist_ok=True)
        (manifests / "mesh.yaml").write_text(
            "apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\nmetadata: {name: default}\n")
        destination = free_port()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [TULLE, "control", "-f", str(manifests), "--listen", f"127.0.0.1:{destination}",
                 "--identity-listen", f"127.0.0.1:{self.port}",
                 "--identity-issuer-dir", str(self.issuer_dir), "--join-tokens",
                 str(self.tokens), "--trust-domain", TRUST_DOMAIN,
                 "--identity-leaf-lifetime", self.leaf_lifetime],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tulle control exited: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{destination}/ready",
                                            timeout=2):
                    if "identity service on" in self.log_path.read_text():
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"tulle control not ready: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def proxy_args(self, service_account: str, namespace: str = "shop") -> list[str]:
        """What ``tulle proxy`` needs to be ``namespace/service_account``."""
        return ["--identity-address", f"127.0.0.1:{self.port}",
                "--identity-token-file", str(self.token_for(service_account, namespace)),
                "--trust-anchors", str(self.anchors), "--trust-domain", TRUST_DOMAIN]

    def server_proxy(self, manifests: Path, app: str, service_account: str,
                     *args: str) -> tuple[RunningProxy, tuple[str, int]]:
        """A proxy fronting ``app`` as ``service_account``; its inbound address."""
        inbound = ("127.0.0.1", free_port())
        proxy = RunningProxy(manifests, "--app", app, "--inbound",
                             f"127.0.0.1:{inbound[1]}", *self.proxy_args(service_account),
                             *args)
        return proxy, inbound

    def leaf(self, workload: WorkloadIdentity, *, expired: bool = False,
             untrusted: bool = False) -> tuple[bytes, bytes]:
        """A (certificate chain, key) PEM pair for ``workload``, made outside the identity
        service: good, or expired, or from an anchor the mesh does not trust."""
        from tulle.identity.credentials import new_key, signing_request

        now = datetime.datetime.now(datetime.UTC)
        when = now - datetime.timedelta(days=3) if expired else now
        if untrusted:
            issuer = CertificateAuthority.generate("stranger")
        else:
            issuer = CertificateAuthority.from_pem(
                self.issuer.cert_pem, self.issuer.key_pem, clock=lambda: when)
        key = new_key()
        from cryptography.hazmat.primitives import serialization

        leaf = issuer.certify(signing_request(key), workload,
                              datetime.timedelta(hours=1 if expired else 24))
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return leaf + (b"" if untrusted else self.issuer.cert_pem), key_pem
