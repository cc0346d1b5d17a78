"""How to reach a Kubernetes API server: from a kubeconfig file or from inside a Pod.

Reads only what Tulle needs — the server URL, the CA to trust, and a bearer token
or a client certificate — from the current (or named) context of a kubeconfig, or
from the service account files every Pod gets. In-cluster tokens are re-read
from disk at each request, because bound service-account tokens rotate.
Exec credential plugins and auth providers are not supported: use a token or a
client certificate (a ServiceAccount token is what the control plane runs with).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class AccessError(Exception):
    """The kubeconfig or the in-cluster files do not say how to reach the API."""


@dataclass(slots=True)
class ClusterAccess:
    """Where the API server is and how to authenticate to it."""

    host: str
    port: int
    ssl: ssl.SSLContext | None
    token: str | None = None
    token_file: Path | None = None
    server_hostname: str | None = None
    _files: list[Path] = field(default_factory=list)

    def auth_headers(self) -> list[tuple[str, str]]:
        token = self.token
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except OSError as exc:
                raise AccessError(f"cannot read token file {self.token_file}: {exc}") from None
        return [("Authorization", f"Bearer {token}")] if token else []

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl else "http"
        return f"{scheme}://{self.host}:{self.port}"


def from_url(server: str, *, token: str | None = None, ca_file: str | None = None,
             insecure: bool = False) -> ClusterAccess:
    """Access to ``server`` (``https://host:port``) with an optional token and CA."""
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AccessError(f"expected a server URL like https://host:6443, got {server!r}")
    context = None
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return ClusterAccess(parts.hostname, port, context, token=token,
                         server_hostname=parts.hostname)


def in_cluster(directory: Path = SERVICE_ACCOUNT_DIR,
               environ: dict[str, str] | None = None) -> ClusterAccess:
    """Access from inside a Pod: KUBERNETES_SERVICE_HOST/PORT and the service account."""
    env = dict(os.environ if environ is None else environ)
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise AccessError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    token_file = directory / "token"
    if not token_file.exists():
        raise AccessError(f"not in a cluster: {token_file} does not exist")
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    host = host.strip("[]")
    return ClusterAccess(host, int(port), context, token_file=token_file,
                         server_hostname="kubernetes.default.svc")


def from_kubeconfig(path: Path | None = None, context_name: str | None = None) -> ClusterAccess:
    """Access as the kubeconfig at ``path`` (else $KUBECONFIG, else ~/.kube/config) says."""
    if path is None:
        env = os.environ.get("KUBECONFIG")
        path = Path(env.split(os.pathsep)[0]) if env else Path.home() / ".kube" / "config"
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AccessError(f"cannot read kubeconfig {path}: {exc}") from None
    base = path.parent
    context_name = context_name or document.get("current-context")
    context = _named(document, "contexts", "context", context_name, path)
    cluster = _named(document, "clusters", "cluster", context.get("cluster"), path)
    user = _named(document, "users", "user", context.get("user"), path, required=False)
    server = cluster.get("server")
    if not isinstance(server, str):
        raise AccessError(f"{path}: cluster {context.get('cluster')!r} has no server")
    files: list[Path] = []
    ca_file = _file_or_data(cluster, "certificate-authority", base, files)
    access = from_url(server, token=user.get("token"), ca_file=ca_file,
                      insecure=bool(cluster.get("insecure-skip-tls-verify")))
    access.server_hostname = cluster.get("tls-server-name") or access.server_hostname
    if user.get("tokenFile"):
        access.token_file = base / user["tokenFile"]
    cert = _file_or_data(user, "client-certificate", base, files)
    key = _file_or_data(user, "client-key", base, files)
    if cert and key and access.ssl is not None:
        access.ssl.load_cert_chain(cert, key)
    if user.get("exec") or user.get("auth-provider"):
        raise AccessError(f"{path}: user {context.get('user')!r} uses an exec or auth-provider "
                          "plugin, which Tulle does not run; use a token or client certificate")
    for file in files:  # loaded into the SSL context; no need to keep key material on disk
        file.unlink(missing_ok=True)
    return access


def _named(document: dict[str, Any], section: str, key: str, name: Any, path: Path,
           required: bool = True) -> dict[str, Any]:
    for entry in document.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(key) or {}
            return value if isinstance(value, dict) else {}
    if required:
        raise AccessError(f"{path}: no {key} named {name!r} in {section}")
    return {}


def _file_or_data(section: dict[str, Any], field_name: str, base: Path,
                  written: list[Path]) -> str | None:
    """A path for ``field_name``, writing ``field_name-data`` to a private temp file."""
    data = section.get(f"{field_name}-data")
    if data:
        handle, name = tempfile.mkstemp(prefix="tulle-kube-")
        with os.fdopen(handle, "wb") as file:
            file.write(base64.b64decode(data))
        written.append(Path(name))
        return name
    value = section.get(field_name)
    return str(base / value) if value else None
