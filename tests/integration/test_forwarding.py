"""The proxy forwards HTTP/1.1 correctly: routing, balancing, framing, headers, keep-alive."""

from __future__ import annotations

import http.client
import re
import socket
import threading

from tests.support.backend import Backend
from tests.support.client import get, raw_exchange
from tests.support.proxy import RunningProxy


def test_requests_go_round_robin_across_the_endpoints(proxy: RunningProxy) -> None:
    answers = [get(proxy.outbound)[2].decode() for _ in range(30)]
    assert sorted(set(answers)) == ["backend-0", "backend-1", "backend-2"]
    assert all(answers.count(name) == 10 for name in set(answers))
    # Round-robin: each window of three consecutive answers covers every endpoint.
    assert all(len(set(answers[i : i + 3])) == 3 for i in range(0, 30, 3))


def test_the_service_is_found_from_every_form_of_its_name(proxy: RunningProxy) -> None:
    for host in ("web", "web:80", "WEB", "web.default", "web.default.svc",
                 "web.default.svc.cluster.local", "web.default.svc.cluster.local.:80"):
        status, _, body = get(proxy.outbound, host=host)
        assert status == 200, host
        assert body.startswith(b"backend-")


def test_an_absolute_form_target_works_as_through_http_proxy(proxy: RunningProxy) -> None:
    # What `http_proxy=http://127.0.0.1:4140 curl http://web/headers` sends.
    response = raw_exchange(
        proxy.outbound,
        b"GET http://web/headers HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 200")
    assert b"host: web\n" in response


def test_an_unknown_service_is_a_404_that_says_so(proxy: RunningProxy) -> None:
    status, headers, _ = get(proxy.outbound, host="nowhere")
    assert status == 404
    assert "nowhere" in headers["tulle-error"]


def test_bodies_are_forwarded_with_content_length_and_chunked(proxy: RunningProxy) -> None:
    status, _, body = get(proxy.outbound, "/echo", method="POST", body=b"hello" * 1000)
    assert (status, body) == (200, b"hello" * 1000)
    chunked = (
        b"POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    response = raw_exchange(proxy.outbound, chunked)
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"\r\n\r\nhello world")


def test_a_chunked_response_keeps_its_trailers(proxy: RunningProxy) -> None:
    response = raw_exchange(
        proxy.outbound, b"GET /chunked/100 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
    )
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"0\r\nx-checksum: 100\r\n\r\n")


def test_a_response_framed_by_close_is_rechunked_for_keep_alive_clients(
    proxy: RunningProxy,
) -> None:
    conn = http.client.HTTPConnection(*proxy.outbound, timeout=5)
    for _ in range(2):  # the second request proves the client connection survived
        conn.request("GET", "/eof/5000", headers={"Host": "web"})
        response = conn.getresponse()
        assert response.getheader("transfer-encoding") == "chunked"
        assert response.read() == b"z" * 5000
    conn.close()


def test_head_204_and_304_have_no_body(proxy: RunningProxy) -> None:
    conn = http.client.HTTPConnection(*proxy.outbound, timeout=5)
    for method, path in (("HEAD", "/bytes/1000"), ("GET", "/status/204"),
                         ("GET", "/status/304"), ("GET", "/")):
        conn.request(method, path, headers={"Host": "web"})
        response = conn.getresponse()
        body = response.read()
        if path == "/":
            assert body.startswith(b"backend-")  # the connection is still in step
        else:
            assert body == b""
        if method == "HEAD":
            assert response.getheader("content-length") == "1000"
    conn.close()


def test_hop_by_hop_headers_are_dropped_and_via_and_forwarded_for_added(
    proxy: RunningProxy,
) -> None:
    status, response_headers, body = get(
        proxy.outbound,
        "/headers",
        headers={
            "Connection": "x-private, keep-alive",
            "X-Private": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "X-Forwarded-For": "10.1.2.3",
            "X-Kept": "yes",
        },
    )
    seen = body.decode()
    assert status == 200
    assert "x-private" not in seen and "keep-alive" not in seen and "\nte:" not in seen
    assert "x-kept: yes" in seen
    assert "via: 1.1 tulle" in seen
    assert "x-forwarded-for: 10.1.2.3, 127.0.0.1" in seen
    assert "1.1 tulle (" in response_headers["via"]


def test_pipelined_requests_are_answered_in_order(proxy: RunningProxy) -> None:
    requests = (
        b"GET /sleep/300 HTTP/1.1\r\nHost: web\r\n\r\n"
        b"GET /status/201 HTTP/1.1\r\nHost: web\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\n\r\nping"
        b"GET /status/202 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
    )
    response = raw_exchange(proxy.outbound, requests)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", response)
    assert statuses == [b"200", b"201", b"200", b"202"]
    assert b"slept" in response and b"ping" in response


def test_expect_100_continue_is_answered_before_the_body_is_sent(proxy: RunningProxy) -> None:
    with socket.create_connection(proxy.outbound, timeout=5) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        rest = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        while not rest.endswith(b"hello"):
            piece = sock.recv(1024)
            assert piece, rest
            rest += piece
    assert rest.startswith(b"HTTP/1.1 200")


def test_http_1_0_and_connection_close_are_honoured(proxy: RunningProxy) -> None:
    response = raw_exchange(proxy.outbound, b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in response.lower()
    kept = b"GET / HTTP/1.0\r\nHost: web\r\nConnection: keep-alive\r\n\r\n" * 2
    with socket.create_connection(proxy.outbound, timeout=5) as sock:
        sock.sendall(kept)
        data = b""
        while data.count(b"HTTP/1.1 200") < 2:
            piece = sock.recv(4096)
            assert piece, data
            data += piece
    assert b"connection: keep-alive" in data.lower()


def test_upstream_connections_are_kept_alive_and_reused(
    proxy: RunningProxy, backends: list[Backend]
) -> None:
    get(proxy.outbound)  # let idle connections from earlier tests settle in the pool
    for backend in backends:
        backend.reset_counts()

    def client() -> None:
        conn = http.client.HTTPConnection(*proxy.outbound, timeout=10)
        for _ in range(50):
            conn.request("GET", "/", headers={"Host": "web"})
            assert conn.getresponse().read().startswith(b"backend-")
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requests = sum(b.requests for b in backends)
    connections = sum(b.connections for b in backends)
    assert requests == 200
    assert connections <= 4 * len(backends)  # at most one per client per endpoint


def test_hundreds_of_pipelined_requests_the_proxy_answers_itself(proxy: RunningProxy) -> None:
    # A slow request first, then 300 the proxy answers at once (unknown service).
    requests = b"GET /sleep/200 HTTP/1.1\r\nHost: web\r\n\r\n"
    requests += b"GET / HTTP/1.1\r\nHost: nowhere\r\n\r\n" * 300
    requests += b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
    response = raw_exchange(proxy.outbound, requests, timeout=20)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", response)
    assert statuses == [b"200"] + [b"404"] * 300 + [b"200"]


def test_a_client_that_half_closes_after_its_request_is_answered(proxy: RunningProxy) -> None:
    with socket.create_connection(proxy.outbound, timeout=5) as sock:
        sock.sendall(b"GET /sleep/100 HTTP/1.1\r\nHost: web\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)  # like `nc -N`, Go's CloseWrite
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"slept")
