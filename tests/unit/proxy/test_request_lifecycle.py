"""One request through the proxy, byte by byte, on the fake loop: what the client and
the endpoints see, including the races (a late connect, an abandoned probe, a response
before the request ends, a per-try timeout firing), and that every request is answered
and counted exactly once.

These tests pin the proxy's behaviour from outside (bytes and metrics), so they hold
through a rebuild of its insides; `tests.support.proxy_kit` assembles the proxy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.proxy_kit import ProxyKit

A, B = "127.0.0.1:9001", "127.0.0.1:9002"

GET = b"GET /x HTTP/1.1\r\nHost: web\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def manifest(extra: str = "", endpoints: tuple[str, ...] = (A, B)) -> str:
    lines = "".join(f'    - {{address: "{e}"}}\n' for e in endpoints)
    return (
        "apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {name: web}\nspec:\n"
        "  loadBalancer: {algorithm: round-robin}\n"
        f"  endpoints:\n{lines}{extra}"
    )


@pytest.fixture
def kit(tmp_path: Path) -> ProxyKit:
    return ProxyKit(tmp_path, manifest())


def head_of(data: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The start line and (lower-cased) headers of the first message in ``data``."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return head[0], headers


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def messages(data: bytes) -> list[bytes]:
    """The status lines of every response in ``data``."""
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", data)


# -- forwarding --------------------------------------------------------------------


def test_a_get_goes_to_an_endpoint_and_back_with_via_and_forwarded_for(kit: ProxyKit) -> None:
    client = kit.client(peer=("10.0.0.7", 1234))
    client.receive(GET)
    assert client.take() == b""  # nothing until the endpoint answers
    upstream = kit.accept(A)
    start, headers = head_of(upstream.take())
    assert start == b"GET /x HTTP/1.1"
    assert headers[b"host"] == b"web"
    assert headers[b"via"].startswith(b"1.1 tulle (")
    assert headers[b"x-forwarded-for"] == b"10.0.0.7"
    upstream.receive(OK)
    answer = client.take()
    start, headers = head_of(answer)
    assert start == b"HTTP/1.1 200 OK"
    assert headers[b"via"].startswith(b"1.1 tulle (")
    assert answer.endswith(b"\r\n\r\nok")
    assert kit.responses(endpoint=A) == {(200, ""): 1}
    assert kit.endpoint(A).in_flight == 0


def test_the_connection_goes_back_to_the_pool_and_is_reused(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(GET)
    upstream_a = kit.accept(A)
    upstream_a.receive(OK)
    client.receive(GET)
    upstream_b = kit.accept(B)
    upstream_b.receive(OK)
    client.take()
    upstream_a.take()
    client.receive(GET)  # round-robin: back to A, on the pooled connection
    assert kit.connecting == []
    assert upstream_a.take().startswith(b"GET /x HTTP/1.1")
    upstream_a.receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]


def test_a_body_that_arrives_before_the_connection_is_held_then_sent(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(b"POST /p HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\n01234")
    client.receive(b"56789")
    upstream = kit.accept(A)
    sent = upstream.take()
    assert sent.endswith(b"\r\n\r\n0123456789")
    assert b"content-length: 10" in sent.lower()
    upstream.receive(OK)
    assert status_of(client.take()) == 200


def test_a_chunked_request_is_rechunked_with_its_trailers(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(b"POST /p HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n")
    upstream = kit.accept(A)
    client.receive(b"3\r\nabc\r\n0\r\nx-sum: 3\r\n\r\n")
    sent = upstream.take()
    assert b"transfer-encoding: chunked" in sent.lower()
    assert sent.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 3\r\n\r\n")
    upstream.receive(OK)
    assert status_of(client.take()) == 200


def test_a_response_framed_by_close_is_chunked_for_a_keep_alive_client(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(GET)
    upstream = kit.accept(A)
    upstream.receive(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello")
    upstream.peer_closes()
    answer = client.take()
    assert b"transfer-encoding: chunked" in answer.lower()
    assert answer.endswith(b"5\r\nhello\r\n0\r\n\r\n")
    assert not client.closed


def test_pipelined_requests_are_answered_in_order(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(GET.replace(b"/x", b"/1") + GET.replace(b"/x", b"/2"))
    upstream_a = kit.accept(A)
    assert upstream_a.take().startswith(b"GET /1 ")
    assert kit.connecting == []  # the second waits for the first's answer
    upstream_a.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
    upstream_b = kit.accept(B)
    assert upstream_b.take().startswith(b"GET /2 ")
    upstream_b.receive(b"HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\n2")
    assert messages(client.take()) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 201 Created"]


def test_expect_100_continue_is_answered_once_an_endpoint_is_chosen(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(b"PUT /p HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n"
                   b"Expect: 100-continue\r\n\r\n")
    assert client.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    upstream = kit.accept(A)
    assert b"expect" not in upstream.take().lower()
    client.receive(b"hi")
    assert upstream.take() == b"hi"


def test_http_1_0_gets_keep_alive_only_when_it_asked(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(b"GET / HTTP/1.0\r\nHost: web\r\nConnection: keep-alive\r\n\r\n")
    kit.accept(A).receive(OK)
    answer = client.take()
    assert b"connection: keep-alive" in answer.lower()
    assert not client.closed
    client.receive(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
    kit.accept(B).receive(OK)
    assert b"connection: close" in client.take().lower()
    kit.advance(0)
    assert client.closed


def test_a_head_response_ends_at_its_head_and_the_connection_is_reused(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(b"HEAD /x HTTP/1.1\r\nHost: web\r\n\r\n")
    upstream = kit.accept(A)
    upstream.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert client.take().endswith(b"\r\n\r\n")
    assert kit.endpoint(A).pool.idle_count == 1


def test_a_client_that_half_closes_is_answered_then_closed(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(GET)
    client.peer_closes()
    assert not client.closed
    kit.accept(A).receive(OK)
    assert status_of(client.take()) == 200
    kit.advance(0)
    assert client.closed


def test_a_head_that_does_not_arrive_in_time_is_a_408(tmp_path: Path) -> None:
    kit = ProxyKit(tmp_path, manifest(), head_timeout=1.0)
    client = kit.client()
    client.receive(b"GET / HTTP/1.1\r\nHost: w")
    kit.advance(1.5)
    assert status_of(client.take()) == 408
    kit.advance(0)
    assert client.closed


def test_a_keep_alive_connection_closes_idle_timeout_after_it_last_went_idle(
        tmp_path: Path) -> None:
    kit = ProxyKit(tmp_path, manifest("  timeouts: {request: 600s}\n"))
    idle = kit.config.mesh.defaults.timeouts.idle
    client = kit.client()
    client.receive(GET)
    kit.accept(A).receive(OK)
    assert status_of(client.take()) == 200
    kit.advance(idle * 0.75)
    client.receive(GET)
    upstream = kit.accept(B)
    kit.advance(idle * 0.5)  # the first wait's deadline passes while a request is in flight
    assert not client.closed
    upstream.receive(OK)
    assert status_of(client.take()) == 200
    kit.advance(idle * 0.9)
    assert not client.closed
    kit.advance(idle * 0.2)
    assert client.closed


# -- answers the proxy makes itself ------------------------------------------------


def test_an_unknown_authority_is_a_404_that_says_why(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(b"GET / HTTP/1.1\r\nHost: nowhere\r\n\r\n")
    answer = client.take()
    start, headers = head_of(answer)
    assert start == b"HTTP/1.1 404 Not Found"
    assert b"nowhere" in headers[b"tulle-error"]
    assert not client.closed  # the request was whole: the connection stays


def test_a_refused_connection_is_retried_on_the_other_endpoint(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(GET)
    kit.connect(A).refuse()
    kit.advance(0.2)  # the retry's backoff
    kit.accept(B).receive(OK)
    assert status_of(client.take()) == 200
    assert kit.responses(endpoint=B) == {(200, ""): 1}
    assert kit.responses(endpoint=A) == {}


def test_refused_everywhere_is_a_502_naming_the_refusal(tmp_path: Path) -> None:
    kit = ProxyKit(tmp_path, manifest(endpoints=(A,)))
    client = kit.client()
    client.receive(GET)
    kit.connect(A).refuse()
    kit.advance(1.5)  # backoff, then waiting for an endpoint that is unreachable
    answer = client.take()
    assert status_of(answer) == 502
    assert b"refused" in head_of(answer)[1][b"tulle-error"]


def test_a_request_timeout_is_a_504_and_closes_the_try(tmp_path: Path) -> None:
    kit = ProxyKit(tmp_path, manifest("  timeouts: {request: 2s}\n"))
    client = kit.client()
    client.receive(GET)
    upstream = kit.accept(A)
    kit.advance(1.9)
    assert client.take() == b""
    kit.advance(0.2)
    answer = client.take()
    assert status_of(answer) == 504
    assert b"request timeout" in head_of(answer)[1][b"tulle-error"]
    assert upstream.closed
    assert kit.endpoint(A).in_flight == 0
    upstream_late = upstream.take()
    assert upstream_late.startswith(b"GET")  # it was sent; the answer never came


def test_a_per_try_timeout_retries_elsewhere_and_drops_the_late_answer(tmp_path: Path) -> None:
    kit = ProxyKit(tmp_path, manifest("  timeouts: {request: 5s, perTry: 500ms}\n"
                                      "  retries: {on: [timeout, connect-failure]}\n"))
    client = kit.client()
    client.receive(GET)
    slow = kit.accept(A)
    kit.advance(0.6)  # per-try timeout, then the retry's backoff
    assert slow.closed
    fast = kit.accept(B)
    fast.receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]
    assert kit.endpoint(A).in_flight == kit.endpoint(B).in_flight == 0


def test_a_late_connect_is_kept_for_later_and_the_request_is_not_sent_twice(
    tmp_path: Path,
) -> None:
    kit = ProxyKit(tmp_path, manifest("  timeouts: {request: 5s, perTry: 500ms, connect: 2s}\n"
                                      "  retries: {on: [timeout]}\n"))
    client = kit.client()
    client.receive(GET)
    late = kit.connect(A)
    kit.advance(0.6)  # the try times out while still connecting; retried on B
    on_b = kit.accept(B)
    assert on_b.take().startswith(b"GET /x")
    late_transport = late.accept()  # A's connection completes after all
    assert late_transport.take() == b""  # nothing is sent on it for the finished try
    assert not late_transport.closed  # a working connection is kept for later
    on_b.receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]
    client.receive(GET)  # round-robin goes to A: it uses the kept connection
    assert late_transport.take().startswith(b"GET /x")
    assert kit.connecting == []


def test_a_503_from_the_endpoint_is_retried_and_its_body_dropped(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(GET)
    failing = kit.accept(A)
    failing.receive(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\n")
    assert failing.closed  # its body is not wanted: the connection can't be reused
    kit.advance(0.2)
    kit.accept(B).receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]


def test_when_retries_cannot_save_it_the_last_status_is_answered(tmp_path: Path) -> None:
    kit = ProxyKit(tmp_path, manifest("  retries: {attempts: 1}\n"))
    client = kit.client()
    client.receive(GET)
    kit.accept(A).receive(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    kit.advance(0.2)
    kit.accept(B).receive(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
    answer = client.take()
    assert messages(answer) == [b"HTTP/1.1 502 Bad Gateway"]  # the endpoint's own answer
    assert b"tulle-error" not in answer.lower()


def test_a_stale_pooled_connection_is_replaced_for_an_idempotent_request(
    tmp_path: Path,
) -> None:
    kit = ProxyKit(tmp_path, manifest(endpoints=(A,)))
    client = kit.client()
    client.receive(GET)
    first = kit.accept(A)
    first.receive(OK)
    client.take()
    client.receive(GET)
    first.take()
    first.peer_closes()  # the endpoint had closed it while idle
    second = kit.accept(A)
    assert second.take().startswith(b"GET /x")
    second.receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]


def test_a_reset_after_the_response_began_cuts_the_client(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(GET)
    upstream = kit.accept(A)
    upstream.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
    upstream.peer_resets()
    assert client.aborted
    assert kit.endpoint(A).in_flight == 0


def test_a_response_before_the_request_body_ends_closes_both_sides(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(b"POST /p HTTP/1.1\r\nHost: web\r\nContent-Length: 100\r\n\r\nabc")
    upstream = kit.accept(A)
    upstream.receive(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
    answer = client.take()
    assert messages(answer) == [b"HTTP/1.1 413 Content Too Large"]
    assert upstream.closed  # the rest of the body has nowhere to go
    kit.advance(0)
    assert client.closed
    assert kit.responses(endpoint=A) == {(413, ""): 1}


def test_a_client_that_leaves_mid_request_frees_the_endpoint(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(GET)
    upstream = kit.accept(A)
    assert kit.endpoint(A).in_flight == 1
    client.peer_resets()
    assert upstream.closed
    assert kit.endpoint(A).in_flight == 0
    assert kit.responses(endpoint=A) == {}  # nothing answered, nothing counted


def test_a_slow_reader_pauses_the_upstream(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(GET)
    upstream = kit.accept(A)
    upstream.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nabc")
    client.protocol.pause_writing()
    assert not upstream.reading
    client.protocol.resume_writing()
    assert upstream.reading


# -- the circuit breaker's probe ---------------------------------------------------


def test_an_abandoned_probe_lets_the_next_request_probe(tmp_path: Path) -> None:
    kit = ProxyKit(tmp_path, manifest("  circuitBreaker: {consecutiveFailures: 1}\n",
                                      endpoints=(A,)))
    client = kit.client()
    client.receive(GET)
    pooled = kit.accept(A)
    pooled.receive(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
    assert status_of(client.take()) == 500
    pooled.take()
    assert kit.endpoint(A).state == "open-circuit"
    kit.advance(1.1)  # the backoff (1 s, jittered down to half) elapses: probing
    assert kit.endpoint(A).state == "probing"
    prober = kit.client()
    prober.receive(GET)  # the probe, on the pooled connection
    assert pooled.take().startswith(b"GET /x")
    assert not kit.endpoint(A).pickable  # one probe at a time
    prober.peer_resets()  # the probe's client leaves before an answer
    assert pooled.closed
    assert kit.endpoint(A).pickable  # another request may probe now
    client.receive(GET)
    kit.accept(A).receive(OK)
    assert status_of(client.take()) == 200
    assert kit.endpoint(A).state == "active"


def test_requests_wait_briefly_for_an_endpoint_then_get_503(tmp_path: Path) -> None:
    kit = ProxyKit(tmp_path, manifest("  circuitBreaker: {consecutiveFailures: 1, "
                                      "backoff: {min: 10s, max: 10s}}\n", endpoints=(A,)))
    client = kit.client()
    client.receive(GET)
    kit.accept(A).receive(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
    client.take()
    client.receive(GET)
    kit.advance(0.9)
    assert client.take() == b""  # waiting (failFastAfter: 1s)
    kit.advance(0.2)
    answer = client.take()
    assert status_of(answer) == 503
    assert b"fail-fast" not in answer  # the reason is in words
    assert b"became available" in head_of(answer)[1][b"tulle-error"]


# -- counted once ------------------------------------------------------------------


def test_a_timeout_and_an_answer_in_the_same_instant_count_one_response(
    tmp_path: Path,
) -> None:
    kit = ProxyKit(tmp_path, manifest("  timeouts: {request: 1s}\n", endpoints=(A,)))
    client = kit.client()
    client.receive(GET)
    upstream = kit.accept(A)
    kit.advance(1.0)  # the timeout fires first ...
    upstream_closed = upstream.closed
    if not upstream_closed:
        upstream.receive(OK)  # ... or the answer does; either way, one answer
    assert len(messages(client.take())) == 1
    counted = sum(kit.responses(endpoint=A).values()) + sum(kit.responses().values())
    assert counted == 1


def test_tap_sees_each_finished_request_once(kit: ProxyKit) -> None:
    from tulle.telemetry.tap import TapFilter

    seen = []
    kit.tap.subscribe(TapFilter(), seen.append)
    client = kit.client()
    client.receive(GET)
    kit.accept(A).receive(OK)
    client.receive(b"GET / HTTP/1.1\r\nHost: nowhere\r\n\r\n")
    assert [(e.service, e.status, e.endpoint) for e in seen] == [("web", 200, A), ("", 404, "")]


# -- hardening (issue 15): each of these failed before its fix ----------------------


def test_bytes_after_a_complete_response_keep_the_connection_out_of_the_pool(
    tmp_path: Path,
) -> None:
    """#1: a response followed, in the same read, by bytes no request asked for."""
    kit = ProxyKit(tmp_path, manifest(endpoints=(A,)))
    client = kit.client()
    client.receive(GET)
    upstream = kit.accept(A)
    upstream.receive(b"HTTP/1.1 204 No Content\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
    assert messages(client.take()) == [b"HTTP/1.1 204 No Content"]
    kit.advance(0)
    assert upstream.closed
    assert kit.endpoint(A).pool.idle_count == 0
    client.receive(GET)  # a new connection, not the one out of step
    assert A in kit.connecting


def test_a_malformed_body_in_the_read_that_holds_the_head_is_a_502_or_a_retry(
    kit: ProxyKit,
) -> None:
    """#6: nothing of the response reached the client yet, so it can still be answered."""
    client = kit.client()
    client.receive(GET)
    kit.accept(A).receive(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"ffffffffffffffff1\r\nabc\r\n")
    assert client.take() == b""  # not an empty reply and a reset: a retry, on B
    kit.advance(0.2)
    kit.accept(B).receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]
    assert not client.closed


