"""The control plane's issuer: the CA that signs proxies' leaves, and the trust anchors
it hands out with them, read from a directory and followed as it changes.

The directory has the layout of a ``kubernetes.io/tls`` Secret with a CA, as the chart
mounts ``tulle-identity-issuer``: ``tls.crt`` (the issuer, followed by any
intermediates between it and an anchor), ``tls.key`` (its key) and ``ca.crt`` (the
trust anchors: one, or several while an anchor is being rotated). The files are
looked at again at most every ``check_every`` seconds, when something is issued; a new
set that does not load, or whose issuer does not chain to its anchors, is logged and
the previous one kept, so a half-written Secret never stops issuance.

Rotating the issuer is replacing the files; rotating the anchor is adding the new
anchor to ``ca.crt``, then replacing the issuer with one the new anchor signed, then,
once every proxy has renewed, removing the old anchor (docs/security.md). Proxies get
``ca.crt`` with every certificate, so they follow each step on their next renewal.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tulle.identity.certificates import CertificateAuthority, Clock, _now
from tulle.identity.spiffe import WorkloadIdentity

log = logging.getLogger("tulle.identity")

# Linkerd's default: a day, renewed at 70% (about 17 hours in).
LEAF_LIFETIME = datetime.timedelta(hours=24)
FILES = ("tls.crt", "tls.key", "ca.crt")


class IssuerError(Exception):
    """The issuer's files are missing, unreadable or inconsistent."""


@dataclass(frozen=True, slots=True)
class Issued:
    """A leaf for a proxy, and what it needs to use it."""

    identity: WorkloadIdentity
    cert_pem: bytes
    chain_pem: bytes
    anchors_pem: bytes
    not_after: datetime.datetime

    def to_dict(self) -> dict[str, str]:
        return {"identity": self.identity.uri, "certificate": self.cert_pem.decode(),
                "chain": self.chain_pem.decode(), "trustAnchors": self.anchors_pem.decode(),
                "notAfter": self.not_after.isoformat()}


def load_issuer(directory: Path, clock: Clock = _now) -> tuple[CertificateAuthority, bytes]:
    """The CA and the anchors PEM from ``directory``; IssuerError says what is wrong."""
    try:
        cert_pem, key_pem, anchors_pem = (
            (directory / name).read_bytes() for name in FILES)
    except OSError as exc:
        raise IssuerError(f"cannot read the issuer in {directory}: {exc}") from None
    try:
        ca = CertificateAuthority.from_pem(cert_pem, key_pem, clock)
        anchors = x509.load_pem_x509_certificates(anchors_pem)
    except ValueError as exc:
        raise IssuerError(f"the issuer in {directory} does not load: {exc}") from None
    check_issuer(ca, anchors, clock())
    return ca, anchors_pem


def check_issuer(ca: CertificateAuthority, anchors: list[x509.Certificate],
                 now: datetime.datetime) -> None:
    """That ``ca`` is one of ``anchors`` or chains to one through its intermediates, each
    certificate signed by the next and valid at ``now``."""
    current = ca.certificate
    above = [c for c in ca.chain if c != current]
    while True:
        if not current.not_valid_before_utc <= now <= current.not_valid_after_utc:
            raise IssuerError(
                f"{current.subject.rfc4514_string()} is not valid now (valid "
                f"{current.not_valid_before_utc} to {current.not_valid_after_utc})")
        if current in anchors:
            return
        signer = next((c for c in [*anchors, *above] if _issued_by(current, c)), None)
        if signer is None:
            raise IssuerError(f"{current.subject.rfc4514_string()} does not chain to the "
                              f"trust anchors in ca.crt")
        if signer in anchors:
            return
        above.remove(signer)
        current = signer


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class IssuerStore:
    """The current issuer, re-read from its directory when the files change."""

    def __init__(self, directory: Path, *, leaf_lifetime: datetime.timedelta = LEAF_LIFETIME,
                 check_every: float = 1.0, clock: Clock = _now,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.leaf_lifetime = leaf_lifetime
        self.check_every = check_every
        self._clock = clock
        self._monotonic = monotonic
        self._stamp = self._stamps()
        self.ca, self.anchors_pem = load_issuer(directory, clock)
        self._next_check = monotonic() + check_every
        self.reloads = 0
        self.issued = 0

    def _stamps(self) -> tuple[float, ...]:
        try:
            return tuple((self.directory / name).stat().st_mtime_ns for name in FILES)
        except OSError:
            return ()

    def current(self) -> tuple[CertificateAuthority, bytes]:
        """The issuer and anchors, after looking for new files if it is time to."""
        now = self._monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_every
            stamp = self._stamps()
            if stamp and stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.ca, self.anchors_pem = load_issuer(self.directory, self._clock)
                    self.reloads += 1
                    log.info("identity issuer reloaded from %s: %s", self.directory,
                             self.ca.certificate.subject.rfc4514_string())
                except IssuerError as exc:
                    log.warning("%s; keeping the previous issuer", exc)
        return self.ca, self.anchors_pem

    def certify(self, csr_pem: bytes, identity: WorkloadIdentity) -> Issued:
        """A leaf for ``identity`` on the key of ``csr_pem`` (ValueError for a bad request)."""
        ca, anchors = self.current()
        cert_pem = ca.certify(csr_pem, identity, self.leaf_lifetime)
        self.issued += 1
        not_after = x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
        return Issued(identity, cert_pem, ca.chain_pem, anchors, not_after)


def write_issuer(directory: Path, ca: CertificateAuthority, anchors_pem: bytes) -> None:
    """Write an issuer in the layout `load_issuer` reads (the key readable by its owner
    only); each file is replaced whole, so a reader never sees half of one."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data, mode in (("tls.key", ca.key_pem, 0o600),
                             ("tls.crt", ca.chain_pem or ca.cert_pem, 0o644),
                             ("ca.crt", anchors_pem, 0o644)):
        staged = directory / f".{name}.new"
        staged.write_bytes(data)
        staged.chmod(mode)
        staged.replace(directory / name)
