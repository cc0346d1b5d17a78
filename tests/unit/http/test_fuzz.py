"""Fuzzing the parsers: no input makes them fail other than by RemoteProtocolError,
and any well-formed request they are given comes back out unchanged."""

from __future__ import annotations

from h1_testkit import Recorder, parse_requests, split_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tulle.http import (
    RemoteProtocolError,
    RequestParser,
    ResponseParser,
    encode_chunk,
    encode_head,
    encode_last_chunk,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces of HTTP/1.1 that random bytes would rarely hit, to reach the parsers'
# deeper states (bodies, chunks, trailers, interim responses).
REQUEST_FRAGMENTS = [
    b"GET / HTTP/1.1\r\n", b"POST /p HTTP/1.1\r\n", b"HEAD * HTTP/1.0\r\n",
    b"GET http://a/ HTTP/1.1\r\n",
    b"Host: a\r\n", b"Content-Length: 3\r\n", b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip\r\n", b"Connection: close\r\n",
    b"Connection: keep-alive\r\n", b"Expect: 100-continue\r\n", b"Upgrade: websocket\r\n",
    b"Connection: upgrade\r\n", b"X: y\r\n", b"\r\n", b"\n", b"3\r\nabc\r\n", b"0\r\n",
    b"ff\r\n", b"abc", b" ", b":", b"\x00", b"HTTP/1.1",
]
RESPONSE_FRAGMENTS = [
    # 101 is left out: it raises HttpParserUpgrade, see test_response_parser's
    # test_unrequested_101_switching_protocols_is_502.
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n",
    b"HTTP/1.1 103 Early Hints\r\n", b"HTTP/1.1 204 No Content\r\n", b"HTTP/1.1 304 NM\r\n",
    b"HTTP/1.1 502 Bad Gateway\r\n", b"Content-Length: 3\r\n", b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n", b"X: y\r\n", b"\r\n", b"\n",
    b"3\r\nabc\r\n", b"0\r\n", b"abc", b" ", b":", b"\x00",
]


def pieces_of(data_strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    """The bytes, cut into the pieces they might arrive in."""
    return st.tuples(data_strategy, st.lists(st.integers(min_value=1, max_value=2000))).map(
        lambda pair: split_at(*pair)
    )


def soup(fragments: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.lists(st.one_of(st.sampled_from(fragments), st.binary(max_size=4)), max_size=30).map(
        b"".join
    )


def feed_requests(pieces: list[bytes]) -> None:
    parser = RequestParser(Recorder())
    try:
        for piece in pieces:
            parser.feed(piece)
    except RemoteProtocolError as error:
        assert error.status in (400, 431, 501, 505)
        assert error.reason


def feed_responses(pieces: list[bytes], head_request: bool) -> None:
    recorder = Recorder()
    parser = ResponseParser(recorder)
    if head_request:
        parser.expect_no_body()
    try:
        for piece in pieces:
            parser.feed(piece)
        parser.feed_eof()
    except RemoteProtocolError as error:
        assert error.status == 502
        assert error.reason
    assert all(m.head.status >= 200 for m in recorder.messages)


@FUZZ
@given(pieces=pieces_of(st.binary(max_size=500)))
def test_arbitrary_bytes_to_request_parser(pieces: list[bytes]) -> None:
    feed_requests(pieces)


@FUZZ
@given(pieces=pieces_of(soup(REQUEST_FRAGMENTS)))
def test_http_like_bytes_to_request_parser(pieces: list[bytes]) -> None:
    feed_requests(pieces)


@FUZZ
@given(pieces=pieces_of(st.binary(max_size=500)), head_request=st.booleans())
def test_arbitrary_bytes_to_response_parser(pieces: list[bytes], head_request: bool) -> None:
    feed_responses(pieces, head_request)


@FUZZ
@given(pieces=pieces_of(soup(RESPONSE_FRAGMENTS)), head_request=st.booleans())
def test_http_like_bytes_to_response_parser(pieces: list[bytes], head_request: bool) -> None:
    feed_responses(pieces, head_request)


# -- valid requests come back out unchanged -----------------------------------

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Framing and connection headers are chosen by the strategy itself.
RESERVED = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect"}
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "PROPFIND"]

header_names = st.text(TCHAR, min_size=1, max_size=20).filter(lambda n: n.lower() not in RESERVED)
# Visible ASCII and obs-text, spaces and tabs inside only (trailing whitespace is
# kept by the codec: see test_request_parser's trailing-OWS test).
header_values = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if (c >= 0x21 and c != 0x7F) or c in b" \t").strip(b" \t")
)
paths = st.text("abcXYZ0129-._~!$&'()*+,;=:@/%?", max_size=40).map(lambda p: "/" + p)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, bytes]:
    method = draw(st.sampled_from(METHODS)).encode()
    target = draw(paths).encode()
    headers = [(b"Host", b"svc.test")]
    headers += [(n.encode(), v) for n, v in draw(st.lists(st.tuples(header_names, header_values),
                                                           max_size=8))]
    body = draw(st.binary(max_size=300))
    if draw(st.booleans()):
        headers.append((b"Content-Length", b"%d" % len(body)))
        encoded_body = body
    else:
        headers.append((b"Transfer-Encoding", b"chunked"))
        cuts = draw(st.lists(st.integers(min_value=1, max_value=299), max_size=5))
        encoded_body = b"".join(encode_chunk(c) for c in split_at(body, cuts) if c)
        encoded_body += encode_last_chunk(None)
    data = encode_head(method + b" " + target + b" HTTP/1.1", headers) + encoded_body
    return data, method, headers, target, body


@FUZZ
@given(request=requests(), cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=8))
def test_valid_requests_parse_back_to_what_was_sent(
    request: tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, bytes], cuts: list[int]
) -> None:
    data, method, headers, target, body = request
    for pieces in ([data], split_at(data, cuts)):
        [message] = parse_requests(*pieces).messages
        assert (message.head.method, message.head.target) == (method, target)
        assert message.head.headers == headers
        assert (message.body, message.trailers, message.ended) == (body, None, True)


@FUZZ
@given(requests=st.lists(requests(), min_size=2, max_size=4))
def test_valid_pipelined_requests_parse_back_in_order(
    requests: list[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, bytes]],
) -> None:
    recorder = parse_requests(b"".join(r[0] for r in requests))
    assert [(m.head.method, m.head.target, m.body) for m in recorder.messages] == [
        (method, target, body) for _, method, _, target, body in requests
    ]
