"""``tulle install``: the Helm chart's objects, rendered without helm, for kubectl apply.

``tulle install | kubectl apply -f -`` installs what ``helm install`` would: both
render deploy/helm/tulle (``tulle.kube.chart``). What ``tulle install`` adds are
values: a namespace object (``createNamespace``), the webhook's certificates, and mesh
identity's trust anchor and the issuer it signs, made here with ``tulle.identity`` (helm
makes its own with ``genCA``). The anchor's key is not kept: to keep one (to sign the
next issuer yourself), make the issuer with ``tulle identity`` and give its directory
(``--identity-issuer-dir``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml


def install_values(namespace: str, issuer_dir: Path | None = None) -> dict[str, Any]:
    """The values ``tulle install`` renders with: a namespace and fresh certificates (the
    identity issuer from ``issuer_dir`` when given)."""
    from tulle.identity import CertificateAuthority

    service = f"tulle-control.{namespace}.svc"
    ca = CertificateAuthority.generate("tulle-webhook-ca")
    issued = ca.issue(service, dns_names=[service, f"tulle-control.{namespace}"])
    if issuer_dir is not None:
        from tulle.identity.issuer import load_issuer

        issuer, anchors = load_issuer(issuer_dir)  # checked: it chains to its anchors
        crt, key = (issuer_dir / "tls.crt").read_bytes(), issuer.key_pem
    else:
        anchor = CertificateAuthority.generate("tulle trust anchor")
        issuer = anchor.issue_issuer("tulle issuer")
        anchors, crt, key = anchor.cert_pem, issuer.chain_pem, issuer.key_pem
    return {"createNamespace": True, "webhook": {
        "caBundle": ca.cert_pem.decode(), "crtPEM": issued.cert_pem.decode(),
        "keyPEM": issued.key_pem.decode()},
        "identity": {"trustAnchorsPEM": anchors.decode(),
                     "issuer": {"crtPEM": crt.decode(), "keyPEM": key.decode()}}}


@click.command()
@click.option("-n", "--namespace", default="tulle", show_default=True,
              help="The control plane's namespace.")
@click.option("-f", "--values", "values_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A values file, as for helm (may be repeated).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Set one value, e.g. --set controlPlane.replicas=2 (may be repeated).")
@click.option("--identity-issuer-dir", type=click.Path(exists=True, file_okay=False,
                                                       path_type=Path),
              help="Use this identity issuer (tls.crt, tls.key, ca.crt: tulle identity "
                   "issuer) instead of making an anchor and issuer.")
def install(namespace: str, values_files: tuple[Path, ...], assignments: tuple[str, ...],
            identity_issuer_dir: Path | None) -> None:
    """Print the control plane's objects (CRDs, RBAC, Deployment, webhook) as YAML.

    Use: tulle install | kubectl apply -f -"""
    from tulle.identity.issuer import IssuerError
    from tulle.kube.chart import ChartError, merge, render, set_value, to_text

    try:
        values = install_values(namespace, identity_issuer_dir)
    except IssuerError as exc:
        click.echo(f"tulle install: {exc}", err=True)
        sys.exit(1)
    try:
        for path in values_files:
            values = merge(values, yaml.safe_load(path.read_text()) or {})
        for assignment in assignments:
            set_value(values, assignment)
        click.echo(to_text(render(values, namespace=namespace)), nl=False)
    except (ChartError, yaml.YAMLError) as exc:
        click.echo(f"tulle install: {exc}", err=True)
        sys.exit(1)
