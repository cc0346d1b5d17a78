"""RequestParser: what a client may send, what it comes out as, and what is refused.

Every refusal is a RemoteProtocolError whose ``status`` is the answer the proxy
gives before closing: 400 for malformed or smuggling-shaped requests, 431 for a
head over MAX_HEAD_BYTES.
"""

from __future__ import annotations

import pytest
from h1_testkit import Recorder, lines, parse_requests, split_at
from hypothesis import given, settings
from hypothesis import strategies as st

from tulle.http import MAX_HEAD_BYTES, RemoteProtocolError, RequestHead, RequestParser

GET = lines("GET /index.html?q=1 HTTP/1.1", "Host: example.test", "Accept: */*")
POST_CL = (
    lines("POST /submit HTTP/1.1", "Host: example.test", "Content-Length: 11") + b"hello world"
)
POST_CHUNKED = (
    lines("POST /upload HTTP/1.1", "Host: example.test", "Transfer-Encoding: chunked")
    + b"5\r\nhello\r\n"
    + b"6;ext=1\r\n world\r\n"
    + b"0\r\nX-Checksum: abc\r\nX-Count: 2\r\n\r\n"
)
PIPELINE = GET + POST_CL + POST_CHUNKED + GET


def only_head(data: bytes) -> RequestHead:
    recorder = parse_requests(data)
    [message] = recorder.messages
    assert message.ended
    assert isinstance(message.head, RequestHead)
    return message.head


def rejection(*pieces: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_requests(*pieces)
    return caught.value


# -- what comes out -----------------------------------------------------------


def test_simple_get() -> None:
    recorder = parse_requests(GET)
    assert recorder.events == ["head", "end"]
    [message] = recorder.messages
    head = message.head
    assert (head.method, head.target, head.version) == (b"GET", b"/index.html?q=1", "1.1")
    assert head.headers == [(b"Host", b"example.test"), (b"Accept", b"*/*")]
    assert head.host == b"example.test"
    assert (head.content_length, head.chunked, head.has_body) == (None, False, False)
    assert head.keep_alive is True
    assert head.expect_continue is False
    assert (message.body, message.trailers) == (b"", None)


def test_header_names_and_values_are_kept_as_received() -> None:
    head = only_head(lines("GET / HTTP/1.1", "hOsT: a", "X-Thing:   spaced"))
    assert head.headers == [(b"hOsT", b"a"), (b"X-Thing", b"spaced")]
    assert head.header(b"x-thing") == b"spaced"
    assert head.header(b"missing") is None


def test_content_length_body() -> None:
    [message] = parse_requests(POST_CL).messages
    assert message.head.content_length == 11
    assert message.head.has_body
    assert (message.body, message.trailers, message.ended) == (b"hello world", None, True)


def test_content_length_zero_has_no_body() -> None:
    recorder = parse_requests(lines("POST / HTTP/1.1", "Host: a", "Content-Length: 0"))
    assert recorder.events == ["head", "end"]
    assert recorder.messages[0].head.has_body is False


def test_chunked_body_with_trailers_in_on_end_not_in_headers() -> None:
    [message] = parse_requests(POST_CHUNKED).messages
    assert message.head.chunked and message.head.content_length is None
    assert message.head.headers == [
        (b"Host", b"example.test"), (b"Transfer-Encoding", b"chunked"),
    ]
    assert message.body == b"hello world"
    assert message.trailers == [(b"X-Checksum", b"abc"), (b"X-Count", b"2")]


def test_chunked_body_without_trailers_ends_with_none() -> None:
    data = lines("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked")
    data += b"2\r\nhi\r\n0\r\n\r\n"
    [message] = parse_requests(data).messages
    assert (message.body, message.trailers, message.ended) == (b"hi", None, True)


def test_pipelined_requests_in_one_feed_come_out_in_order() -> None:
    recorder = parse_requests(PIPELINE)
    heads = [(m.head.method, m.head.target) for m in recorder.messages]
    assert heads == [(b"GET", b"/index.html?q=1"), (b"POST", b"/submit"),
                     (b"POST", b"/upload"), (b"GET", b"/index.html?q=1")]
    assert [m.body for m in recorder.messages] == [b"", b"hello world", b"hello world", b""]
    assert [m.trailers for m in recorder.messages] == [
        None, None, [(b"X-Checksum", b"abc"), (b"X-Count", b"2")], None,
    ]
    # Each message is closed before the next one opens.
    collapsed = [e for i, e in enumerate(recorder.events) if e != "body" or
                 recorder.events[i - 1] != "body"]
    assert collapsed == ["head", "end", "head", "body", "end",
                         "head", "body", "end", "head", "end"]


@pytest.mark.parametrize("reads", [[b"A"], [b"A", b"A"], [b"B"], [b"B", b"A"], [b"A", b"B"]])
def test_a_read_ending_in_a_blank_line_ends_its_first_head_at_the_first_one(
        reads: list[bytes]) -> None:
    """A read that ends in a blank line is most often one head and nothing else; when it
    holds more (pipelined requests, a body that ends in a blank line), its first head
    still ends at its first blank line."""
    get = lines("GET /a HTTP/1.1", "Host: a")
    post = lines("POST /b HTTP/1.1", "Host: a", "Content-Length: 4") + b"\r\n\r\n"
    messages = {b"A": (get, (b"/a", b"")), b"B": (post, (b"/b", b"\r\n\r\n"))}
    recorder = parse_requests(b"".join(messages[name][0] for name in reads))
    assert [(m.head.target, m.body) for m in recorder.messages] == [
        messages[name][1] for name in reads]
    assert all(m.ended for m in recorder.messages)


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(PIPELINE) - 1), max_size=40))
def test_any_split_of_the_stream_gives_the_same_messages(cuts: list[int]) -> None:
    whole = parse_requests(PIPELINE).summary()
    assert parse_requests(*split_at(PIPELINE, cuts)).summary() == whole


