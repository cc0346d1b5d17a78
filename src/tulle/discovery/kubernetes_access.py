"""How to reach a Kubernetes API server: a kubeconfig, or the Pod's service account.

Reading kubeconfigs is the ``kubernetes_asyncio`` client library's job, not Tulle's:
contexts, client certificates, tokens and token files, and exec credential plugins
(what EKS's ``aws eks get-token`` and GKE's ``gke-gcloud-auth-plugin`` are), refreshed
when they expire; in a Pod, the service account's token, re-read as it rotates. This
module only turns its errors into one ``AccessError`` with the file named, and is
imported by the commands that talk to a cluster (never by the proxy: the library is
heavy to import).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import ConfigException, load_incluster_config, load_kube_config


class AccessError(Exception):
    """The kubeconfig or the in-cluster files do not say how to reach the API."""


@dataclass(frozen=True, slots=True)
class ClusterAccess:
    """The client configuration for one API server (``url``) and its credentials."""

    configuration: Configuration

    @property
    def url(self) -> str:
        return str(self.configuration.host)


def _default_kubeconfig() -> Path:
    env = os.environ.get("KUBECONFIG")
    return Path(env.split(os.pathsep)[0]) if env else Path.home() / ".kube" / "config"


async def from_kubeconfig(path: Path | None = None, context_name: str | None = None
                          ) -> ClusterAccess:
    """Access as the kubeconfig at ``path`` (else $KUBECONFIG, else ~/.kube/config) says,
    in its current context or ``context_name``."""
    path = path or _default_kubeconfig()
    if not path.exists():
        raise AccessError(f"cannot read kubeconfig {path}: no such file")
    configuration = Configuration()
    try:
        await load_kube_config(config_file=str(path), context=context_name,
                               client_configuration=configuration, persist_config=False)
    except (ConfigException, OSError, ValueError) as exc:
        raise AccessError(f"kubeconfig {path}: {exc}") from None
    return ClusterAccess(configuration)


def in_cluster() -> ClusterAccess:
    """Access from inside a Pod: KUBERNETES_SERVICE_HOST/PORT and the service account."""
    configuration = Configuration()
    try:
        load_incluster_config(client_configuration=configuration)
    except ConfigException as exc:
        raise AccessError(f"not in a cluster: {exc}") from None
    return ClusterAccess(configuration)