def test_a_malformed_body_with_no_retry_left_is_a_502_that_says_why(tmp_path: Path) -> None:
    kit = ProxyKit(tmp_path, manifest(endpoints=(A,)))
    client = kit.client()
    client.receive(b"POST /x HTTP/1.1\r\nHost: web\r\nContent-Length: 0\r\n\r\n")
    kit.accept(A).receive(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"ffffffffffffffff1\r\nabc\r\n")
    answer = client.take()
    assert status_of(answer) == 502
    assert b"malformed" in head_of(answer)[1][b"tulle-error"]


def test_interim_responses_are_forwarded_to_an_http_1_1_client(kit: ProxyKit) -> None:
    """#10: 103 Early Hints and an unasked 100 reach the client before the final answer."""
    client = kit.client()
    client.receive(GET)
    kit.accept(A).receive(b"HTTP/1.1 100 Continue\r\n\r\n"
                          b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                          + OK)
    answer = client.take()
    assert messages(answer) == [b"HTTP/1.1 100 Continue", b"HTTP/1.1 103 Early Hints",
                                b"HTTP/1.1 200 OK"]
    assert b"Link: </a.css>; rel=preload" in answer


def test_interim_responses_are_not_sent_to_an_http_1_0_client(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(b"GET /x HTTP/1.0\r\nHost: web\r\n\r\n")
    kit.accept(A).receive(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]


def test_an_http_1_0_request_without_host_is_forwarded_with_one(tmp_path: Path) -> None:
    """#8: a request forwarded as HTTP/1.1 must carry a Host (RFC 9112 §3.2)."""
    kit = ProxyKit(tmp_path, manifest("  clusterIP: 10.96.0.50\n  port: 80\n", endpoints=(A,)))
    client = kit.client()
    client.protocol.original_dst = ("10.96.0.50", 80)  # captured: routed without a Host
    client.receive(b"GET /x HTTP/1.0\r\n\r\n")
    start, headers = head_of(kit.accept(A).take())
    assert start == b"GET /x HTTP/1.1"
    assert headers[b"host"] == A.encode()  # the endpoint it goes to


def test_a_request_that_comes_back_to_this_proxy_is_a_508(kit: ProxyKit) -> None:
    """#12: the proxy's own Via in the request: a loop, answered at the first repeat."""
    client = kit.client()
    client.receive(GET)
    upstream = kit.accept(A)
    via = head_of(upstream.take())[1][b"via"]
    upstream.receive(OK)
    client.take()
    client.receive(b"GET /x HTTP/1.1\r\nHost: web\r\nVia: 1.1 other, " + via + b"\r\n\r\n")
    answer = client.take()
    assert status_of(answer) == 508
    assert b"came back" in head_of(answer)[1][b"tulle-error"]
    assert kit.connecting == []


def test_another_tulle_in_the_via_chain_is_not_a_loop(kit: ProxyKit) -> None:
    client = kit.client()
    client.receive(b"GET /x HTTP/1.1\r\nHost: web\r\nVia: 1.1 tulle (0badc0de)\r\n\r\n")
    forwarded = kit.accept(A).take()
    assert forwarded.startswith(b"GET /x HTTP/1.1")
    assert b"via: 1.1 tulle (0badc0de)" in forwarded.lower()


def test_a_client_that_does_not_read_is_not_read_from_and_starts_nothing_new(
    kit: ProxyKit,
) -> None:
    """#2: while the client's transport is full, pipelined requests wait and reading stops."""
    client = kit.client()
    client.receive(GET.replace(b"/x", b"/1") + GET.replace(b"/x", b"/2"))
    upstream = kit.accept(A)
    client.protocol.pause_writing()  # the client stopped reading
    assert not client.reading
    upstream.receive(OK)  # the first answer is written (into the full buffer) ...
    kit.advance(0)
    assert kit.connecting == []  # ... and the second request is not started meanwhile
    client.protocol.resume_writing()
    kit.advance(0)
    assert B in kit.connecting
    assert client.reading


def test_a_client_that_does_not_read_within_the_send_timeout_is_cut_off(
    kit: ProxyKit,
) -> None:
    """#3: the send timeout closes the client and lets the endpoint go."""
    kit.ctx.send_timeout = 5.0
    client = kit.client()
    client.receive(GET)
    upstream = kit.accept(A)
    upstream.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc")
    client.protocol.pause_writing()
    kit.advance(4.9)
    assert not client.closed
    kit.advance(0.2)
    assert client.aborted
    assert upstream.closed
    assert kit.endpoint(A).in_flight == 0
    assert kit.metrics.tcp("outbound", "src").send_timeouts == 1


def test_running_out_of_descriptors_is_not_the_endpoints_fault(tmp_path: Path) -> None:
    """#4: EMFILE on connect: 503 local exhaustion, counted, the endpoint still reachable."""
    import errno

    kit = ProxyKit(tmp_path, manifest("  retries: {attempts: 1}\n", endpoints=(A,)))
    client = kit.client()
    client.receive(GET)
    kit.connect(A).fail(OSError(errno.EMFILE, "Too many open files"))
    kit.advance(0.2)  # a connect failure is retried ...
    kit.connect(A).fail(OSError(errno.EMFILE, "Too many open files"))  # ... on the same one
    answer = client.take()
    assert status_of(answer) == 503
    assert b"out of" in head_of(answer)[1][b"tulle-error"]
    assert kit.endpoint(A).pool.reachable
    assert kit.metrics.tcp("outbound", "dst").local_exhaustion == 2


# -- hedging (issue 15 #14): a slow try raced by a second one on another endpoint -------

PER_TRY = 0.15  # past the 100 ms per-try timeout, on the wheel's 10 ms ticks


def hedging(tmp_path: Path, extra: str = "", endpoints: tuple[str, ...] = (A, B),
            retries: str = "", request: str = "5s") -> ProxyKit:
    """A service that hedges a try after 100 ms (``retries``: more settings for it)."""
    more = f", {retries}" if retries else ""
    return ProxyKit(tmp_path, manifest(
        f"  timeouts: {{request: {request}, perTry: 100ms}}\n"
        f"  retries: {{hedge: true{more}}}\n{extra}",
        endpoints=endpoints))


def hedges(kit: ProxyKit) -> int:
    return kit.mesh.outbound.targets["web.default"].counters.hedges


def test_a_slow_try_is_hedged_on_the_other_endpoint_and_the_first_answer_wins(
    tmp_path: Path,
) -> None:
    kit = hedging(tmp_path)
    client = kit.client()
    client.receive(GET)
    slow = kit.accept(A)
    assert slow.take().startswith(b"GET /x")
    kit.advance(PER_TRY)
    assert not slow.closed  # not abandoned: it races the hedge
    hedge = kit.accept(B)
    assert hedge.take().startswith(b"GET /x")
    assert client.take() == b""
    hedge.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhedge")
    answer = client.take()
    assert messages(answer) == [b"HTTP/1.1 200 OK"]
    assert answer.endswith(b"\r\n\r\nhedge")
    assert slow.closed  # the loser's connection is closed ...
    assert kit.endpoint(A).in_flight == kit.endpoint(B).in_flight == 0  # ... its endpoint freed
    assert kit.endpoint(A).failed_tries == 1  # it did not answer within its per-try timeout
    assert kit.responses(endpoint=B) == {(200, ""): 1}
    assert kit.responses(endpoint=A) == {}
    assert hedges(kit) == 1
    assert kit.endpoint(B).pool.idle_count == 1  # the winner's connection is reused


def test_when_the_first_try_answers_first_the_hedge_is_cancelled(tmp_path: Path) -> None:
    kit = hedging(tmp_path)
    client = kit.client()
    client.receive(GET)
    slow = kit.accept(A)
    kit.advance(PER_TRY)
    hedge = kit.accept(B)
    slow.receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]
    assert hedge.closed
    assert kit.endpoint(A).in_flight == kit.endpoint(B).in_flight == 0
    assert kit.endpoint(B).failed_tries == 0  # the hedge was not late: no blame
    assert kit.responses(endpoint=A) == {(200, ""): 1}  # counted where it was answered
    assert kit.responses(endpoint=B) == {}
    assert client.take() == b""  # one answer


