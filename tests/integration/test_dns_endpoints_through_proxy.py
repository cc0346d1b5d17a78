"""A real ``tulle proxy`` whose service takes its endpoints from DNS: a tiny UDP DNS
server on 127.0.0.1 answers with TTL 1 s; when its answer moves, traffic follows."""

from __future__ import annotations

import ipaddress
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.client import get
from tests.support.proxy import RunningProxy
from tulle.discovery.dns_wire import TYPE_A, TYPE_SRV, encode_name, read_name

Records = dict[tuple[str, int], list[bytes]]  # (name, type) -> rdata of each answer


class DnsServer(socketserver.ThreadingUDPServer):
    """Answers from ``records`` (TTL 1 s); an unknown name is NXDOMAIN, or SERVFAIL
    for every question while ``failing`` is set."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.records: Records = {}
        self.failing = False
        self.questions: list[tuple[str, int]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def answer(self, query: bytes) -> bytes:
        name, offset = read_name(query, 12)
        rtype, _ = struct.unpack_from("!HH", query, offset)
        self.questions.append((name, rtype))
        question = query[12:offset + 4]
        answers = [] if self.failing else self.records.get((name.lower(), rtype), [])
        rcode = 2 if self.failing else (0 if any(k[0] == name.lower() for k in self.records)
                                        else 3)
        head = query[:2] + struct.pack("!HHHHH", 0x8180 | rcode, 1, len(answers), 0, 0)
        body = question
        for rdata in answers:
            body += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 1, len(rdata)) + rdata
        return head + body


class _Handler(socketserver.BaseRequestHandler):
    server: DnsServer

    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(self.server.answer(data), self.client_address)


def a(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def srv(port: int, target: str, priority: int = 0, weight: int = 1) -> bytes:
    return struct.pack("!HHH", priority, weight, port) + encode_name(target)


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def two_backends() -> Iterator[tuple[Backend, Backend]]:
    first, second = Backend("first").start(), Backend("second").start()
    yield first, second
    first.stop()
    second.stop()


def port(backend: Backend) -> int:
    return int(backend.server_address[1])


def write_service(manifests: Path, dns_spec: str) -> None:
    (manifests / "api.yaml").write_text(
        "apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {name: api}\n"
        f"spec:\n  timeouts: {{request: 2s}}\n  dns: {dns_spec}\n")


def answers(proxy: RunningProxy, count: int = 5) -> set[str]:
    found = set()
    for _ in range(count):
        status, _, body = get(proxy.outbound, host="api")
        found.add(f"{status} {body.decode(errors='replace')}")
    return found


def wait_for(proxy: RunningProxy, expected: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if answers(proxy, 3) == {expected}:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"still {answers(proxy)} after {timeout}s:\n{proxy.log()}")


def test_a_records_give_the_endpoints_and_a_failing_server_keeps_them(
        dns: DnsServer, two_backends: tuple[Backend, Backend], manifests: Path) -> None:
    first, _ = two_backends
    dns.records[("api.test", TYPE_A)] = [a("127.0.0.1")]
    write_service(manifests, f'{{name: api.test, type: A, port: {port(first)}, '
                             f'server: "{dns.address}"}}')
    proxy = RunningProxy(manifests)
    try:
        assert answers(proxy) == {"200 first"}
        dns.failing = True  # SERVFAIL from now on: the last answer stays in use
        asked = len(dns.questions)
        time.sleep(2.5)
        assert len(dns.questions) > asked  # it did ask again
        assert answers(proxy) == {"200 first"}
        assert "SERVFAIL" in proxy.log()
    finally:
        proxy.stop()


def test_srv_records_move_the_traffic_within_two_seconds(
        dns: DnsServer, two_backends: tuple[Backend, Backend], manifests: Path) -> None:
    first, second = two_backends
    dns.records[("_http._tcp.api.test", TYPE_SRV)] = [srv(port(first), "host.api.test")]
    dns.records[("host.api.test", TYPE_A)] = [a("127.0.0.1")]
    write_service(manifests, f'{{name: _http._tcp.api.test, type: SRV, '
                             f'server: "{dns.address}"}}')
    proxy = RunningProxy(manifests)
    try:
        assert answers(proxy) == {"200 first"}
        dns.records[("_http._tcp.api.test", TYPE_SRV)] = [srv(port(second), "host.api.test")]
        took = wait_for(proxy, "200 second", timeout=4.0)
        assert took < 2.5, took
        status, body = proxy.admin_get("/config")
        assert status == 200
        assert f"127.0.0.1:{port(second)}".encode() in body
    finally:
        proxy.stop()
