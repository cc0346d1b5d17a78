"""A proxy's credentials: its private key, the leaf certificate issued for it, the
issuer's chain, and the trust anchors it verifies peers against.

The key is made by the proxy and never leaves it: the control plane sees only a
certificate signing request (`signing_request`). What comes back is checked before it
is used (`Credentials.issued`): the leaf must be for this key, chain to the anchors
given with it, be valid now, and name exactly one workload identity.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from tulle.identity.spiffe import IdentityError, WorkloadIdentity


class CredentialsError(ValueError):
    """What the control plane sent cannot be used as this proxy's identity."""


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def signing_request(key: ec.EllipticCurvePrivateKey, name: str = "tulle-proxy") -> bytes:
    """A PEM certificate signing request for ``key`` (its names are the issuer's to set)."""
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM)


def identity_of(certificate: x509.Certificate) -> WorkloadIdentity:
    """The workload a leaf names in its URI SAN (CredentialsError if none, or several)."""
    try:
        names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        names = []
    if len(names) != 1:
        raise CredentialsError(f"expected one SPIFFE ID in the certificate, got {names}")
    try:
        return WorkloadIdentity.parse(names[0])
    except IdentityError as exc:
        raise CredentialsError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Credentials:
    """Everything TLS needs to speak as one workload."""

    identity: WorkloadIdentity
    key_pem: bytes
    cert_pem: bytes  # the leaf
    chain_pem: bytes  # intermediates sent after the leaf (none when a root issued it)
    anchors_pem: bytes  # the trust anchors peers are verified against
    not_before: datetime.datetime
    not_after: datetime.datetime
    received_at: datetime.datetime  # when the proxy got it (not_before is backdated)

    @property
    def lifetime(self) -> datetime.timedelta:
        """How long it is good for from when it was received."""
        return self.not_after - self.received_at

    def renew_at(self, fraction: float = 0.7) -> datetime.datetime:
        """When to ask for the next certificate: ``fraction`` of the way through its life
        from when it was received (Linkerd renews at 70%)."""
        return self.received_at + self.lifetime * fraction

    @classmethod
    def issued(cls, key: ec.EllipticCurvePrivateKey, cert_pem: bytes, chain_pem: bytes,
               anchors_pem: bytes, now: datetime.datetime) -> Credentials:
        """Credentials from what the issuer sent for ``key``, once checked (see the module
        note); CredentialsError says what is wrong."""
        try:
            leaf = x509.load_pem_x509_certificate(cert_pem)
            chain = x509.load_pem_x509_certificates(chain_pem) if chain_pem.strip() else []
            anchors = x509.load_pem_x509_certificates(anchors_pem)
        except ValueError as exc:
            raise CredentialsError(f"malformed certificate: {exc}") from None
        if leaf.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo):
            raise CredentialsError("the certificate is not for this proxy's key")
        identity = identity_of(leaf)
        verify_chain(leaf, chain, anchors, now, identity)
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cls(identity, key_pem, cert_pem, chain_pem, anchors_pem,
                   leaf.not_valid_before_utc, leaf.not_valid_after_utc, now)


def verify_chain(leaf: x509.Certificate, chain: list[x509.Certificate],
                 anchors: list[x509.Certificate], now: datetime.datetime,
                 identity: WorkloadIdentity) -> None:
    """That ``leaf`` chains to ``anchors`` through ``chain`` and is valid at ``now``
    (cryptography's RFC 5280 path validation, the same checks OpenSSL makes in the
    handshake), for the server name of ``identity``."""
    builder = PolicyBuilder().store(Store(anchors)).time(now)
    verifier = builder.build_server_verifier(x509.DNSName(identity.dns_name))
    try:
        verifier.verify(leaf, chain)
    except VerificationError as exc:
        raise CredentialsError(f"the certificate does not chain to the trust anchors: {exc}"
                               ) from None
