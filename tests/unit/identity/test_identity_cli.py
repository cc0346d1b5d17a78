"""``tulle identity``: an anchor, an issuer it signs (and one that trusts two anchors,
as in an anchor rotation), join tokens; and ``tulle install`` taking that issuer."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from cryptography import x509

from tulle.cli.identity import identity
from tulle.cli.install import install_values
from tulle.identity.issuer import load_issuer
from tulle.identity.join_tokens import parse_line


def _run(*args: str) -> str:
    result = CliRunner().invoke(identity, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_anchor_issuer_and_rotation(tmp_path: Path) -> None:
    _run("anchor", str(tmp_path / "old"))
    _run("anchor", str(tmp_path / "new"))
    assert (tmp_path / "old" / "anchor.key").stat().st_mode & 0o777 == 0o600
    _run("issuer", str(tmp_path / "issuer"), "--anchor", str(tmp_path / "old"))
    ca, anchors = load_issuer(tmp_path / "issuer")
    assert ca.certificate.issuer == x509.load_pem_x509_certificate(
        (tmp_path / "old" / "anchor.crt").read_bytes()).subject
    # Step 2 of an anchor rotation: issue from the new anchor, trust both.
    _run("issuer", str(tmp_path / "issuer"), "--anchor", str(tmp_path / "new"),
         "--also-trust", str(tmp_path / "old" / "anchor.crt"))
    ca, anchors = load_issuer(tmp_path / "issuer")
    assert len(x509.load_pem_x509_certificates(anchors)) == 2
    assert (tmp_path / "issuer" / "tls.key").stat().st_mode & 0o777 == 0o600
    # tulle install takes that issuer as it is.
    values = install_values("tulle", tmp_path / "issuer")
    assert values["identity"]["trustAnchorsPEM"] == anchors.decode()
    assert values["identity"]["issuer"]["keyPEM"] == ca.key_pem.decode()


def test_a_broken_anchor_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "anchor.crt").write_text("not a certificate")
    (tmp_path / "bad" / "anchor.key").write_text("nor a key")
    result = CliRunner().invoke(identity, ["issuer", str(tmp_path / "i"), "--anchor",
                                           str(tmp_path / "bad")])
    assert result.exit_code == 1 and "cannot use the anchor" in result.output


def test_join_tokens(tmp_path: Path) -> None:
    line = _run("join-token", "shop/web").strip()
    token, workload = parse_line(line, "td")
    assert workload.uri == "spiffe://td/ns/shop/sa/web" and len(token) >= 32
    tokens, out = tmp_path / "tokens", tmp_path / "web.token"
    _run("join-token", "shop/web", "--tokens-file", str(tokens), "--out", str(out))
    assert tokens.read_text().split()[0] == out.read_text().strip()
    result = CliRunner().invoke(identity, ["join-token", "Shop/web"])
    assert result.exit_code == 2 and "namespace" in result.output


def test_tulle_install_makes_an_anchor_and_an_issuer_it_signs() -> None:
    values = install_values("tulle")["identity"]
    anchor = x509.load_pem_x509_certificate(values["trustAnchorsPEM"].encode())
    issuer = x509.load_pem_x509_certificate(values["issuer"]["crtPEM"].encode())
    issuer.verify_directly_issued_by(anchor)
    assert "PRIVATE KEY" in values["issuer"]["keyPEM"]
    assert "PRIVATE KEY" not in yaml.safe_dump(values["trustAnchorsPEM"])
