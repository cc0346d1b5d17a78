"""Join tokens: how a proxy off Kubernetes proves which workload it is.

On a cluster a proxy presents its pod's ServiceAccount token and the API server says
whose it is (`tulle.control.token_review`). Off a cluster there is no such authority,
so the operator makes one: a file of tokens, each bound to one identity, read by the
control plane (``tulle control --join-tokens FILE``); each proxy is given its own token
in a file (``tulle proxy --identity-token-file``). The proxy cannot choose its
identity: the control plane issues for the identity the token is bound to.

The file has one token a line, ``<token> <namespace>/<service-account>``; blank lines
and lines starting with ``#`` are ignored. It is read again for every request, so
adding or revoking a token takes effect at once. Tokens are compared in constant time.
``tulle identity join-token`` makes a token and prints its line.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from tulle.identity.spiffe import IdentityError, WorkloadIdentity

# A token is at least this long: 32 random bytes, URL-safe base64, is 43 characters.
MIN_TOKEN_LENGTH = 32


class Unauthenticated(Exception):
    """The token proves no identity; the message says why, for the log (not the client)."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def parse_line(line: str, trust_domain: str) -> tuple[str, WorkloadIdentity] | None:
    """A (token, identity) pair from one line of the file, None for blank or comment
    lines; ValueError names what is wrong."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    parts = text.split()
    if len(parts) != 2 or parts[1].count("/") != 1:
        raise ValueError("expected '<token> <namespace>/<service-account>'")
    token, workload = parts
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"a token must be at least {MIN_TOKEN_LENGTH} characters")
    namespace, service_account = workload.split("/")
    try:
        return token, WorkloadIdentity(trust_domain, namespace, service_account)
    except IdentityError as exc:
        raise ValueError(str(exc)) from None


class JoinTokens:
    """The identities the tokens in ``path`` are bound to."""

    def __init__(self, path: Path, trust_domain: str) -> None:
        self.path = path
        self.trust_domain = trust_domain

    async def authenticate(self, token: str) -> WorkloadIdentity:
        try:
            lines = self.path.read_text().splitlines()
        except OSError as exc:
            raise Unauthenticated(f"cannot read the join tokens: {exc}") from None
        found = None
        for number, line in enumerate(lines, 1):
            try:
                entry = parse_line(line, self.trust_domain)
            except ValueError as exc:
                raise Unauthenticated(f"{self.path}:{number}: {exc}") from None
            # Every line is compared, so the time taken says nothing about which matched.
            if entry is not None and hmac.compare_digest(entry[0].encode(), token.encode()):
                found = entry[1]
        if found is None:
            raise Unauthenticated("not a known join token")
        return found
