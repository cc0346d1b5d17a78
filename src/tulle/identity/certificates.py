"""A certificate authority that issues X.509 certificates with SANs, in and out as PEM.

Keys are ECDSA P-256: small, fast to make (the control plane issues one per proxy a
day), and accepted by every TLS stack Tulle meets (Go's, for the API server calling
the webhook; OpenSSL's, for Python). Certificates carry what verifiers check: subject
alternative names (DNS names, IP addresses, URIs; the common name alone is ignored by
modern clients), key usage, extended key usage, and the issuer's key identifier. The
clock is injected so tests can issue certificates that are not yet valid or already
expired.

Mesh identity uses a two-level chain, as Linkerd does: a long-lived *trust anchor*
(a root whose key can stay offline) signs an *issuer* (`issue_issuer`), the CA the
control plane holds; the issuer signs each proxy's 24-hour leaf from the proxy's
certificate signing request (`certify`), naming the workload the control plane
authenticated, whatever the request asked for. A leaf is sent with the issuer's
chain (`chain_pem`) and verified against the anchors alone.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tulle.identity.spiffe import WorkloadIdentity

Clock = Callable[[], datetime.datetime]
# What a CA signs with: ECDSA, as Tulle makes them, or RSA, as helm's genCA makes them
# (the chart's fallback trust anchor).
CAKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
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


def _key_pem(key: CAKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class CertificateAuthority:
    """Signs certificates with its key; made fresh (``generate``) or loaded (``from_pem``)."""

    def __init__(self, certificate: x509.Certificate, key: CAKey,
                 clock: Clock = _now, chain: tuple[x509.Certificate, ...] = ()) -> None:
        self.certificate = certificate
        self._key = key
        self._clock = clock
        # This CA and the intermediates above it, up to (not including) its root: sent
        # with every leaf it signs. Empty for a root.
        self.chain = chain

    @classmethod
    def generate(cls, common_name: str, valid_for: datetime.timedelta = datetime.timedelta(
                 days=3650), clock: Clock = _now) -> CertificateAuthority:
        """A new self-signed root CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = clock()
        certificate = _ca_builder(name, key, now, valid_for, None).issuer_name(name).sign(
            key, hashes.SHA256())
        return cls(certificate, key, clock)

    def issue_issuer(self, common_name: str, valid_for: datetime.timedelta = datetime.timedelta(
                     days=365)) -> CertificateAuthority:
        """A new intermediate CA signed by this one, which may sign leaves only (path
        length 0): the control plane's issuer under a trust anchor."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        certificate = (
            _ca_builder(name, key, self._clock(), valid_for, 0)
            .issuer_name(self.certificate.subject)
            .add_extension(self._authority_key_id(), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return CertificateAuthority(certificate, key, self._clock, (certificate, *self.chain))

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes, clock: Clock = _now
                 ) -> CertificateAuthority:
        """A CA from its certificate (followed by its chain, if it is an intermediate) and
        its (unencrypted) key; ValueError if they don't match."""
        certificates = x509.load_pem_x509_certificates(cert_pem)
        certificate = certificates[0]
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError("expected an ECDSA or RSA private key")
        if key.public_key().public_numbers() != certificate.public_key().public_numbers():
            raise ValueError("the key does not belong to the certificate")
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        if not constraints.value.ca:
            raise ValueError("the certificate is not a CA (basicConstraints ca is false)")
        # What a verifier needs between a leaf and the anchors: this CA unless it is a
        # root, then any intermediates given after it.
        chain = () if _self_signed(certificate) else tuple(
            c for c in certificates if not _self_signed(c))
        return cls(certificate, key, clock, chain)

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def chain_pem(self) -> bytes:
        """The intermediates a leaf of this CA is sent with (empty for a root)."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

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
            .add_extension(self._authority_key_id(), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCertificate(certificate.public_bytes(serialization.Encoding.PEM),
                                 _key_pem(key))

    def certify(self, csr_pem: bytes, identity: WorkloadIdentity,
                valid_for: datetime.timedelta) -> bytes:
        """A leaf certificate (PEM) for ``identity`` on the key of a certificate signing
        request. The request's signature must verify (its sender holds the key); the
        names it asks for are ignored: the leaf names ``identity`` (URI SAN, the SPIFFE
        ID; DNS SAN, its TLS server name), for both TLS server and client use.
        ValueError for a request that is not a valid ECDSA P-256 or RSA CSR."""
        try:
            request = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise ValueError(f"not a PEM certificate signing request: {exc}") from None
        if not request.is_signature_valid:
            raise ValueError("the request's signature does not verify")
        public_key = request.public_key()
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            if not isinstance(public_key.curve, ec.SECP256R1):
                raise ValueError(f"expected a P-256 key, got {public_key.curve.name}")
        elif not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < 2048:
            raise ValueError("expected an ECDSA P-256 or an RSA (2048 bits or more) key")
        now = self._clock()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                        identity.dns_name[:64])]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + valid_for)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_encipherment=False, key_cert_sign=False,
                crl_sign=False, content_commitment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            # A SAN-only subject would make the extension critical (RFC 5280 §4.2.1.6);
            # the common name above keeps it non-critical, as every verifier expects.
            .add_extension(x509.SubjectAlternativeName([
                x509.UniformResourceIdentifier(identity.uri), x509.DNSName(identity.dns_name),
            ]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False)
            .add_extension(self._authority_key_id(), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        key_id = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id.value)


def _self_signed(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


def _ca_builder(name: x509.Name, key: CAKey, now: datetime.datetime,
                valid_for: datetime.timedelta, path_length: int | None
                ) -> x509.CertificateBuilder:
    """What every CA certificate Tulle makes has (the issuer name and signature aside)."""
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
