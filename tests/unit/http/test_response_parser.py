"""ResponseParser: how an upstream's responses are framed and handed on.

The proxy tells the parser what only it knows (the request was HEAD:
``expect_no_body``; the connection closed: ``feed_eof``). Interim 1xx responses
never reach the handler. Bytes the parser cannot accept are the upstream's fault:
RemoteProtocolError with status 502.
"""

from __future__ import annotations

import pytest
from h1_testkit import Recorder, lines, parse_responses, split_at
from hypothesis import given, settings
from hypothesis import strategies as st

from tulle.http import MAX_HEAD_BYTES, RemoteProtocolError, ResponseHead, ResponseParser

OK_CL = lines("HTTP/1.1 200 OK", "Content-Type: text/plain", "Content-Length: 5") + b"hello"
OK_CHUNKED = (
    lines("HTTP/1.1 200 OK", "Transfer-Encoding: chunked")
    + b"3\r\nhel\r\n2\r\nlo\r\n0\r\nGrpc-Status: 0\r\nServer-Timing: db;dur=53\r\n\r\n"
)
NOT_FOUND = lines("HTTP/1.1 404 Not Found", "Content-Length: 9") + b"not found"
STREAM = OK_CL + OK_CHUNKED + NOT_FOUND


def parser_and_recorder() -> tuple[ResponseParser, Recorder]:
    recorder = Recorder()
    return ResponseParser(recorder), recorder


def test_content_length_body() -> None:
    [message] = parse_responses(OK_CL).messages
    head = message.head
    assert isinstance(head, ResponseHead)
    assert (head.status, head.reason, head.version) == (200, b"OK", "1.1")
    assert head.headers == [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")]
    assert (head.content_length, head.chunked, head.keep_alive) == (5, False, True)
    assert (message.body, message.trailers, message.ended) == (b"hello", None, True)


def test_chunked_body_with_trailers_in_on_end_not_in_headers() -> None:
    [message] = parse_responses(OK_CHUNKED).messages
    assert message.head.chunked
    assert message.head.headers == [(b"Transfer-Encoding", b"chunked")]
    assert message.body == b"hello"
    assert message.trailers == [(b"Grpc-Status", b"0"), (b"Server-Timing", b"db;dur=53")]


def test_responses_one_after_another_on_one_connection() -> None:
    recorder = parse_responses(STREAM)
    assert [m.head.status for m in recorder.messages] == [200, 200, 404]
    assert [m.body for m in recorder.messages] == [b"hello", b"hello", b"not found"]


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=40))
def test_any_split_of_the_stream_gives_the_same_messages(cuts: list[int]) -> None:
    whole = parse_responses(STREAM).summary()
    assert parse_responses(*split_at(STREAM, cuts)).summary() == whole


def test_the_first_chunked_response_turns_on_per_header_callbacks_and_keeps_its_trailers(
) -> None:
    parser, recorder = parser_and_recorder()
    parser.feed(OK_CL)
    assert not parser.per_header_callbacks
    parser.feed(OK_CHUNKED)
    assert parser.per_header_callbacks
    parser.feed(NOT_FOUND)
    assert recorder.summary() == parse_responses(STREAM).summary()
    assert [m.trailers for m in recorder.messages] == [
        None, [(b"Grpc-Status", b"0"), (b"Server-Timing", b"db;dur=53")], None]
    assert [m.head.status for m in recorder.messages] == [200, 200, 404]


def test_a_response_parsed_again_gives_the_same_messages_wherever_one_read_ends() -> None:
    whole = parse_responses(STREAM).summary()
    for cut in range(1, len(STREAM)):
        assert parse_responses(STREAM[:cut], STREAM[cut:]).summary() == whole, cut


def test_http_1_0_response_is_not_keep_alive() -> None:
    [message] = parse_responses(lines("HTTP/1.0 200 OK", "Content-Length: 0")).messages
    assert (message.head.version, message.head.keep_alive) == ("1.0", False)


def test_connection_close_is_not_keep_alive() -> None:
    data = lines("HTTP/1.1 200 OK", "Connection: close", "Content-Length: 0")
    assert parse_responses(data).messages[0].head.keep_alive is False


