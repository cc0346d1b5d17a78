"""Resolving endpoints from DNS over UDP: A/AAAA addresses or SRV targets, with a TTL.

:func:`resolve` sends one query (codec: ``tulle.discovery.dns_wire``) to one server
over asyncio UDP, waits up to ``timeout`` seconds for the response whose id and
source address match, and returns the endpoints and the TTL to re-resolve on
(the smallest TTL among the answers, clamped to ``[min_ttl, max_ttl]``).

SRV answers give ``target:port`` per record (the target is not resolved further
here; SRV priority and weight are kept for the caller). A truncated (TC) response
is reported as an error rather than retried over TCP.

`tulle.discovery.dns_source.DnsSource` uses it: it expands the services whose
endpoints come from DNS (``spec.dns``) and re-resolves each on its TTL.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from tulle.discovery.dns_wire import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_SRV,
    DnsFormatError,
    Response,
    SrvData,
    encode_query,
    parse_response,
)

DEFAULT_TIMEOUT = 2.0
MIN_TTL = 1.0
MAX_TTL = 300.0


class DnsError(Exception):
    """The lookup failed: no answer in time, an error rcode, or a malformed reply."""


@dataclass(frozen=True)
class Resolved:
    """What one lookup found: ``host:port`` endpoints (with SRV weights) and the TTL."""

    endpoints: list[tuple[str, int]]  # (address "host:port", weight)
    ttl: float


class _Query(asyncio.DatagramProtocol):
    def __init__(self, ident: int, server: tuple[str, int]) -> None:
        self.ident = ident
        self.server = server
        self.answer: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.answer.done() or (addr[0], addr[1]) != self.server:
            return
        try:
            response = parse_response(data)
        except DnsFormatError as exc:
            self.answer.set_exception(DnsError(f"malformed reply from {addr[0]}:{addr[1]}: "
                                               f"{exc}"))
            return
        if response.ident == self.ident:
            self.answer.set_result(response)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(DnsError(f"DNS server {self.server}: {exc}"))


# Query IDs unguessable to an off-path spoofer (os.urandom, as `secrets` would use, without
# the hashlib that importing `secrets` loads into every proxy).
_IDS = random.SystemRandom()


async def query(server: tuple[str, int], name: str, rtype: int,
                timeout: float = DEFAULT_TIMEOUT) -> Response:
    """One UDP query and its parsed response (raises DnsError)."""
    loop = asyncio.get_running_loop()
    ident = _IDS.randrange(0x10000)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Query(ident, server), remote_addr=server)
    try:
        transport.sendto(encode_query(ident, name, rtype))
        try:
            return await asyncio.wait_for(asyncio.shield(protocol.answer), timeout)
        except TimeoutError:
            raise DnsError(f"no answer for {name} from {server[0]}:{server[1]} within "
                           f"{timeout:g} s") from None
    finally:
        transport.close()


async def resolve(server: tuple[str, int], name: str, rtype: int, port: int = 0,
                  timeout: float = DEFAULT_TIMEOUT, min_ttl: float = MIN_TTL,
                  max_ttl: float = MAX_TTL) -> Resolved:
    """Endpoints for ``name``: A/AAAA records at ``port``, or SRV targets at theirs."""
    if rtype not in (TYPE_A, TYPE_AAAA, TYPE_SRV):
        raise ValueError(f"cannot resolve endpoints from record type {rtype}")
    response = await query(server, name, rtype, timeout)
    if response.truncated:
        raise DnsError(f"the answer for {name} was truncated (TCP fallback not supported)")
    if response.rcode:
        raise DnsError(f"{name}: {response.rcode_name}")
    endpoints: list[tuple[str, int]] = []
    ttls: list[int] = []
    for record in response.answers:
        if record.rtype != rtype or record.data is None:
            continue
        ttls.append(record.ttl)
        if isinstance(record.data, SrvData):
            endpoints.append((f"{record.data.target}:{record.data.port}", record.data.weight))
        else:
            host = f"[{record.data}]" if ":" in record.data else record.data
            endpoints.append((f"{host}:{port}", 1))
    ttl = min(ttls) if ttls else max_ttl
    return Resolved(endpoints=sorted(endpoints), ttl=min(max(float(ttl), min_ttl), max_ttl))
