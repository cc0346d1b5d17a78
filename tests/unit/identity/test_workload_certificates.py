"""Mesh identity certificates, checked field by field with ``cryptography``: the trust
anchor, the issuer it signs, and the 24-hour leaves the issuer makes from a proxy's
signing request."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tulle.identity.certificates import CertificateAuthority
from tulle.identity.credentials import (
    Credentials,
    CredentialsError,
    identity_of,
    new_key,
    signing_request,
)
from tulle.identity.spiffe import IdentityError, WorkloadIdentity, dns_name_of

NOW = datetime.datetime(2031, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
DAY = datetime.timedelta(hours=24)
WEB = WorkloadIdentity("cluster.local", "shop", "web")


def _chain() -> tuple[CertificateAuthority, CertificateAuthority]:
    anchor = CertificateAuthority.generate("tulle trust anchor", clock=lambda: NOW)
    return anchor, anchor.issue_issuer("tulle issuer", valid_for=datetime.timedelta(days=30))


def test_spiffe_ids_and_their_server_names() -> None:
    assert WEB.uri == "spiffe://cluster.local/ns/shop/sa/web"
    assert WEB.dns_name == "web.shop.serviceaccount.identity.cluster.local"
    assert WorkloadIdentity.parse(WEB.uri) == WEB
    assert dns_name_of("spiffe://td/ns/a/sa/b.c") == "b.c.a.serviceaccount.identity.td"
    for bad in ("http://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/a",
                "spiffe://cluster.local/ns/a/sa/b/c", "spiffe://cluster.local/sa/b/ns/a",
                "spiffe://Cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/A/sa/b",
                "spiffe:///ns/a/sa/b", "spiffe://cluster.local/ns//sa/b"):
        with pytest.raises(IdentityError):
            WorkloadIdentity.parse(bad)


def test_the_issuer_is_an_intermediate_ca_under_the_anchor() -> None:
    anchor, issuer = _chain()
    root, cert = anchor.certificate, issuer.certificate
    assert root.issuer == root.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.issuer == root.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "tulle issuer"
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    cert.verify_directly_issued_by(root)
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=30)
    assert issuer.chain == (cert,) and anchor.chain == ()


def test_a_leaf_names_the_workload_not_what_the_request_asked_for() -> None:
    _anchor, issuer = _chain()
    key = new_key()
    request = signing_request(key, name="admin.kube-system.serviceaccount.identity.evil")
    leaf = x509.load_pem_x509_certificate(issuer.certify(request, WEB, DAY))
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert leaf.issuer == issuer.certificate.subject
    leaf.verify_directly_issued_by(issuer.certificate)
    assert leaf.not_valid_before_utc == NOW - datetime.timedelta(minutes=5)
    assert leaf.not_valid_after_utc == NOW + DAY
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == WEB.dns_name
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [WEB.uri]
    assert san.value.get_values_for_type(x509.DNSName) == [WEB.dns_name]
    assert san.value.get_values_for_type(x509.IPAddress) == []
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == issuer.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert identity_of(leaf) == WEB
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)


def test_bad_signing_requests_are_refused() -> None:
    _, issuer = _chain()
    with pytest.raises(ValueError, match="PEM certificate signing request"):
        issuer.certify(b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n", WEB, DAY)
    tampered = bytearray(signing_request(new_key()))
    tampered[200] = ord("A") if tampered[200] != ord("A") else ord("B")
    with pytest.raises(ValueError):
        issuer.certify(bytes(tampered), WEB, DAY)
    p384 = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        ec.generate_private_key(ec.SECP384R1()), hashes.SHA256())
    with pytest.raises(ValueError, match="P-256"):
        issuer.certify(p384.public_bytes(serialization.Encoding.PEM), WEB, DAY)


def test_credentials_are_checked_before_use() -> None:
    anchor, issuer = _chain()
    key = new_key()
    leaf = issuer.certify(signing_request(key), WEB, DAY)
    received = NOW + datetime.timedelta(hours=1)
    credentials = Credentials.issued(key, leaf, issuer.chain_pem, anchor.cert_pem, received)
    assert credentials.identity == WEB
    assert credentials.not_before == NOW - datetime.timedelta(minutes=5)
    assert credentials.lifetime == DAY - datetime.timedelta(hours=1)
    assert credentials.renew_at() == received + credentials.lifetime * 0.7
    with pytest.raises(CredentialsError, match="not for this proxy's key"):
        Credentials.issued(new_key(), leaf, issuer.chain_pem, anchor.cert_pem, NOW)
    with pytest.raises(CredentialsError, match="does not chain"):
        Credentials.issued(key, leaf, b"", anchor.cert_pem, NOW)  # the issuer is missing
    stranger = CertificateAuthority.generate("another mesh", clock=lambda: NOW)
    with pytest.raises(CredentialsError, match="does not chain"):
        Credentials.issued(key, leaf, issuer.chain_pem, stranger.cert_pem, NOW)
    with pytest.raises(CredentialsError, match="does not chain"):  # expired by then
        Credentials.issued(key, leaf, issuer.chain_pem, anchor.cert_pem, NOW + 2 * DAY)
    with pytest.raises(CredentialsError, match="malformed"):
        Credentials.issued(key, b"junk", issuer.chain_pem, anchor.cert_pem, NOW)


def test_an_issuer_round_trips_through_pem_with_its_chain() -> None:
    anchor, issuer = _chain()
    again = CertificateAuthority.from_pem(issuer.cert_pem + anchor.cert_pem, issuer.key_pem,
                                          clock=lambda: NOW)
    assert again.chain == (issuer.certificate,)
    key = new_key()
    leaf = again.certify(signing_request(key), WEB, DAY)
    Credentials.issued(key, leaf, again.chain_pem, anchor.cert_pem, NOW)
    leaf_only = anchor.issue("x", dns_names=["x"])
    with pytest.raises(ValueError, match="not a CA"):
        CertificateAuthority.from_pem(leaf_only.cert_pem, leaf_only.key_pem)


def test_an_rsa_root_may_issue_directly() -> None:
    """The chart's fallback (helm's genCA makes an RSA CA) is anchor and issuer at once."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tulle-identity")])
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(rsa_key.public_key()).serial_number(1)
            .not_valid_before(NOW - DAY).not_valid_after(NOW + 365 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=True, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(rsa_key.public_key()),
                           critical=False)
            .sign(rsa_key, hashes.SHA256()))
    root_pem = root.public_bytes(serialization.Encoding.PEM)
    key_pem = rsa_key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
    ca = CertificateAuthority.from_pem(root_pem, key_pem, clock=lambda: NOW)
    assert ca.chain == ()
    key = new_key()
    credentials = Credentials.issued(key, ca.certify(signing_request(key), WEB, DAY), b"",
                                     root_pem, NOW)
    assert credentials.identity == WEB