# -- responses without a body -------------------------------------------------


@pytest.mark.parametrize(("status", "reason"), [(204, "No Content"), (304, "Not Modified")])
def test_204_and_304_have_no_body_even_with_content_length(status: int, reason: str) -> None:
    no_body = lines(f"HTTP/1.1 {status} {reason}", "Content-Length: 42", "ETag: \"x\"")
    recorder = parse_responses(no_body + OK_CL)
    assert recorder.events == ["head", "end", "head", "body", "end"]
    first, second = recorder.messages
    assert (first.head.status, first.body) == (status, b"")
    assert first.head.content_length == 42  # as sent; it describes the would-be body
    assert (second.head.status, second.body) == (200, b"hello")


def test_head_response_ends_with_its_head() -> None:
    parser, recorder = parser_and_recorder()
    parser.expect_no_body()
    parser.feed(lines("HTTP/1.1 200 OK", "Content-Length: 1234"))
    assert recorder.events == ["head", "end"]
    assert recorder.messages[0].head.content_length == 1234
    assert not parser.mid_message
    assert parser.feed_eof() is False


@pytest.mark.parametrize(
    "framing",
    [["Content-Length: 1234"], ["Transfer-Encoding: chunked"], []],
    ids=["content-length", "chunked", "no framing"],
)
def test_after_a_head_response_the_next_response_parses_normally(framing: list[str]) -> None:
    parser, recorder = parser_and_recorder()
    parser.expect_no_body()
    parser.feed(lines("HTTP/1.1 200 OK", *framing))
    parser.feed(NOT_FOUND)
    parser.feed(OK_CHUNKED)
    assert recorder.events == ["head", "end", "head", "body", "end", "head", "body", "body", "end"]
    assert [m.head.status for m in recorder.messages] == [200, 404, 200]
    assert [m.body for m in recorder.messages] == [b"", b"not found", b"hello"]
    assert recorder.messages[2].trailers == [
        (b"Grpc-Status", b"0"), (b"Server-Timing", b"db;dur=53"),
    ]
    assert recorder.stray_body == b""


def test_expect_no_body_applies_to_the_next_response_only() -> None:
    parser, recorder = parser_and_recorder()
    parser.expect_no_body()
    parser.feed(lines("HTTP/1.1 200 OK", "Content-Length: 5"))
    parser.feed(OK_CL)
    assert [m.body for m in recorder.messages] == [b"", b"hello"]


def test_bytes_after_a_head_response_in_the_same_read_are_a_502() -> None:
    # We never pipeline upstream, so nothing may follow a HEAD response until we
    # send the next request: such bytes mean the upstream is out of step.
    parser, recorder = parser_and_recorder()
    parser.expect_no_body()
    with pytest.raises(RemoteProtocolError) as caught:
        parser.feed(lines("HTTP/1.1 200 OK", "Content-Length: 3") + NOT_FOUND)
    assert caught.value.status == 502
    assert [m.head.status for m in recorder.messages] == [200]
    assert recorder.stray_body == b""


def test_a_chunked_head_response_with_trailers_in_the_same_read_is_not_a_crash() -> None:
    # Found by the codec fuzzer: after a HEAD response the llhttp instance that read
    # it goes on with the rest of that read as a chunked body, and its trailers
    # reached the parser with no message open (an AssertionError out of feed).
    # Refusing those bytes (502) or dropping them are both fine; anything else
    # escaping feed() is not.
    parser, recorder = parser_and_recorder()
    parser.expect_no_body()
    try:
        parser.feed(lines("HTTP/1.1 202 OK", "Transfer-Encoding: chunked")
                    + b"0;ext=1\r\nX-T: 1\r\n\r\n")
    except RemoteProtocolError as error:
        assert error.status == 502
    assert [(m.head.status, m.trailers, m.ended) for m in recorder.messages] == [
        (202, None, True)]


# -- interim responses --------------------------------------------------------


