"""The UDP resolver against a tiny DNS server on 127.0.0.1 (asyncio UDP): A and SRV
answers, TTL clamping, a changed answer seen on the next lookup, errors and timeouts."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Callable

import pytest

from tulle.discovery.dns import DnsError, resolve
from tulle.discovery.dns_wire import TYPE_A, TYPE_SRV, encode_name

Answer = Callable[[bytes], bytes | None]  # query -> response bytes (None: stay silent)


class FakeServer(asyncio.DatagramProtocol):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


def reply(query: bytes, records: list[tuple[int, int, bytes]], rcode: int = 0) -> bytes:
    """A response echoing the question, with (type, ttl, rdata) answers for its name."""
    ident = query[:2]
    head = ident + struct.pack("!HHHHH", 0x8180 | rcode, 1, len(records), 0, 0)
    body = query[12:]
    for rtype, ttl, rdata in records:
        body += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata
    return head + body


def a(address: str, ttl: int = 1) -> tuple[int, int, bytes]:
    return (TYPE_A, ttl, ipaddress.IPv4Address(address).packed)


async def serve(answer: Answer) -> tuple[asyncio.DatagramTransport, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: FakeServer(answer), local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[:2]


def test_a_records_then_a_changed_answer() -> None:
    answers = [[a("10.0.0.2"), a("10.0.0.1")]]

    async def run() -> tuple[list[tuple[str, int]], float, list[tuple[str, int]]]:
        transport, server = await serve(lambda q: reply(q, answers[0]))
        try:
            first = await resolve(server, "api.example", TYPE_A, port=8080)
            answers[0] = [a("10.0.0.3", ttl=0)]
            second = await resolve(server, "api.example", TYPE_A, port=8080)
            return first.endpoints, second.ttl, second.endpoints
        finally:
            transport.close()

    first, ttl, second = asyncio.run(run())
    assert first == [("10.0.0.1:8080", 1), ("10.0.0.2:8080", 1)]
    assert second == [("10.0.0.3:8080", 1)]
    assert ttl == 1.0  # a TTL of 0 is clamped to the minimum


def test_srv_records_give_target_and_port() -> None:
    rdata = struct.pack("!HHH", 1, 7, 9090) + encode_name("node1.example")

    async def run() -> list[tuple[str, int]]:
        transport, server = await serve(lambda q: reply(q, [(TYPE_SRV, 600, rdata)]))
        try:
            resolved = await resolve(server, "_http._tcp.api.example", TYPE_SRV, max_ttl=30)
            assert resolved.ttl == 30
            return resolved.endpoints
        finally:
            transport.close()

    assert asyncio.run(run()) == [("node1.example:9090", 7)]


def test_nxdomain_and_silence_are_errors() -> None:
    async def run(answer: Answer) -> None:
        transport, server = await serve(answer)
        try:
            await resolve(server, "gone.example", TYPE_A, port=80, timeout=0.3)
        finally:
            transport.close()

    with pytest.raises(DnsError, match="NXDOMAIN"):
        asyncio.run(run(lambda q: reply(q, [], rcode=3)))
    with pytest.raises(DnsError, match="no answer"):
        asyncio.run(run(lambda q: None))
    with pytest.raises(DnsError, match="malformed"):
        asyncio.run(run(lambda q: q[:2] + b"\x81\x80\x00"))
