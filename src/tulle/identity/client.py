"""The proxy's side of identity: get a certificate from the control plane, and keep it
fresh.

At start the proxy makes a key, sends a signing request with its token
(`tulle.control.identity`), and does not serve until it has a certificate: a meshed
proxy without one could neither call nor be called over mTLS. It asks again at 70% of
the certificate's life (`Credentials.renew_at`, less a little jitter so a fleet
started together does not renew together), with a new key each time; a failed renewal
is retried with backoff while the current certificate is still good. Each new set of
credentials goes to ``on_renewed`` (the proxy's `tulle.transport.tls.MeshTls`), which
uses it for new connections only: a renewal drops no connection and no request.

The token is read from its file at each request: the kubelet rotates a projected
ServiceAccount token in place. The control plane is verified against the trust
anchors the proxy was started with, by its server name; after the first certificate,
the anchors that come with each certificate are used (so an anchor rotation reaches
proxies at their next renewal).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tulle.discovery.backoff import Backoff
from tulle.discovery.http_stream import HttpStreamError, request
from tulle.identity.credentials import Credentials, CredentialsError, new_key, signing_request

log = logging.getLogger("tulle.identity")

# Renewal starts at 70% of the life, minus up to this fraction of it (spread, so that
# proxies started together do not all ask at once).
RENEW_AT = 0.7
RENEW_JITTER = 0.05
WallClock = Callable[[], datetime.datetime]


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    """Where a proxy gets its certificate, and how it proves who it is."""

    host: str
    port: int
    server_name: str  # the identity service's TLS name, checked against the anchors
    token_file: Path
    anchors_pem: bytes  # the trust anchors this proxy starts with

    def client(self) -> IdentityClient:
        return IdentityClient(self.host, self.port, self.server_name, self.token_file,
                              self.anchors_pem)


class IdentityUnavailable(Exception):
    """No certificate could be had (the reason is in the message)."""


def _wall_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class IdentityClient:
    """Certificates for this proxy from the identity service at ``host:port``."""

    def __init__(self, host: str, port: int, server_name: str, token_file: Path,
                 anchors_pem: bytes, *, clock: WallClock = _wall_clock,
                 backoff: Backoff | None = None, jitter: random.Random | None = None) -> None:
        self.host = host
        self.port = port
        self.server_name = server_name
        self.token_file = token_file
        self.anchors_pem = anchors_pem
        self._clock = clock
        self._backoff = backoff or Backoff(base=1.0, cap=60.0)
        self._jitter = jitter or random.Random()
        self.credentials: Credentials | None = None
        self.renewals = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def fetch(self) -> Credentials:
        """One certificate, for a new key (IdentityUnavailable says why not)."""
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise IdentityUnavailable(f"cannot read the token {self.token_file}: {exc}") from None
        key = new_key()
        body = json.dumps({"csr": signing_request(key).decode(), "token": token}).encode()
        context = ssl.create_default_context(cadata=self.anchors_pem.decode("ascii"))
        try:
            response = await request(self.host, self.port, "POST", "/v1/certify",
                                     headers=[("Content-Type", "application/json")], body=body,
                                     ssl=context, server_hostname=self.server_name,
                                     read_timeout=10.0)
            async with response:
                answer = await response.json()
        except HttpStreamError as exc:
            raise IdentityUnavailable(str(exc)) from None
        if response.status != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise IdentityUnavailable(f"the identity service answered {response.status}: "
                                      f"{error}")
        try:
            credentials = Credentials.issued(
                key, str(answer["certificate"]).encode(), str(answer.get("chain", "")).encode(),
                str(answer["trustAnchors"]).encode(), self._clock())
        except (KeyError, CredentialsError) as exc:
            raise IdentityUnavailable(f"unusable certificate: {exc}") from None
        self.anchors_pem = credentials.anchors_pem
        return credentials

    async def initial(self, attempts: int | None = None) -> Credentials:
        """The first certificate, asking until one comes (or ``attempts`` run out)."""
        tried = 0
        while True:
            try:
                self.credentials = await self.fetch()
            except IdentityUnavailable as exc:
                tried += 1
                self.failures += 1
                if attempts is not None and tried >= attempts:
                    raise
                delay = self._backoff.next()
                log.warning("no identity yet (%s); asking again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            log.info("identity %s, valid until %s", self.credentials.identity.uri,
                     self.credentials.not_after)
            return self.credentials

    def start(self, on_renewed: Callable[[Credentials], None]) -> None:
        """Renew in the background, handing each new certificate to ``on_renewed``."""
        self._task = asyncio.get_running_loop().create_task(self._renew_forever(on_renewed))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def next_renewal(self) -> float:
        """Seconds until the current certificate is to be renewed."""
        credentials = self.credentials
        assert credentials is not None
        spread = credentials.lifetime * (RENEW_JITTER * self._jitter.random())
        due = credentials.renew_at(RENEW_AT) - spread
        return max(0.0, (due - self._clock()).total_seconds())

    async def _renew_forever(self, on_renewed: Callable[[Credentials], None]) -> None:
        while True:
            await asyncio.sleep(self.next_renewal())
            while True:
                try:
                    credentials = await self.fetch()
                    break
                except IdentityUnavailable as exc:
                    self.failures += 1
                    current = self.credentials
                    delay = self._backoff.next()
                    left = (current.not_after - self._clock()).total_seconds() if current else 0
                    log.warning("renewing the identity failed (%s); the current certificate "
                                "has %.0fs left; asking again in %.1fs", exc, left, delay)
                    await asyncio.sleep(delay)
            self._backoff.reset()
            self.credentials = credentials
            self.renewals += 1
            log.info("identity renewed: %s, valid until %s", credentials.identity.uri,
                     credentials.not_after)
            on_renewed(credentials)