def test_100_continue_is_handed_on_and_the_final_response_delivered() -> None:
    recorder = parse_responses(lines("HTTP/1.1 100 Continue") + OK_CL)
    assert recorder.events == ["interim", "head", "body", "end"]
    assert [m.head.status for m in recorder.messages] == [200]
    assert recorder.messages[0].body == b"hello"


def test_several_interim_responses_fed_separately_are_all_handed_on() -> None:
    recorder = parse_responses(
        lines("HTTP/1.1 100 Continue"),
        lines("HTTP/1.1 103 Early Hints", "Link: </style.css>; rel=preload"),
        OK_CHUNKED,
    )
    assert [h.status for h in recorder.interim] == [100, 103]
    assert [m.head.status for m in recorder.messages] == [200]
    assert recorder.messages[0].head.headers == [(b"Transfer-Encoding", b"chunked")]


@pytest.mark.parametrize("framing", ["Transfer-Encoding: chunked", "Content-Length: 5"])
def test_an_interim_response_that_frames_a_body_is_502(framing: str) -> None:
    """RFC 9112 §6.3: a 1xx ends at its head, yet llhttp reads the body its fields
    describe, so what it takes for the next response is not what follows the head
    (found by the codec fuzzer: a 199 with a chunked body)."""
    with pytest.raises(RemoteProtocolError) as caught:
        parse_responses(lines("HTTP/1.1 199 K", framing) + b"0\r\n\r\n" + OK_CL)
    assert caught.value.status == 502
    assert "interim" in caught.value.reason


def test_a_101_to_an_upgrade_request_switches_with_what_followed() -> None:
    parser, recorder = parser_and_recorder()
    parser.expect_upgrade()
    parser.feed(lines("HTTP/1.1 101 Switching Protocols", "Connection: Upgrade",
                      "Upgrade: websocket") + b"\x81\x02hi")
    assert recorder.events == ["head", "upgrade"]
    assert recorder.messages[0].head.status == 101
    assert recorder.tail == b"\x81\x02hi"


