"""Protocol detection from first bytes: TLS ClientHello, HTTP/2 preface, HTTP/1, opaque."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tulle.transport.detect import (
    H2_PREFACE,
    HTTP1,
    HTTP2,
    MAX_FIRST_LINE,
    NAMES,
    NEED_MORE,
    OPAQUE,
    TLS,
    detect,
)

# The first bytes of a ClientHello as curl sends it (TLS 1.0 record version, 512-byte
# record, handshake type 1).
CLIENT_HELLO = bytes.fromhex("160301020001") + b"\x00\x01\xfc\x03\x03" + b"\x00" * 32


@pytest.mark.parametrize(("data", "expected"), [
    (b"GET / HTTP/1.1\r\nHost: web\r\n\r\n", HTTP1),
    (b"POST /upload HTTP/1.0\r\n", HTTP1),
    (b"GET http://web/x?y=1 HTTP/1.1\r\n", HTTP1),
    (b"CONNECT web:443 HTTP/1.1\r\n", HTTP1),
    (b"OPTIONS * HTTP/1.1\r\n", HTTP1),
    (b"\r\nGET / HTTP/1.1\r\n", HTTP1),  # an empty line first (RFC 9112 §2.2)
    (b"GET / HTTP/1.1\n", HTTP1),  # bare LF: llhttp judges it, not detection
    (H2_PREFACE, HTTP2),
    (H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", HTTP2),
    (CLIENT_HELLO, TLS),
    (bytes.fromhex("160303004a01"), TLS),
    # Not HTTP: decided at once.
    (b"*1\r\n$4\r\nPING\r\n", OPAQUE),  # Redis (RESP)
    (b"get key\r\n", OPAQUE),  # memcached: no HTTP version
    (b"SET a b\r\n", OPAQUE),  # Redis inline command: looks like a method, no version
    (b"GET / HTTP/2.0\r\n", OPAQUE),
    (b"GET / HTTP/1.1 extra\r\n", OPAQUE),
    (b"GET  / HTTP/1.1\r\n", OPAQUE),
    (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", OPAQUE),  # PostgreSQL SSLRequest
    (b"\x16\x01\x01\x00\x00\x01", OPAQUE),  # handshake byte, not TLS 3.x
    (bytes.fromhex("160303004a02"), OPAQUE),  # a ServerHello, not a ClientHello
    (b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n", OPAQUE),
    (b"G\x00T", OPAQUE),
    (b"GET /a\x7fb", OPAQUE),
])
def test_decided(data: bytes, expected: int) -> None:
    assert NAMES[detect(data)] == NAMES[expected]
    assert NAMES[detect(data, final=True)] == NAMES[expected]


@pytest.mark.parametrize("data", [
    b"G", b"GE", b"GET", b"GET ", b"GET /", b"GET / ", b"GET / H", b"GET / HTTP/1.",
    b"GET / HTTP/1.1", b"GET / HTTP/1.1\r", b"\r\n", b"P", b"PRI * HTTP/2.0\r\n\r\nSM",
    b"\x16", b"\x16\x03", b"\x16\x03\x01\x02",
])
def test_prefixes_need_more(data: bytes) -> None:
    assert detect(data) == NEED_MORE


@pytest.mark.parametrize(("data", "expected"), [
    (b"", OPAQUE),  # the client said nothing: a server-speaks-first protocol
    (b"GE", HTTP1),  # a request line begun: the HTTP side's head timeout answers it
    (b"GET / HTTP/1.1", HTTP1),
    (b"P", HTTP1),
    (b"PRI * HTTP/2.0\r\n", OPAQUE),  # not the preface, not an HTTP/1 line
    (b"\x16\x03", OPAQUE),
    (b"\r\n", OPAQUE),
])
def test_final_answer_after_the_wait(data: bytes, expected: int) -> None:
    assert NAMES[detect(data, final=True)] == NAMES[expected]


def test_a_request_line_longer_than_the_detection_buffer_is_http1() -> None:
    line = b"GET /" + b"a" * MAX_FIRST_LINE
    assert detect(line) == HTTP1


def test_a_method_longer_than_any_known_one_is_opaque() -> None:
    assert detect(b"A" * 40) == OPAQUE


@given(st.binary(max_size=64))
def test_every_byte_string_gets_an_answer_and_final_always_decides(data: bytes) -> None:
    answer = detect(data)
    assert answer in (NEED_MORE, HTTP1, HTTP2, TLS, OPAQUE)
    assert detect(data, final=True) != NEED_MORE


@given(st.binary(min_size=1, max_size=40))
def test_once_decided_more_bytes_do_not_change_the_answer(data: bytes) -> None:
    answer = detect(data)
    if answer != NEED_MORE:
        assert detect(data + b"more bytes\r\n") == answer