def test_a_hedge_waits_for_a_connection_while_the_first_try_still_connects(
    tmp_path: Path,
) -> None:
    """Both racers get the whole body: the first takes what was held, the second what
    was kept for replay."""
    kit = hedging(tmp_path)
    client = kit.client()
    client.receive(b"PUT /p HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello")
    connecting = kit.connect(A)
    kit.advance(PER_TRY)  # A has not even accepted yet
    hedge = kit.accept(B)
    assert hedge.take().endswith(b"\r\n\r\nhello")
    late = connecting.accept()
    assert late.take().endswith(b"\r\n\r\nhello")  # the first try goes on, body and all
    hedge.receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]
    assert late.closed
    assert kit.endpoint(A).in_flight == 0


def test_a_post_is_never_hedged(tmp_path: Path) -> None:
    """Not even when the policy retries POST: a hedge sends the request twice on purpose,
    which only an idempotent method allows (RFC 9110 §9.2.2)."""
    kit = hedging(tmp_path, retries="methods: [GET, POST]")
    client = kit.client()
    client.receive(b"POST /p HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n\r\nhi")
    slow = kit.accept(A)
    kit.advance(PER_TRY)
    assert kit.connecting == []  # no hedge ...
    answer = client.take()
    assert status_of(answer) == 504  # ... the per-try timeout does what it does unhedged
    assert b"per-try" in head_of(answer)[1][b"tulle-error"]
    assert slow.closed
    assert hedges(kit) == 0


