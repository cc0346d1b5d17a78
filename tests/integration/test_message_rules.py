"""What the proxy refuses to forward, decided before a byte reaches the backend, and
what it strips on the way (issue 15: #7 Transfer-Encoding, #8 versions, #9 userinfo,
#11 trailers) — through a real ``tulle proxy`` on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.client import get, raw_exchange
from tests.support.proxy import RunningProxy, mesh_service
from tests.support.scripted import ScriptedBackend

CHUNKED_BODY = b"3\r\nabc\r\n0\r\n\r\n"


def post_with_te(value: bytes) -> bytes:
    return (b"POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: %b\r\n\r\n" % value
            + CHUNKED_BODY)


REFUSED_HEADS = {
    "te-xchunked": (post_with_te(b"xchunked"), 400),
    "te-gzip": (post_with_te(b"gzip"), 400),
    "te-gzip-then-chunked": (post_with_te(b"gzip, chunked"), 501),
    "te-identity-then-chunked": (post_with_te(b"identity, chunked"), 501),
    "te-on-http-1.0": (post_with_te(b"chunked").replace(b"HTTP/1.1", b"HTTP/1.0"), 400),
    "http-0.9": (b"GET /\r\n\r\n", 505),
    "http-2.0-request-line": (b"GET / HTTP/2.0\r\nHost: web\r\n\r\n", 505),
    "http-3.0-request-line": (b"GET / HTTP/3.0\r\nHost: web\r\n\r\n", 505),
    "userinfo-in-target": (b"GET http://web:x@evil/p HTTP/1.1\r\nHost: web\r\n\r\n", 400),
    "userinfo-in-host": (b"GET / HTTP/1.1\r\nHost: web:80@evil.com\r\n\r\n", 400),
}


@pytest.mark.parametrize(
    ("request_bytes", "status"), REFUSED_HEADS.values(), ids=REFUSED_HEADS.keys()
)
def test_refused_heads_are_answered_and_never_reach_a_backend(
    proxy: RunningProxy, backends: list[Backend], request_bytes: bytes, status: int
) -> None:
    for _ in backends:  # pooled connections: a head would be written at once
        assert get(proxy.outbound)[0] == 200
    before = sum(b.requests for b in backends)
    response = raw_exchange(proxy.outbound, request_bytes)
    assert response.startswith(b"HTTP/1.1 %d " % status), response[:200]
    assert b"tulle-error:" in response
    assert b"connection: close" in response
    # One good request per backend (round-robin) after it: a head forwarded
    # before the refusal would have been counted by the time these are answered.
    for _ in backends:
        assert get(proxy.outbound)[0] == 200
    assert sum(b.requests for b in backends) == before + len(backends)


@pytest.fixture
def recording(manifests: Path) -> Iterator[tuple[RunningProxy, ScriptedBackend]]:
    backend = ScriptedBackend(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    (manifests / "web.yaml").write_text(mesh_service("web", [backend.address]))
    proxy = RunningProxy(manifests)
    yield proxy, backend
    proxy.stop()
    backend.stop()


def test_forbidden_request_trailers_do_not_reach_the_backend(
    recording: tuple[RunningProxy, ScriptedBackend],
) -> None:
    proxy, backend = recording
    response = raw_exchange(
        proxy.outbound,
        b"POST /upload HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n"
        b"X-Checksum: 900150983cd24fb0\r\nHost: evil\r\nAuthorization: Bearer stolen\r\n"
        b"Content-Type: text/evil\r\nX-Forwarded-For: 6.6.6.6\r\nCookie: session=x\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]
    [request] = backend.requests
    # (Content-Length in trailers is refused outright by llhttp: a 400.)
    assert request.endswith(b"\r\n0\r\nX-Checksum: 900150983cd24fb0\r\n\r\n"), request


def test_http_1_0_without_host_is_accepted_by_the_proxy(
    recording: tuple[RunningProxy, ScriptedBackend],
) -> None:
    # With no authority there is no service to route to; the point is that the
    # parser lets it through to routing (404 unknown service, not 400).
    proxy, _ = recording
    response = raw_exchange(proxy.outbound, b"GET / HTTP/1.0\r\n\r\n")
    assert not response.startswith(b"HTTP/1.1 400"), response[:200]
    assert not response.startswith(b"HTTP/1.1 505"), response[:200]


UNFORWARDABLE_RESPONSES = {
    "xchunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "gzip-then-chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    ),
    "gzip-until-close": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b\x08",
    "chunked-on-http-1.0": (
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("answer", UNFORWARDABLE_RESPONSES.values(),
                         ids=UNFORWARDABLE_RESPONSES.keys())
def test_a_response_transfer_coding_the_proxy_cannot_forward_is_a_clear_502(
    manifests: Path, answer: bytes
) -> None:
    backend = ScriptedBackend(answer, close_after=True)
    (manifests / "web.yaml").write_text(mesh_service("web", [backend.address]))
    proxy = RunningProxy(manifests)
    try:
        status, headers, _ = get(proxy.outbound)
        assert status == 502
        assert "Transfer-Encoding" in headers["tulle-error"]
    finally:
        proxy.stop()
        backend.stop()