def test_one_byte_at_a_time_gives_the_same_messages() -> None:
    pieces = [PIPELINE[i:i + 1] for i in range(len(PIPELINE))]
    assert parse_requests(*pieces).summary() == parse_requests(PIPELINE).summary()


# llhttp calls back per header only from the first chunked head on (see the parser's
# module note): that head is parsed again from its first byte, wherever it began.


def test_per_header_callbacks_are_off_until_a_chunked_head_and_stay_on_after() -> None:
    recorder = Recorder()
    parser = RequestParser(recorder)
    parser.feed(GET + POST_CL)
    assert not parser.per_header_callbacks
    parser.feed(POST_CHUNKED[:30])  # the chunked head begins: nothing is known yet
    assert not parser.per_header_callbacks
    parser.feed(POST_CHUNKED[30:] + GET)
    assert parser.per_header_callbacks
    assert recorder.summary() == parse_requests(PIPELINE).summary()
    assert [e for e in recorder.events if e != "body"] == ["head", "end"] * 4


def test_a_head_parsed_again_gives_the_same_messages_wherever_one_read_ends() -> None:
    whole = parse_requests(PIPELINE).summary()
    for cut in range(1, len(PIPELINE)):
        assert parse_requests(PIPELINE[:cut], PIPELINE[cut:]).summary() == whole, cut


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        ("1.0", None, False),
        ("1.0", "keep-alive", True),
        ("1.0", "Keep-Alive", True),
        ("1.0", "close", False),
        ("1.1", None, True),
        ("1.1", "close", False),
        ("1.1", "Close", False),
        ("1.1", "keep-alive", True),
    ],
)
def test_keep_alive_follows_version_and_connection(
    version: str, connection: str | None, keep_alive: bool
) -> None:
    head_lines = [f"GET / HTTP/{version}", "Host: a"]
    if connection is not None:
        head_lines.append(f"Connection: {connection}")
    head = only_head(lines(*head_lines))
    assert head.version == version
    assert head.keep_alive is keep_alive


def test_http_1_0_may_omit_host() -> None:
    head = only_head(lines("GET / HTTP/1.0"))
    assert head.host is None


@pytest.mark.parametrize("value", ["100-continue", "100-Continue"])
def test_expect_100_continue_is_flagged(value: str) -> None:
    data = lines("PUT /x HTTP/1.1", "Host: a", f"Expect: {value}", "Content-Length: 0")
    assert only_head(data).expect_continue is True


