"""encode_head, encode_chunk and encode_last_chunk write what the parsers read back."""

from __future__ import annotations

import pytest
from h1_testkit import parse_requests, parse_responses

from tulle.http import (
    CONTINUE,
    encode_chunk,
    encode_head,
    encode_last_chunk,
    reason_phrase,
)


def test_encode_head_writes_start_line_headers_and_blank_line() -> None:
    head = encode_head(b"GET /a HTTP/1.1", [(b"Host", b"x"), (b"Accept", b"*/*")])
    assert head == b"GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"


def test_encode_head_without_headers() -> None:
    assert encode_head(b"HTTP/1.1 204 No Content", []) == b"HTTP/1.1 204 No Content\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "encoded"),
    [
        (b"a", b"1\r\na\r\n"),
        (b"hello world", b"b\r\nhello world\r\n"),
        (b"x" * 255, b"ff\r\n" + b"x" * 255 + b"\r\n"),
        (b"\r\n0\r\n\r\n", b"7\r\n\r\n0\r\n\r\n\r\n"),  # the size frames it; content is opaque
    ],
)
def test_encode_chunk_writes_hex_size_then_data(data: bytes, encoded: bytes) -> None:
    assert encode_chunk(data) == encoded


def test_encode_last_chunk_without_trailers() -> None:
    assert encode_last_chunk(None) == b"0\r\n\r\n"
    assert encode_last_chunk([]) == b"0\r\n\r\n"


def test_encode_last_chunk_with_trailers() -> None:
    assert encode_last_chunk([(b"Grpc-Status", b"0"), (b"X-Sum", b"ab")]) == (
        b"0\r\nGrpc-Status: 0\r\nX-Sum: ab\r\n\r\n"
    )


def test_request_with_content_length_round_trips() -> None:
    headers = [(b"Host", b"svc.test"), (b"Content-Length", b"4"), (b"X-Id", b"7")]
    [message] = parse_requests(encode_head(b"PUT /k HTTP/1.1", headers) + b"data").messages
    assert (message.head.method, message.head.target) == (b"PUT", b"/k")
    assert message.head.headers == headers
    assert (message.body, message.trailers) == (b"data", None)


@pytest.mark.parametrize("trailers", [None, [(b"X-Checksum", b"c0ffee"), (b"X-N", b"3")]])
def test_chunked_request_round_trips(trailers: list[tuple[bytes, bytes]] | None) -> None:
    headers = [(b"Host", b"svc.test"), (b"Transfer-Encoding", b"chunked")]
    pieces = [b"one ", b"two ", b"x" * 1000]
    data = (
        encode_head(b"POST /stream HTTP/1.1", headers)
        + b"".join(encode_chunk(p) for p in pieces)
        + encode_last_chunk(trailers)
    )
    [message] = parse_requests(data).messages
    assert message.head.headers == headers
    assert message.body == b"".join(pieces)
    assert message.trailers == trailers


@pytest.mark.parametrize("trailers", [None, [(b"Grpc-Status", b"0")]])
def test_chunked_response_round_trips(trailers: list[tuple[bytes, bytes]] | None) -> None:
    data = (
        encode_head(b"HTTP/1.1 200 OK", [(b"Transfer-Encoding", b"chunked")])
        + encode_chunk(b"payload")
        + encode_last_chunk(trailers)
    )
    [message] = parse_responses(data).messages
    assert (message.head.status, message.body, message.trailers) == (200, b"payload", trailers)


def test_response_with_a_known_reason_phrase_round_trips() -> None:
    start = b"HTTP/1.1 502 " + reason_phrase(502)
    data = encode_head(start, [(b"Content-Length", b"3")]) + b"bad"
    [message] = parse_responses(data).messages
    assert (message.head.status, message.head.reason, message.body) == (502, b"Bad Gateway", b"bad")


@pytest.mark.parametrize(
    ("status", "phrase"),
    [(200, b"OK"), (400, b"Bad Request"), (431, b"Request Header Fields Too Large"),
     (503, b"Service Unavailable"), (504, b"Gateway Timeout"), (299, b"")],
)
def test_reason_phrase(status: int, phrase: bytes) -> None:
    assert reason_phrase(status) == phrase


def test_interim_responses_are_handed_on_before_the_final_one() -> None:
    final = encode_head(b"HTTP/1.1 201 Created", [(b"Content-Length", b"0")])
    hints = encode_head(b"HTTP/1.1 103 Early Hints", [(b"Link", b"</a.css>; rel=preload")])
    recorder = parse_responses(CONTINUE + hints + final)
    assert [h.status for h in recorder.interim] == [100, 103]
    assert recorder.interim[1].headers == [(b"Link", b"</a.css>; rel=preload")]
    assert [m.head.status for m in recorder.messages] == [201]
    assert recorder.events[:2] == ["interim", "interim"]
