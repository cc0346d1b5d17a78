"""Identity: who each proxy is, and the certificates that prove it.

A workload's identity is its ServiceAccount as a SPIFFE ID (`spiffe`); a trust anchor
signs an issuer, the issuer signs each proxy's 24-hour leaf from its signing request
(`certificates`, `issuer`); a proxy proves who it is with a ServiceAccount token or a
join token (`join_tokens`), keeps its key and certificate (`credentials`) and renews
them (`client`). The same CA code makes the admission webhook's serving certificate.

The names below are imported on first use: the configuration reads `spiffe` on every
load, and should not pay for ``cryptography`` unless certificates are made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tulle.identity.spiffe import WorkloadIdentity

if TYPE_CHECKING:
    from tulle.identity.certificates import CertificateAuthority, IssuedCertificate

__all__ = ["CertificateAuthority", "IssuedCertificate", "WorkloadIdentity"]


def __getattr__(name: str) -> Any:
    if name in ("CertificateAuthority", "IssuedCertificate"):
        from tulle.identity import certificates

        return getattr(certificates, name)
    raise AttributeError(name)