def test_expect_100_continue_with_trailing_whitespace_is_flagged() -> None:
    data = lines("PUT /x HTTP/1.1", "Host: a", "Expect: 100-continue  ", "Content-Length: 0")
    assert only_head(data).expect_continue is True


def test_other_expectations_are_not_100_continue() -> None:
    assert only_head(lines("GET / HTTP/1.1", "Host: a", "Expect: x-other")).expect_continue is False


def test_absolute_form_target_is_kept_as_is() -> None:
    data = lines("GET http://upstream.test:8080/a/b?c=d#e HTTP/1.1", "Host: upstream.test:8080")
    head = only_head(data)
    assert head.target == b"http://upstream.test:8080/a/b?c=d#e"
    assert head.host == b"upstream.test:8080"


def test_target_split_across_feeds_is_joined() -> None:
    data = lines("GET /a/very/long/path?x=1 HTTP/1.1", "Host: a")
    recorder = parse_requests(data[:9], data[9:14], data[14:])
    assert recorder.messages[0].head.target == b"/a/very/long/path?x=1"


# -- what is refused ----------------------------------------------------------

REJECTED = {
    "missing Host on HTTP/1.1": lines("GET / HTTP/1.1", "Accept: */*"),
    "two Host headers": lines("GET / HTTP/1.1", "Host: a", "Host: b"),
    "two equal Host headers": lines("GET / HTTP/1.1", "Host: a", "Host: a"),
    "Content-Length with Transfer-Encoding": lines(
        "POST / HTTP/1.1", "Host: a", "Content-Length: 3", "Transfer-Encoding: chunked"
    ) + b"abc",
    "Transfer-Encoding with Content-Length": lines(
        "POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Content-Length: 3"
    ) + b"abc",
    "two different Content-Lengths": lines(
        "POST / HTTP/1.1", "Host: a", "Content-Length: 3", "Content-Length: 4"
    ) + b"abcd",
    # RFC 9110 §8.6 lets a recipient accept equal duplicates; llhttp refuses them.
    "two equal Content-Lengths": lines(
        "POST / HTTP/1.1", "Host: a", "Content-Length: 3", "Content-Length: 3"
    ) + b"abc",
    "Content-Length not a number": lines("POST / HTTP/1.1", "Host: a", "Content-Length: 3x"),
    "negative Content-Length": lines("POST / HTTP/1.1", "Host: a", "Content-Length: -1"),
    "Transfer-Encoding gzip only": lines(
        "POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip"
    ) + b"abc",
    "Transfer-Encoding chunked then gzip": lines(
        "POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked, gzip"
    ) + b"abc",
    "bare LF line ends": b"GET / HTTP/1.1\nHost: a\n\n",
    "bare LF after a header": b"GET / HTTP/1.1\r\nHost: a\nAccept: */*\r\n\r\n",
    "invalid method": lines("G@T / HTTP/1.1", "Host: a"),
    "lower-case method": lines("get / HTTP/1.1", "Host: a"),
    "garbage": b"\x00\x01\x02garbage\r\n\r\n",
    "TLS hello on a plain port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "space before colon": lines("GET / HTTP/1.1", "Host : a"),
    "obs-fold continuation line": lines("GET / HTTP/1.1", "Host: a", "X: a", " b"),
    "bad chunk size": lines(
        "POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked"
    ) + b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk longer than its size": lines(
        "POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked"
    ) + b"2\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("data", REJECTED.values(), ids=REJECTED.keys())
def test_malformed_or_ambiguous_requests_are_400(data: bytes) -> None:
    error = rejection(data)
    assert error.status == 400
    assert error.reason


@pytest.mark.parametrize("data", REJECTED.values(), ids=REJECTED.keys())
def test_refusal_does_not_depend_on_how_bytes_arrive(data: bytes) -> None:
    error = rejection(*[data[i:i + 1] for i in range(len(data))])
    assert error.status == 400


