"""``tulle install``: the Helm chart's objects, rendered without helm, for kubectl apply.

``tulle install | kubectl apply -f -`` installs what ``helm install`` would: both
render deploy/helm/tulle (``tulle.kube.chart``). What ``tulle install`` adds are
values: a namespace object (``createNamespace``) and the webhook's certificates,
made here with ``tulle.identity`` (helm makes its own with ``genCA``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml


def install_values(namespace: str) -> dict[str, Any]:
    """The values ``tulle install`` renders with: a namespace and fresh certificates."""
    from tulle.identity import CertificateAuthority

    service = f"tulle-control.{namespace}.svc"
    ca = CertificateAuthority.generate("tulle-webhook-ca")
    issued = ca.issue(service, dns_names=[service, f"tulle-control.{namespace}"])
    return {"createNamespace": True, "webhook": {
        "caBundle": ca.cert_pem.decode(), "crtPEM": issued.cert_pem.decode(),
        "keyPEM": issued.key_pem.decode()}}


@click.command()
@click.option("-n", "--namespace", default="tulle", show_default=True,
              help="The control plane's namespace.")
@click.option("-f", "--values", "values_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A values file, as for helm (may be repeated).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Set one value, e.g. --set controlPlane.replicas=2 (may be repeated).")
def install(namespace: str, values_files: tuple[Path, ...], assignments: tuple[str, ...]
            ) -> None:
    """Print the control plane's objects (CRDs, RBAC, Deployment, webhook) as YAML.

    Use: tulle install | kubectl apply -f -"""
    from tulle.kube.chart import ChartError, merge, render, set_value, to_text

    values = install_values(namespace)
    try:
        for path in values_files:
            values = merge(values, yaml.safe_load(path.read_text()) or {})
        for assignment in assignments:
            set_value(values, assignment)
        click.echo(to_text(render(values, namespace=namespace)), nl=False)
    except (ChartError, yaml.YAMLError) as exc:
        click.echo(f"tulle install: {exc}", err=True)
        sys.exit(1)