def test_a_request_whose_body_is_still_coming_is_not_hedged(tmp_path: Path) -> None:
    kit = hedging(tmp_path)
    client = kit.client()
    client.receive(b"PUT /p HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\nhello")
    kit.accept(A)
    kit.advance(PER_TRY)
    assert kit.connecting == []
    assert status_of(client.take()) == 504
    assert hedges(kit) == 0


def test_a_spent_budget_stops_hedges_and_the_slow_try_goes_on(tmp_path: Path) -> None:
    # One retry per second and none earned by requests: the first hedge spends it.
    kit = hedging(tmp_path, retries="budget: {ratio: 0.0, minPerSecond: 1, window: 1s}")
    client = kit.client()
    client.receive(GET)
    first_slow = kit.accept(A)
    kit.advance(PER_TRY)
    kit.accept(B).receive(OK)  # the hedge wins
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]
    assert first_slow.closed
    client.receive(GET)  # round-robin: A again
    slow = kit.accept(A)
    kit.advance(PER_TRY)
    assert kit.connecting == []  # no hedge: the budget is spent ...
    assert not slow.closed  # ... and the slow try is not abandoned either
    assert kit.mesh.outbound.targets["web.default"].counters.retry_budget_exhausted == 1
    slow.receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]
    assert hedges(kit) == 1