def test_missing_host_reason_names_the_header() -> None:
    assert "Host" in rejection(lines("GET / HTTP/1.1")).reason


def test_a_websocket_upgrade_is_a_head_then_a_switch_with_what_followed() -> None:
    data = lines("GET /chat HTTP/1.1", "Host: a", "Connection: Upgrade", "Upgrade: websocket",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
    for pieces in ([data + b"\x81\x05hello"], [data[:20], data[20:] + b"\x81\x05hello"]):
        recorder = parse_requests(*pieces)
        assert recorder.events == ["head", "upgrade"]
        head = recorder.messages[0].head
        assert isinstance(head, RequestHead)
        assert head.protocol == b"websocket"
        # Connection and Upgrade are hop-by-hop: the writer sets them again for the switch.
        assert [line.split(b":")[0].lower() for line in (head.forward or b"").split(b"\r\n")
                if line] == [b"host", b"sec-websocket-key"]
        assert recorder.tail == b"\x81\x05hello"


def test_connect_is_a_switch_without_a_head_first() -> None:
    recorder = parse_requests(
        lines("CONNECT upstream.test:443 HTTP/1.1", "Host: upstream.test:443") + b"\x16\x03\x01")
    assert recorder.events == ["upgrade"]
    head = recorder.messages[0].head
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.protocol) == (b"CONNECT", b"upstream.test:443", None)
    assert recorder.tail == b"\x16\x03\x01"


def test_upgrade_without_connection_upgrade_is_an_ordinary_request() -> None:
    recorder = parse_requests(lines("GET / HTTP/1.1", "Host: a", "Upgrade: websocket"),
                              lines("GET /2 HTTP/1.1", "Host: a"))
    assert recorder.events == ["head", "end", "head", "end"]
    assert recorder.messages[0].head.protocol is None  # type: ignore[union-attr]


def test_an_upgrade_with_a_body_is_400() -> None:
    error = rejection(lines("POST /chat HTTP/1.1", "Host: a", "Connection: upgrade",
                            "Upgrade: websocket", "Content-Length: 3") + b"abc")
    assert error.status == 400
    assert "body" in error.reason


def test_h2c_is_a_switch_without_a_head_first() -> None:
    """``Upgrade: h2c`` is answered by the proxy itself (it becomes HTTP/2's stream 1),
    so like a CONNECT its head goes only to on_upgrade, with what followed it."""
    recorder = parse_requests(
        lines("GET / HTTP/1.1", "Host: a", "Connection: Upgrade, HTTP2-Settings",
              "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA") + b"PRI * HTTP/2.0")
    assert recorder.events == ["upgrade"]
    head = recorder.messages[0].head
    assert head.protocol == b"h2c"  # type: ignore[union-attr]
    assert recorder.tail == b"PRI * HTTP/2.0"


# -- the 64 KiB head limit ----------------------------------------------------


def padded_head(total: int) -> bytes:
    """A valid GET head of exactly ``total`` bytes."""
    start = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"p" * (total - len(start) - len(end)) + end


def test_head_of_exactly_64_kib_is_accepted() -> None:
    data = padded_head(MAX_HEAD_BYTES)
    assert len(data) == MAX_HEAD_BYTES
    assert only_head(data).method == b"GET"


# The cap counts the request target and header fields (not every framing byte),
# so "over" below means over by a margin.
OVER = MAX_HEAD_BYTES + 256


def test_head_over_64_kib_is_431() -> None:
    assert rejection(padded_head(OVER)).status == 431


def test_head_over_64_kib_in_many_small_pieces_is_431() -> None:
    data = padded_head(OVER)
    assert rejection(*[data[i:i + 100] for i in range(0, len(data), 100)]).status == 431


def test_one_endless_header_line_is_431_before_it_ends() -> None:
    line = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * (MAX_HEAD_BYTES + 2000)
    assert rejection(*[line[i:i + 1000] for i in range(0, len(line), 1000)]).status == 431


def test_target_over_64_kib_is_431() -> None:
    data = lines(f"GET /{'t' * MAX_HEAD_BYTES} HTTP/1.1", "Host: a")
    assert rejection(data).status == 431


