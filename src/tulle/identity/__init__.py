"""Identity: certificate authorities and the certificates they issue.

Today it serves the admission webhook's TLS (``tulle install`` makes a CA and a
serving certificate for the control plane). It is the seed of mesh identity (mTLS):
a CA that issues short-lived certificates whose SANs name a workload.
"""

from tulle.identity.certificates import CertificateAuthority, IssuedCertificate

__all__ = ["CertificateAuthority", "IssuedCertificate"]