def test_a_racer_that_fails_while_the_other_runs_is_not_answered(tmp_path: Path) -> None:
    kit = hedging(tmp_path)
    client = kit.client()
    client.receive(GET)
    slow = kit.accept(A)
    kit.advance(PER_TRY)
    kit.connect(B).refuse()  # the hedge fails ...
    kit.advance(0.2)
    assert client.take() == b""  # ... and the client is not told: the first try runs on
    assert not slow.closed
    slow.receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]
    assert kit.endpoint(A).in_flight == kit.endpoint(B).in_flight == 0


def test_a_racer_answering_a_status_the_policy_retries_is_dropped(tmp_path: Path) -> None:
    kit = hedging(tmp_path)
    client = kit.client()
    client.receive(GET)
    slow = kit.accept(A)
    kit.advance(PER_TRY)
    hedge = kit.accept(B)
    hedge.receive(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
    assert client.take() == b""
    assert hedge.closed  # its body is not wanted
    slow.receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]
    assert kit.endpoint(B).failed_tries == 1


def test_a_racer_answering_a_status_the_policy_does_not_retry_wins(tmp_path: Path) -> None:
    kit = hedging(tmp_path)
    client = kit.client()
    client.receive(GET)
    slow = kit.accept(A)
    kit.advance(PER_TRY)
    kit.accept(B).receive(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert messages(client.take()) == [b"HTTP/1.1 404 Not Found"]
    assert slow.closed


def test_when_the_last_racer_fails_too_the_failure_is_answered_as_without_a_hedge(
    tmp_path: Path,
) -> None:
    kit = hedging(tmp_path, retries="attempts: 1")
    client = kit.client()
    client.receive(GET)
    slow = kit.accept(A)
    kit.advance(PER_TRY)
    kit.accept(B).receive(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    assert client.take() == b""
    slow.peer_resets()  # the one left fails, and no try is left: 502, as today
    answer = client.take()
    assert status_of(answer) == 502
    assert b"closed the connection" in head_of(answer)[1][b"tulle-error"]


def test_the_request_timeout_while_racing_closes_both_tries(tmp_path: Path) -> None:
    kit = hedging(tmp_path, request="1s")
    client = kit.client()
    client.receive(GET)
    slow = kit.accept(A)
    kit.advance(PER_TRY)
    hedge = kit.accept(B)
    kit.advance(1.0)
    assert status_of(client.take()) == 504
    assert slow.closed and hedge.closed
    assert kit.endpoint(A).in_flight == kit.endpoint(B).in_flight == 0
    assert sum(kit.responses(endpoint=B).values()) == 1  # one answer, counted once


def test_a_client_that_leaves_mid_race_frees_both_endpoints(tmp_path: Path) -> None:
    kit = hedging(tmp_path)
    client = kit.client()
    client.receive(GET)
    slow = kit.accept(A)
    kit.advance(PER_TRY)
    hedge = kit.accept(B)
    client.peer_resets()
    assert slow.closed and hedge.closed
    assert kit.endpoint(A).in_flight == kit.endpoint(B).in_flight == 0
    assert kit.responses(endpoint=A) == kit.responses(endpoint=B) == {}


def test_with_one_endpoint_a_slow_try_is_not_hedged_onto_itself(tmp_path: Path) -> None:
    kit = hedging(tmp_path, endpoints=(A,))
    client = kit.client()
    client.receive(GET)
    slow = kit.accept(A)
    kit.advance(PER_TRY)
    assert kit.connecting == []
    assert not slow.closed  # hedging on: a per-try timeout never abandons a try
    slow.receive(OK)
    assert messages(client.take()) == [b"HTTP/1.1 200 OK"]


def test_a_slow_breaker_probe_that_loses_the_race_is_released_as_failed(
    tmp_path: Path,
) -> None:
    """The loser's endpoint is freed whole: its in-flight count and its breaker probe."""
    kit = hedging(tmp_path, "  circuitBreaker: {consecutiveFailures: 1}\n")
    client = kit.client()
    client.receive(GET)
    upstream_a = kit.accept(A)
    upstream_a.receive(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
    assert status_of(client.take()) == 500
    assert kit.endpoint(A).state == "open-circuit"
    kit.advance(1.1)
    assert kit.endpoint(A).state == "probing"
    client.receive(GET)  # the probe, on A's pooled connection
    assert upstream_a.take().startswith(b"GET /x")
    assert not kit.endpoint(A).pickable  # one probe at a time
    kit.advance(PER_TRY)  # the probe is slow: hedged on B
    kit.accept(B).receive(OK)
    assert status_of(client.take()) == 200
    assert upstream_a.closed
    assert kit.endpoint(A).in_flight == 0
    assert kit.endpoint(A).state == "open-circuit"  # the probe failed: open again