def test_an_upgrade_declined_is_an_ordinary_response_and_asks_nothing_after() -> None:
    parser, recorder = parser_and_recorder()
    parser.expect_upgrade()
    parser.feed(lines("HTTP/1.1 426 Upgrade Required", "Content-Length: 2") + b"no")
    assert recorder.events == ["head", "body", "end"]
    with pytest.raises(RemoteProtocolError) as caught:  # the next request asked for nothing
        parser.feed(lines("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                          "Connection: upgrade"))
    assert caught.value.status == 502


def test_unrequested_101_switching_protocols_is_502() -> None:
    data = lines("HTTP/1.1 101 Switching Protocols", "Connection: upgrade", "Upgrade: h2c")
    with pytest.raises(RemoteProtocolError) as caught:
        parse_responses(data)
    assert caught.value.status == 502


# -- bodies that end when the connection closes -------------------------------


def test_read_until_close_body_is_ended_by_feed_eof() -> None:
    parser, recorder = parser_and_recorder()
    parser.feed(lines("HTTP/1.1 200 OK", "Content-Type: text/plain") + b"part one, ")
    parser.feed(b"part two")
    assert recorder.events == ["head", "body", "body"]
    head = recorder.messages[0].head
    assert head.keep_alive is False
    assert (head.content_length, head.chunked) == (None, False)
    assert parser.mid_message
    assert parser.feed_eof() is True
    assert recorder.events[-1] == "end"
    message = recorder.messages[0]
    assert (message.body, message.trailers, message.ended) == (b"part one, part two", None, True)
    assert not parser.mid_message


def test_feed_eof_is_false_when_no_body_waits_for_it() -> None:
    parser, recorder = parser_and_recorder()
    assert parser.feed_eof() is False  # idle connection
    parser.feed(OK_CL)
    assert parser.feed_eof() is False  # complete response
    assert recorder.events == ["head", "body", "end"]


def test_feed_eof_in_a_content_length_body_does_not_end_it() -> None:
    parser, recorder = parser_and_recorder()
    parser.feed(lines("HTTP/1.1 200 OK", "Content-Length: 10") + b"short")
    assert parser.feed_eof() is False
    assert recorder.events == ["head", "body"]
    assert parser.mid_message


# -- Transfer-Encoding the proxy cannot forward as it came (issue 15, #7) ------
#
# The proxy decodes chunked and re-frames the body for its client; any other
# coding would reach the client with its Transfer-Encoding dropped (it is
# hop-by-hop) and the body still coded. So a response carries exactly
# ``chunked`` or no Transfer-Encoding at all; anything else is refused before
# the head is handed on, as a 502 whose reason names the header.

UNFORWARDABLE_CODINGS = {
    "gzip (read until close)": ("1.1", ["gzip"]),
    "xchunked": ("1.1", ["xchunked"]),
    "gzip, chunked": ("1.1", ["gzip, chunked"]),
    "identity, chunked": ("1.1", ["identity, chunked"]),
    "chunked, gzip": ("1.1", ["chunked, gzip"]),
    "gzip and chunked on two lines": ("1.1", ["gzip", "chunked"]),
    "chunked on HTTP/1.0": ("1.0", ["chunked"]),
}


@pytest.mark.parametrize(
    ("version", "codings"), UNFORWARDABLE_CODINGS.values(), ids=UNFORWARDABLE_CODINGS.keys()
)
def test_transfer_codings_other_than_chunked_are_502_before_the_head(
    version: str, codings: list[str]
) -> None:
    parser, recorder = parser_and_recorder()
    te = [f"Transfer-Encoding: {coding}" for coding in codings]
    with pytest.raises(RemoteProtocolError) as caught:
        parser.feed(lines(f"HTTP/{version} 200 OK", *te) + b"3\r\nabc\r\n0\r\n\r\n")
        parser.feed_eof()
    assert caught.value.status == 502
    assert "Transfer-Encoding" in caught.value.reason
    assert recorder.events == []


@pytest.mark.parametrize("value", ["chunked", "Chunked", "chunked ", ",chunked"])
def test_a_lone_chunked_response_is_chunked(value: str) -> None:
    [message] = parse_responses(
        lines("HTTP/1.1 200 OK", f"Transfer-Encoding: {value}") + b"3\r\nabc\r\n0\r\n\r\n"
    ).messages
    assert (message.head.chunked, message.body, message.ended) == (True, b"abc", True)


@pytest.mark.parametrize("version", ["0.9", "2.0"])
def test_a_response_in_a_version_other_than_1_x_is_502(version: str) -> None:
    parser, recorder = parser_and_recorder()
    with pytest.raises(RemoteProtocolError) as caught:
        parser.feed(lines(f"HTTP/{version} 200 OK", "Content-Length: 0"))
    assert caught.value.status == 502
    assert "version" in caught.value.reason
    assert recorder.events == []


def test_response_trailers_rfc_9110_forbids_are_dropped() -> None:
    [message] = parse_responses(
        lines("HTTP/1.1 200 OK", "Transfer-Encoding: chunked")
        + b"0\r\nGrpc-Status: 0\r\nSet-Cookie: s=1\r\nLocation: /evil\r\n"
        + b"Content-Encoding: gzip\r\nServer-Timing: db;dur=1\r\n\r\n"
    ).messages
    assert message.trailers == [(b"Grpc-Status", b"0"), (b"Server-Timing", b"db;dur=1")]


# -- mid_message --------------------------------------------------------------


def test_mid_message_from_first_byte_to_end() -> None:
    parser, _ = parser_and_recorder()
    assert not parser.mid_message
    parser.feed(b"H")
    assert parser.mid_message
    parser.feed(b"TTP/1.1 200 OK\r\nContent-Length: 5\r\n")
    assert parser.mid_message
    parser.feed(b"\r\nhel")
    assert parser.mid_message
    parser.feed(b"lo")
    assert not parser.mid_message
    parser.feed(OK_CHUNKED[:-1])
    assert parser.mid_message
    parser.feed(OK_CHUNKED[-1:])
    assert not parser.mid_message


# -- what is refused ----------------------------------------------------------

MALFORMED = {
    "not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n",
    "lower-case protocol": lines("http/1.1 200 OK"),
    "status not a number": lines("HTTP/1.1 2x0 OK"),
    "status too short": lines("HTTP/1.1 20 OK"),
    "bare LF": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "space before colon": lines("HTTP/1.1 200 OK", "Content-Length : 0"),
    "two different Content-Lengths": lines(
        "HTTP/1.1 200 OK", "Content-Length: 1", "Content-Length: 2"
    ),
    "Content-Length with Transfer-Encoding": lines(
        "HTTP/1.1 200 OK", "Content-Length: 1", "Transfer-Encoding: chunked"
    ),
    "bad chunk size": lines("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"g\r\n",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_responses_are_502(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_responses(data)
    assert caught.value.status == 502


def test_head_of_exactly_64_kib_is_accepted() -> None:
    start, end = b"HTTP/1.1 200 OK\r\nX-Pad: ", b"\r\nContent-Length: 0\r\n\r\n"
    data = start + b"p" * (MAX_HEAD_BYTES - len(start) - len(end)) + end
    assert len(parse_responses(data).messages) == 1


# An upstream's oversized head is its fault like any other malformed response: 502.
OVERSIZED_HEAD = lines("HTTP/1.1 200 OK", "X-Pad: " + "p" * MAX_HEAD_BYTES, "Content-Length: 0")


def test_response_head_over_64_kib_is_502() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_responses(OVERSIZED_HEAD)
    assert caught.value.status == 502


def test_response_head_over_64_kib_in_small_pieces_is_502() -> None:
    pieces = [OVERSIZED_HEAD[i:i + 1000] for i in range(0, len(OVERSIZED_HEAD), 1000)]
    with pytest.raises(RemoteProtocolError) as caught:
        parse_responses(*pieces)
    assert caught.value.status == 502


def test_large_body_fed_after_its_head_is_not_counted_as_head() -> None:
    body = b"b" * (2 * MAX_HEAD_BYTES)
    head = lines("HTTP/1.1 200 OK", f"Content-Length: {len(body)}")
    assert parse_responses(head, body).messages[0].body == body


def test_large_body_in_the_same_feed_as_its_head() -> None:
    body = b"b" * (MAX_HEAD_BYTES + 1)
    data = lines("HTTP/1.1 200 OK", f"Content-Length: {len(body)}") + body
    assert parse_responses(data).messages[0].body == body


@pytest.mark.parametrize("reason", [b"Whatev\x1cr", b"O\x00K", b"\x7f", b"A\x0bB"])
def test_a_reason_phrase_with_control_characters_is_502_before_the_head(reason: bytes) -> None:
    # RFC 9112 §4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ). The proxy
    # forwards the reason as it came, so a control character would reach the client
    # (found by the upstream fuzzer).
    parser, recorder = parser_and_recorder()
    with pytest.raises(RemoteProtocolError) as caught:
        parser.feed(b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 0\r\n\r\n")
    assert caught.value.status == 502
    assert "reason" in caught.value.reason
    assert recorder.events == []


def test_a_reason_phrase_with_tabs_and_obs_text_is_kept() -> None:
    [message] = parse_responses(lines(b"HTTP/1.1 200 O\tK \xe9t\xe9", "Content-Length: 0")).messages
    assert message.head.reason == b"O\tK \xe9t\xe9"


@pytest.mark.parametrize("status", ["052", "099", "600", "703", "999"])
def test_a_status_outside_100_to_599_is_502_before_the_head(status: str) -> None:
    # RFC 9110 §15: values outside 100..599 are invalid. Found by the codec fuzzer:
    # "052" passed as an interim response while llhttp read a chunked body for it,
    # and its trailers then reached a parser with no message open (a crash).
    parser, recorder = parser_and_recorder()
    with pytest.raises(RemoteProtocolError) as caught:
        parser.feed(lines(f"HTTP/1.1 {status} X", "Transfer-Encoding: chunked")
                    + b"0\r\nX-T: 1\r\n\r\n")
    assert caught.value.status == 502
    assert "status" in caught.value.reason
    assert recorder.events == []


def test_status_599_is_a_final_response() -> None:
    [message] = parse_responses(lines("HTTP/1.1 599 Edge", "Content-Length: 0")).messages
    assert message.head.status == 599
