"""Bad input from clients gets a clear 4xx and a closed connection; never a crash or a hang."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.client import get, raw_exchange
from tests.support.proxy import RunningProxy


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: web\r\nHost: other\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : web\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: web\n\n", 400),  # bare LF
        (
            b"POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n"
            b"Content-Length: 6\r\n\r\nhello!",
            400,
        ),
        (b"POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: web\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
    ids=["garbage", "no-host", "two-hosts", "space-before-colon", "bare-lf",
         "cl-and-te", "two-content-lengths", "te-not-chunked", "head-too-large"],
)
def test_malformed_requests_get_4xx_and_the_connection_closed(
    proxy: RunningProxy, request_bytes: bytes, status: int
) -> None:
    response = raw_exchange(proxy.outbound, request_bytes)
    assert response.startswith(b"HTTP/1.1 %d " % status), response[:200]
    assert b"tulle-error:" in response
    assert b"connection: close" in response
    # ... and the proxy keeps serving everyone else.
    assert get(proxy.outbound)[0] == 200


def test_a_broken_chunked_body_mid_request_is_answered_400(proxy: RunningProxy) -> None:
    response = raw_exchange(
        proxy.outbound,
        b"POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nZZ\r\n",
    )
    assert response.startswith(b"HTTP/1.1 400 ")
    assert get(proxy.outbound)[0] == 200


def test_a_client_that_sends_its_head_too_slowly_is_cut_off(proxy: RunningProxy) -> None:
    # The fixture runs the proxy with --head-timeout 1.
    started = time.monotonic()
    with socket.create_connection(proxy.outbound, timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n")  # ... and never the blank line
        data = b""
        while True:
            piece = sock.recv(4096)
            if not piece:
                break
            data += piece
    elapsed = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 ")
    assert elapsed < 5


def test_a_connection_that_never_sends_anything_is_closed(proxy: RunningProxy) -> None:
    started = time.monotonic()
    with socket.create_connection(proxy.outbound, timeout=10) as sock:
        while sock.recv(4096):
            pass
    assert time.monotonic() - started < 5


def test_connection_cannot_strip_content_length_to_smuggle_a_request(
    proxy: RunningProxy,
) -> None:
    hidden = b"GET /status/418 HTTP/1.1\r\nHost: web\r\n\r\n"
    response = raw_exchange(
        proxy.outbound,
        b"POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: %d\r\n"
        b"Connection: content-length, close\r\n\r\n%b" % (len(hidden), hidden),
    )
    # One request reached the backend, with the "hidden" one as its body.
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(hidden)
    assert b"418" not in response.split(b"\r\n\r\n", 1)[0]


def test_a_broken_body_after_forwarding_leaves_no_request_in_flight(
    proxy: RunningProxy,
) -> None:
    for _ in range(3):
        response = raw_exchange(
            proxy.outbound,
            b"POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n" + b"zz\r\n",
        )
        assert response.startswith(b"HTTP/1.1 400")
    time.sleep(0.3)
    _, body = proxy.admin_get("/endpoints")
    assert b'"inFlight": 1' not in body and b'"inFlight": 2' not in body
