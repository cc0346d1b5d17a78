"""SNI from real ClientHellos (made by OpenSSL through ``ssl``), fragmented or whole,
and no exception whatever the bytes."""

from __future__ import annotations

import contextlib
import ssl

from hypothesis import given, settings
from hypothesis import strategies as st

from tulle.transport.client_hello import MALFORMED, NEED_MORE, NO_NAME, server_name


def _client_hello(server_hostname: str | None) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _fragmented(hello: bytes, size: int) -> bytes:
    """The same handshake message, split into records of ``size`` bytes."""
    body = hello[5:]
    records = []
    for at in range(0, len(body), size):
        piece = body[at:at + size]
        records.append(hello[:3] + len(piece).to_bytes(2, "big") + piece)
    return b"".join(records)


def test_the_server_name_of_a_real_client_hello() -> None:
    hello = _client_hello("Web.Shop.serviceaccount.identity.cluster.local")
    assert server_name(hello) == "web.shop.serviceaccount.identity.cluster.local"
    for cut in (0, 1, 5, 6, 100, len(hello) - 1):
        assert server_name(hello[:cut]) == NEED_MORE
    assert server_name(hello + b"more records follow") == server_name(hello)


def test_without_sni() -> None:
    assert server_name(_client_hello(None)) == NO_NAME


def test_a_client_hello_over_several_records() -> None:
    hello = _client_hello("web.shop.serviceaccount.identity.cluster.local")
    for size in (1, 7, 100):
        split = _fragmented(hello, size)
        assert server_name(split) == "web.shop.serviceaccount.identity.cluster.local"
        assert server_name(split[:-1]) == NEED_MORE


def test_not_a_client_hello() -> None:
    assert server_name(b"GET / HTTP/1.1\r\n\r\n") == MALFORMED
    assert server_name(b"\x16\x03\x01\x00\x00") == MALFORMED  # an empty record
    assert server_name(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00") == MALFORMED  # ServerHello
    huge = b"\x16\x03\x01\x00\x04\x01\xff\xff\xff"
    assert server_name(huge) == MALFORMED
    hello = _client_hello("x.example")
    truncated_body = hello[:5 + 4 + 40]
    short = truncated_body[:3] + (len(truncated_body) - 5).to_bytes(2, "big") + \
        truncated_body[5:6] + (40).to_bytes(3, "big") + truncated_body[9:]
    assert server_name(short) == MALFORMED


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=600))
def test_any_bytes_get_an_answer(noise: bytes, position: int) -> None:
    hello = _client_hello("web.shop.serviceaccount.identity.cluster.local")
    for data in (noise, b"\x16\x03\x01" + noise, hello[:position] + noise):
        assert server_name(data) in (NEED_MORE, NO_NAME, MALFORMED) or isinstance(
            server_name(data), str)