def test_many_headers_over_64_kib_in_small_feeds_is_431() -> None:
    many = [b"X-H-%d: %s" % (i, b"v" * 40) for i in range(2000)]
    pieces = [b"GET / HTTP/1.1\r\nHost: a\r\n", *(h + b"\r\n" for h in many), b"\r\n"]
    assert rejection(*pieces).status == 431


def test_head_limit_applies_to_each_request_of_a_connection() -> None:
    # Many small requests one after another never add up to the limit.
    recorder = parse_requests(*[GET] * (2 * MAX_HEAD_BYTES // len(GET)))
    assert len(recorder.messages) == 2 * MAX_HEAD_BYTES // len(GET)


def test_large_body_fed_after_its_head_is_not_counted_as_head() -> None:
    body = b"b" * (2 * MAX_HEAD_BYTES)
    head = lines("POST / HTTP/1.1", "Host: a", f"Content-Length: {len(body)}")
    [message] = parse_requests(head, body).messages
    assert message.body == body


@pytest.mark.parametrize("shape", ["large body", "many pipelined requests"])
def test_bytes_after_the_head_in_the_same_feed_are_not_head_bytes(shape: str) -> None:
    if shape == "large body":
        body = b"b" * (MAX_HEAD_BYTES + 1)
        data = lines("POST / HTTP/1.1", "Host: a", f"Content-Length: {len(body)}") + body
        expected = 1
    else:
        expected = MAX_HEAD_BYTES // len(GET) + 1
        data = GET * expected
    assert len(parse_requests(data).messages) == expected


def test_trailers_count_against_the_head_size_cap() -> None:
    head = lines("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked")
    trailers = b"".join(b"x-trailer-%d: %s\r\n" % (i, b"v" * 100) for i in range(1000))
    with pytest.raises(RemoteProtocolError) as caught:
        parse_requests(head + b"1\r\nx\r\n0\r\n" + trailers + b"\r\n")
    assert caught.value.status == 431


# -- decided before the head is handed on (issue 15, #7 #8 #9) -----------------
#
# A refusal of the head must come before ``on_head``: the proxy forwards a head
# as soon as it has it, so a refusal after it reaches the backend too late.


def refused_before_head(*pieces: bytes) -> RemoteProtocolError:
    recorder = Recorder()
    parser = RequestParser(recorder)
    with pytest.raises(RemoteProtocolError) as caught:
        for piece in pieces:
            parser.feed(piece)
    assert recorder.events == [], "the head reached the handler before the refusal"
    return caught.value


def post_with_te(*values: str, version: str = "1.1") -> bytes:
    te = [f"Transfer-Encoding: {value}" for value in values]
    return lines(f"POST / HTTP/{version}", "Host: a", *te) + b"3\r\nabc\r\n0\r\n\r\n"


# RFC 9112 §6.3 ¶4: chunked not the final coding of a request → 400, the
# length of the body cannot be determined.
CHUNKED_NOT_FINAL = {
    "xchunked": post_with_te("xchunked"),
    "chunkedx": post_with_te("chunkedx"),
    "gzip": post_with_te("gzip"),
    "identity": post_with_te("identity"),
    "chunked with a parameter": post_with_te("chunked;q=1"),
    "chunked then gzip": post_with_te("chunked, gzip"),
    "chunked then gzip on two lines": post_with_te("chunked", "gzip"),
    "chunked twice": post_with_te("chunked, chunked"),
}


@pytest.mark.parametrize("data", CHUNKED_NOT_FINAL.values(), ids=CHUNKED_NOT_FINAL.keys())
def test_transfer_encoding_without_a_final_chunked_is_400_before_the_head(data: bytes) -> None:
    error = refused_before_head(data)
    assert error.status == 400
    assert "Transfer-Encoding" in error.reason


@pytest.mark.parametrize("data", CHUNKED_NOT_FINAL.values(), ids=CHUNKED_NOT_FINAL.keys())
def test_transfer_encoding_refusal_byte_by_byte_is_also_before_the_head(data: bytes) -> None:
    assert refused_before_head(*[data[i:i + 1] for i in range(len(data))]).status == 400


# RFC 9112 §6.1: a coding the server does not implement → 501 (nginx's answer
# too). Tulle would have to forward the coding as it came, and its writer knows
# only chunked; decoding chunked and dropping the rest would change the body.
OTHER_CODING_THEN_CHUNKED = {
    "gzip, chunked": post_with_te("gzip, chunked"),
    "identity, chunked": post_with_te("identity, chunked"),
    "deflate,chunked": post_with_te("deflate,chunked"),
    "gzip and chunked on two lines": post_with_te("gzip", "chunked"),
    "unknown coding, chunked": post_with_te("x-custom, chunked"),
}


@pytest.mark.parametrize(
    "data", OTHER_CODING_THEN_CHUNKED.values(), ids=OTHER_CODING_THEN_CHUNKED.keys()
)
def test_a_coding_before_the_final_chunked_is_501_not_silently_dropped(data: bytes) -> None:
    error = refused_before_head(data)
    assert error.status == 501
    assert "Transfer-Encoding" in error.reason


def test_transfer_encoding_on_http_1_0_is_400() -> None:
    # RFC 9112 §6.1: HTTP/1.0 has no Transfer-Encoding; the framing is faulty.
    assert refused_before_head(post_with_te("chunked", version="1.0")).status == 400


@pytest.mark.parametrize(
    "value", ["chunked", "CHUNKED", "Chunked", "chunked  ", ",chunked", " , chunked"]
)
def test_a_lone_chunked_in_any_case_is_chunked(value: str) -> None:
    [message] = parse_requests(post_with_te(value)).messages
    assert message.head.chunked
    assert message.body == b"abc"


# RFC 9110 §15.6.6: 505 for a version of HTTP we do not speak. llhttp refuses
# most version numbers itself ("Invalid HTTP version"), and that becomes 505
# too; a version that is not even shaped like one (HTTP/1.a) stays 400.
UNSUPPORTED_VERSIONS = {
    "HTTP/0.9 (no version)": b"GET /\r\n\r\n",
    "HTTP/0.9 with a Host": b"GET /\r\nHost: a\r\n\r\n",
    "HTTP/0.9 spelled out": lines("GET / HTTP/0.9", "Host: a"),
    "HTTP/2.0": lines("GET / HTTP/2.0", "Host: a"),
    "HTTP/3.7": lines("GET / HTTP/3.7", "Host: a"),
    "HTTP/1.2": lines("GET / HTTP/1.2", "Host: a"),
    "HTTP/4.0": lines("GET / HTTP/4.0", "Host: a"),
    # Found by the codec fuzzer: no space before "HTTP/1.1", so it is the target's end and
    # the request is HTTP/0.9 (the version is not read from the line's last 8 bytes).
    "HTTP/0.9 whose target ends in HTTP/1.1": b"POST /HTTP/1.1\r\nHost:a \r\n\r\n",
}


@pytest.mark.parametrize("data", UNSUPPORTED_VERSIONS.values(), ids=UNSUPPORTED_VERSIONS.keys())
def test_unsupported_http_versions_are_505_before_the_head(data: bytes) -> None:
    error = refused_before_head(data)
    assert error.status == 505
    assert "version" in error.reason


@pytest.mark.parametrize("version", ["HTTP/1.a", "HTTP/2", "HTTP/11", "HTTP/1.1x"])
def test_malformed_versions_are_400(version: str) -> None:
    assert refused_before_head(lines(f"GET / {version}", "Host: a")).status == 400


def test_http_1_0_without_host_reaches_the_handler() -> None:
    # The proxy adds a Host when it forwards it as HTTP/1.1 (its writer's job).
    head = only_head(lines("GET /x HTTP/1.0", "Accept: */*"))
    assert (head.version, head.host, head.target) == ("1.0", None, b"/x")


# RFC 9110 §4.2.4: a sender must not put userinfo in an http(s) URI, and a
# recipient should treat it as an error: it is how a link disguises its host.
USERINFO = {
    "absolute-form target": lines("GET http://web:x@evil/p HTTP/1.1", "Host: web"),
    "absolute-form, user only": lines("GET http://user@web/ HTTP/1.1", "Host: web"),
    "absolute-form, no path": lines("GET http://web@evil HTTP/1.1", "Host: web"),
    "Host header": lines("GET / HTTP/1.1", "Host: web:80@evil.com"),
    "Host header, HTTP/1.0": lines("GET / HTTP/1.0", "Host: web@evil"),
}


@pytest.mark.parametrize("data", USERINFO.values(), ids=USERINFO.keys())
def test_userinfo_in_the_authority_is_400_before_the_head(data: bytes) -> None:
    error = refused_before_head(data)
    assert error.status == 400
    assert "userinfo" in error.reason


@pytest.mark.parametrize(
    "target", [b"/a@b", b"/p?mail=a@b", b"http://web/a@b", b"http://web?x=a@b", b"*"]
)
def test_an_at_sign_outside_the_authority_is_fine(target: bytes) -> None:
    method = b"OPTIONS" if target == b"*" else b"GET"
    assert only_head(lines(method + b" " + target + b" HTTP/1.1", "Host: web")).target == target


# -- trailers a proxy must not forward (issue 15, #11) --------------------------


def test_trailers_rfc_9110_forbids_are_dropped_and_the_rest_kept() -> None:
    data = lines("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked")
    data += b"3\r\nabc\r\n0\r\n"
    data += b"X-Checksum: 1\r\nHost: evil\r\nAuthorization: Bearer x\r\n"
    data += b"Content-Type: text/evil\r\nX-Forwarded-For: 6.6.6.6\r\nCookie: s=1\r\n"
    data += b"If-Match: *\r\nGrpc-Status: 0\r\n\r\n"
    [message] = parse_requests(data).messages
    assert message.trailers == [(b"X-Checksum", b"1"), (b"Grpc-Status", b"0")]


def test_trailers_that_are_all_forbidden_end_with_none() -> None:
    data = lines("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked")
    data += b"0\r\nHost: evil\r\n\r\n"
    [message] = parse_requests(data).messages
    assert (message.trailers, message.ended) == (None, True)


# -- heads read from the bytes, or collected from llhttp's callbacks ---------------


def test_a_head_after_a_chunked_body_in_the_same_read_is_read_the_same() -> None:
    """Where a request begins after a chunked body cannot be known without decoding the
    chunks again, so its head is collected from llhttp's callbacks instead of cut from
    the bytes: it must come out the same, down to what is forwarded."""
    from tulle.http.h1.writer import request_head

    get = lines("GET /x HTTP/1.1", "Host: web", "Connection: keep-alive, x-drop",
                "X-Drop: 1", "X-Forwarded-For: 10.0.0.1", "Accept: */*")
    chunked = lines("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked") + b"0\r\n\r\n"
    alone = parse_requests(get).messages[0].head
    after = parse_requests(chunked + get).messages[1].head
    assert [(n, v) for n, v in after.headers] == [(n, v) for n, v in alone.headers]
    assert request_head(after, b"10.0.0.9", b"web:80") == request_head(alone, b"10.0.0.9",
                                                                       b"web:80")
    forwarded = request_head(alone, b"10.0.0.9", b"web:80")
    assert b"x-drop" not in forwarded.lower() and b"connection" not in forwarded.lower()
    assert b"X-Forwarded-For: 10.0.0.1, 10.0.0.9\r\n" in forwarded


def test_empty_lines_before_a_request_line_are_skipped() -> None:
    head = only_head(b"\r\n\r\n" + lines("GET /a HTTP/1.1", "Host: web"))
    assert (head.method, head.target, head.host) == (b"GET", b"/a", b"web")


@pytest.mark.parametrize("line", ["GET  /a HTTP/1.1", "GET /a  HTTP/1.1", "GET   /a   HTTP/1.1"])
def test_the_target_is_the_same_whatever_spaces_llhttp_lets_around_it(line: str) -> None:
    """Found by the codec fuzzer: with two spaces the target was read as b" /a" from the
    bytes, but as b"/a" when the head was collected from llhttp's callbacks."""
    recorder = parse_requests(lines(line, "Host: a"))
    assert [m.head.target for m in recorder.messages] == [b"/a"]
