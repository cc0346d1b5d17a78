"""``tulle inject FILE|-``: add the proxy to the workloads in a YAML stream."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click
import yaml

from tulle.kube.inject import ANNOTATIONS

_EPILOG = "Annotations on a workload or its pod template (as Linkerd's config.linkerd.io):\n\n" + \
    "\n\n".join(f"{name}: {what}" for name, what in ANNOTATIONS.items())


@click.command(epilog=_EPILOG)
@click.argument("source", type=click.File("r"))
@click.option("-n", "--control-plane-namespace", default="tulle", show_default=True,
              help="Where the control plane the proxies subscribe to runs.")
@click.option("--trust-anchors", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The mesh's trust anchors (PEM; kubectl -n tulle get configmap "
                   "tulle-identity-trust-anchors -o jsonpath='{.data.ca-bundle\\.crt}'): "
                   "without them the proxies get no identity (the admission webhook adds "
                   "them itself).")
def inject(source: click.utils.LazyFile, control_plane_namespace: str,
           trust_anchors: Path | None) -> None:
    """Print the manifests in SOURCE (a file, or - for stdin) with the Tulle proxy added
    to every Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob and Pod.

    Use: tulle inject app.yaml | kubectl apply -f -"""
    from tulle.kube.inject import InjectConfig, inject_object

    config = InjectConfig.from_chart(control_plane_namespace)
    if trust_anchors is not None:
        config = replace(config, trust_anchors_pem=trust_anchors.read_text())
    try:
        documents = [doc for doc in yaml.safe_load_all(source) if doc is not None]
    except yaml.YAMLError as exc:
        click.echo(f"tulle inject: {getattr(source, 'name', 'input')}: not YAML: {exc}",
                   err=True)
        sys.exit(1)
    injected = [inject_object(document, config) for document in documents]
    click.echo(yaml.safe_dump_all(injected, sort_keys=False, explicit_start=True), nl=False)
