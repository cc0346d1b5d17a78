"""``tulle identity``: make the mesh's trust anchor, issuer and join tokens.

``tulle install`` makes an anchor and an issuer for a cluster by itself; these commands
are for running the mesh off Kubernetes (``tulle control --identity-issuer-dir``) and for
rotating either (docs/security.md):

- ``tulle identity anchor DIR`` — a new trust anchor: ``anchor.crt`` and ``anchor.key``
  (keep the key offline: it is needed only to sign issuers).
- ``tulle identity issuer DIR --anchor ANCHOR_DIR`` — an issuer the anchor signs, in the
  layout the control plane reads (``tls.crt``, ``tls.key``, ``ca.crt``); ``--also-trust``
  adds anchors to ``ca.crt`` (the old one, while rotating the anchor).
- ``tulle identity join-token NAMESPACE/SERVICE_ACCOUNT`` — a new join token: its line
  for the control plane's ``--join-tokens`` file, and the token for the proxy's
  ``--identity-token-file``.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import click


@click.group()
def identity() -> None:
    """Trust anchors, issuers and join tokens for mesh identity (mTLS)."""


@identity.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--days", default=3650, show_default=True, help="How long the anchor is valid.")
def anchor(directory: Path, days: int) -> None:
    """A new trust anchor in DIRECTORY (anchor.crt, anchor.key)."""
    from tulle.identity.certificates import CertificateAuthority

    ca = CertificateAuthority.generate("tulle trust anchor",
                                       valid_for=datetime.timedelta(days=days))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "anchor.crt").write_bytes(ca.cert_pem)
    key = directory / "anchor.key"
    key.write_bytes(ca.key_pem)
    key.chmod(0o600)
    click.echo(f"trust anchor in {directory}: anchor.crt (distribute), anchor.key (keep "
               f"offline), valid {days} days")


@identity.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--anchor", "anchor_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The anchor that signs the issuer (anchor.crt, anchor.key).")
@click.option("--also-trust", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, help="More anchors for ca.crt (the old one while rotating).")
@click.option("--days", default=365, show_default=True, help="How long the issuer is valid.")
def issuer(directory: Path, anchor_dir: Path, also_trust: tuple[Path, ...], days: int) -> None:
    """A new issuer in DIRECTORY (tls.crt, tls.key, ca.crt), signed by an anchor."""
    from tulle.identity.certificates import CertificateAuthority
    from tulle.identity.issuer import write_issuer

    try:
        root = CertificateAuthority.from_pem((anchor_dir / "anchor.crt").read_bytes(),
                                             (anchor_dir / "anchor.key").read_bytes())
    except (OSError, ValueError) as exc:
        click.echo(f"tulle identity issuer: cannot use the anchor in {anchor_dir}: {exc}",
                   err=True)
        sys.exit(1)
    ca = root.issue_issuer("tulle issuer", valid_for=datetime.timedelta(days=days))
    anchors = root.cert_pem + b"".join(path.read_bytes() for path in also_trust)
    write_issuer(directory, ca, anchors)
    click.echo(f"issuer in {directory}: tls.crt, tls.key, ca.crt "
               f"({1 + len(also_trust)} anchor file(s)), valid {days} days")


@identity.command("join-token")
@click.argument("workload", metavar="NAMESPACE/SERVICE_ACCOUNT")
@click.option("--tokens-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Append the token's line to this file (the control plane's --join-tokens).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the token alone here (the proxy's --identity-token-file).")
def join_token(workload: str, tokens_file: Path | None, out: Path | None) -> None:
    """A new join token for a proxy off Kubernetes to prove it is WORKLOAD."""
    from tulle.identity.join_tokens import new_token, parse_line

    token = new_token()
    line = f"{token} {workload}"
    try:
        parse_line(line, "check.local")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NAMESPACE/SERVICE_ACCOUNT") from None
    if tokens_file is not None:
        with tokens_file.open("a") as tokens:
            tokens.write(line + "\n")
        tokens_file.chmod(0o600)
    if out is not None:
        out.write_text(token + "\n")
        out.chmod(0o600)
    if tokens_file is None and out is None:
        click.echo(line)
