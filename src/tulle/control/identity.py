"""The identity service: proxies trade a signing request and a token for a certificate.

``POST /v1/certify`` with ``{"csr": "<PEM>", "token": "<token>"}``. The token says who
the proxy is — on a cluster its pod's ServiceAccount token, checked with a TokenReview
(`tulle.control.token_review`); off a cluster a join token from a file
(`tulle.identity.join_tokens`) — and the answer is a leaf certificate for that
identity, made by the issuer (`tulle.identity.issuer`) on the key of the request:
``{"identity", "certificate", "chain", "trustAnchors", "notAfter"}``. A token that
proves nothing is a 401 (the reason goes to the log, not to the client); a request
that is not JSON, not a CSR, or over ``MAX_BODY`` is a 400 or 413, and the connection
is closed. ``GET /live`` answers 200 with how many certificates were issued.

It is served over TLS with a certificate the issuer makes for the control plane's own
identity (``tulle-control`` in its namespace), which proxies verify against the trust
anchors they were given at injection; so a proxy sends its token only to the control
plane. That certificate is made again when the issuer changes or it is 70% through
its life.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tulle.control.json_exchange import READ_TIMEOUT, JsonEndpoint, JsonRequest, serve_one
from tulle.identity.certificates import CertificateAuthority
from tulle.identity.credentials import Credentials, new_key, signing_request
from tulle.identity.issuer import IssuerStore
from tulle.identity.join_tokens import Unauthenticated
from tulle.identity.spiffe import WorkloadIdentity
from tulle.transport.tls import server_context

log = logging.getLogger("tulle.identity")

# A CSR and a ServiceAccount token are a few KB together.
MAX_BODY = 64 * 1024
CONTROL_SERVICE_ACCOUNT = "tulle-control"


class Authenticator(Protocol):
    """Who a token says a proxy is (`Unauthenticated` if nobody)."""

    def authenticate(self, token: str) -> Awaitable[WorkloadIdentity]: ...


class _OwnCertificate:
    """The service's TLS certificate, issued to itself, remade when it must be."""

    def __init__(self, issuer: IssuerStore, identity: WorkloadIdentity,
                 clock: Callable[[], datetime.datetime]) -> None:
        self.issuer = issuer
        self.identity = identity
        self._clock = clock
        self._made_by: CertificateAuthority | None = None
        self._renew_at = clock()
        self.context = self._make()
        self.context.sni_callback = self._on_hello

    def _make(self) -> ssl.SSLContext:
        ca, anchors = self.issuer.current()
        key = new_key()
        issued = self.issuer.certify(signing_request(key), self.identity)
        credentials = Credentials.issued(key, issued.cert_pem, issued.chain_pem, anchors,
                                         self._clock())
        self._made_by = ca
        self._renew_at = credentials.renew_at()
        context = server_context(credentials)
        context.verify_mode = ssl.CERT_NONE  # proxies authenticate with their tokens
        context.set_alpn_protocols(["http/1.1"])
        return context

    def _on_hello(self, connection: Any, server_name: str | None,
                  context: ssl.SSLContext) -> None:
        ca, _ = self.issuer.current()
        if ca is not self._made_by or self._clock() >= self._renew_at:
            fresh = self._make()
            fresh.sni_callback = self._on_hello
            self.context = fresh
        if self.context is not context:
            connection.context = self.context


class IdentityService:
    """Serves ``/v1/certify`` over TLS (see the module note)."""

    def __init__(self, issuer: IssuerStore, authenticator: Authenticator,
                 identity: WorkloadIdentity,
                 clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(
                     datetime.UTC)) -> None:
        self.issuer = issuer
        self.authenticator = authenticator
        self.identity = identity
        self._clock = clock
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._endpoint = JsonEndpoint(b"/v1/certify", "a certificate signing request",
                                      MAX_BODY, self._live, self._certify)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        own = _OwnCertificate(self.issuer, self.identity, self._clock)
        self._server = await asyncio.start_server(self._serve, host, port, ssl=own.context,
                                                  ssl_handshake_timeout=READ_TIMEOUT)
        bound = self._server.sockets[0].getsockname()
        log.info("identity service on https://%s:%d as %s (server name %s)", bound[0],
                 bound[1], self.identity.uri, self.identity.dns_name)
        return bound[0], bound[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_one(reader, writer, self._endpoint)

    def _live(self) -> dict[str, Any]:
        return {"issued": self.issuer.issued, "refused": self.refused}

    async def _certify(self, request: JsonRequest, peer: Any) -> tuple[int, dict[str, Any]]:
        try:
            document = json.loads(request.body)
            csr, token = document["csr"], document["token"]
            if not isinstance(csr, str) or not isinstance(token, str):
                raise TypeError("csr and token must be strings")
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {"error": f"expected {{\"csr\": PEM, \"token\": string}}: {exc}"}
        try:
            identity = await self.authenticator.authenticate(token)
        except Unauthenticated as exc:
            self.refused += 1
            log.warning("refused a certificate to %s: %s", _peer(peer), exc)
            return 401, {"error": "the token does not prove an identity"}
        try:
            issued = self.issuer.certify(csr.encode(), identity)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        log.info("issued %s to %s until %s", identity.uri, _peer(peer), issued.not_after)
        return 200, issued.to_dict()


def _peer(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if peer else "?"
