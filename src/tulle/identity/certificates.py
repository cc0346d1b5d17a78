"""A certificate authority that issues X.509 certificates with SANs, in and out as PEM.

Keys are ECDSA P-256: small, fast to make (a control plane will issue one per proxy),
and accepted by every TLS stack Tulle meets (Go's, for the API server calling the
webhook; OpenSSL's, for Python). Certificates carry what verifiers check: subject
alternative names (DNS names and IP addresses; the common name alone is ignored by
modern clients), key usage, extended key usage, and the CA's key identifier. The
clock is injected so tests can issue certificates that are not yet valid or already
expired.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Clock = Callable[[], datetime.datetime]
# Issued certificates start a little in the past: a verifier whose clock is slightly
# behind the issuer's would otherwise reject a certificate made a moment ago.
BACKDATE = datetime.timedelta(minutes=5)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate and its private key, as PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class CertificateAuthority:
    """Signs certificates with its key; made fresh (``generate``) or loaded (``from_pem``)."""

    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey,
                 clock: Clock = _now) -> None:
        self.certificate = certificate
        self._key = key
        self._clock = clock

    @classmethod
    def generate(cls, common_name: str, valid_for: datetime.timedelta = datetime.timedelta(
                 days=3650), clock: Clock = _now) -> CertificateAuthority:
        """A new self-signed root CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = clock()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + valid_for)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key, clock)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes, clock: Clock = _now
                 ) -> CertificateAuthority:
        """A CA from its certificate and (unencrypted) key; ValueError if they don't match."""
        certificate = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("expected an ECDSA private key")
        if key.public_key().public_numbers() != certificate.public_key().public_numbers():
            raise ValueError("the key does not belong to the certificate")
        return cls(certificate, key, clock)

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self._key)

    def issue(self, common_name: str, *, dns_names: Iterable[str] = (),
              ip_addresses: Iterable[str] = (),
              valid_for: datetime.timedelta = datetime.timedelta(days=365),
              server: bool = True, client: bool = False) -> IssuedCertificate:
        """A certificate for ``common_name`` with these SANs, signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if not names:
            raise ValueError("a certificate needs at least one DNS name or IP address")
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        now = self._clock()
        ca_key_id = self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + valid_for)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_encipherment=False, key_cert_sign=False,
                crl_sign=False, content_commitment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_key_id), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCertificate(certificate.public_bytes(serialization.Encoding.PEM),
                                 _key_pem(key))
