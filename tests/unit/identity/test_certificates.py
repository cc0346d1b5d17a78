"""The CA issues certificates that a real TLS handshake (OpenSSL, via ssl) accepts."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from pathlib import Path

import pytest

from tulle.identity import CertificateAuthority


def _handshake(tmp_path: Path, ca: CertificateAuthority, cert_pem: bytes, key_pem: bytes,
               server_name: str) -> None:
    (tmp_path / "crt.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "crt.pem", tmp_path / "key.pem")
    client_context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname()) as raw, \
                    client_context.wrap_socket(raw, server_hostname=server_name) as tls:
                tls.sendall(b"x")
        finally:
            thread.join(5)


def test_a_served_certificate_verifies_by_dns_name_and_ip(tmp_path: Path) -> None:
    ca = CertificateAuthority.generate("tulle test CA")
    issued = ca.issue("tulle-control.tulle.svc", dns_names=["tulle-control.tulle.svc"],
                      ip_addresses=["127.0.0.1"])
    _handshake(tmp_path, ca, issued.cert_pem, issued.key_pem, "tulle-control.tulle.svc")
    _handshake(tmp_path, ca, issued.cert_pem, issued.key_pem, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tmp_path, ca, issued.cert_pem, issued.key_pem, "elsewhere.svc")


def test_another_ca_is_not_trusted(tmp_path: Path) -> None:
    ca, other = (CertificateAuthority.generate(name) for name in ("a", "b"))
    issued = other.issue("x", dns_names=["x.svc"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tmp_path, ca, issued.cert_pem, issued.key_pem, "x.svc")


def test_pem_round_trip_and_mismatched_key() -> None:
    ca = CertificateAuthority.generate("root")
    again = CertificateAuthority.from_pem(ca.cert_pem, ca.key_pem)
    assert again.cert_pem == ca.cert_pem
    other = CertificateAuthority.generate("other")
    with pytest.raises(ValueError, match="does not belong"):
        CertificateAuthority.from_pem(ca.cert_pem, other.key_pem)


def test_validity_follows_the_injected_clock() -> None:
    then = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    ca = CertificateAuthority.generate("root", clock=lambda: then)
    certificate = ca.issue("x", dns_names=["x"], valid_for=datetime.timedelta(hours=24)).certificate
    assert certificate.not_valid_after_utc == then + datetime.timedelta(hours=24)
    assert certificate.not_valid_before_utc < then
    with pytest.raises(ValueError, match="at least one"):
        ca.issue("nameless")
