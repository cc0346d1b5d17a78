"""The DNS codec on hand-built packets: queries, A/AAAA/SRV answers, compression
pointers, and malformed input rejected with a clear error."""

from __future__ import annotations

import struct

import pytest

from tulle.discovery.dns_wire import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_SRV,
    DnsFormatError,
    SrvData,
    encode_name,
    encode_query,
    parse_response,
    read_name,
)


def header(ident: int = 0x1234, flags: int = 0x8180, qd: int = 1, an: int = 0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, 0, 0)


def question(name: str, rtype: int) -> bytes:
    return encode_name(name) + struct.pack("!HH", rtype, 1)


def rr(name: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return name + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


POINTER_TO_QNAME = b"\xc0\x0c"  # the question's name starts right after the header


def test_query_bytes_are_exact() -> None:
    assert encode_query(0xBEEF, "api.example.com", TYPE_A) == (
        b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        b"\x03api\x07example\x03com\x00\x00\x01\x00\x01")


def test_names_reject_long_labels_and_empty_labels() -> None:
    with pytest.raises(DnsFormatError, match="longer than 63"):
        encode_name("a" * 64 + ".com")
    with pytest.raises(DnsFormatError, match="empty label"):
        encode_name("a..com")
    assert encode_name("example.com.") == encode_name("example.com")


def test_a_answers_through_a_compression_pointer() -> None:
    message = (header(an=2) + question("api.example.com", TYPE_A)
               + rr(POINTER_TO_QNAME, TYPE_A, 30, bytes([10, 0, 0, 1]))
               + rr(POINTER_TO_QNAME, TYPE_A, 5, bytes([10, 0, 0, 2])))
    response = parse_response(message)
    assert response.ident == 0x1234 and response.rcode_name == "NOERROR"
    assert [(r.name, r.data, r.ttl) for r in response.answers] == [
        ("api.example.com", "10.0.0.1", 30), ("api.example.com", "10.0.0.2", 5)]


def test_aaaa_answer() -> None:
    message = (header(an=1) + question("v6.example", TYPE_AAAA)
               + rr(POINTER_TO_QNAME, TYPE_AAAA, 60, bytes(15) + b"\x01"))
    assert parse_response(message).answers[0].data == "::1"


def test_srv_answer_with_target_compressed_against_a_suffix() -> None:
    qname = "_http._tcp.web.example"
    body = header(an=1) + question(qname, TYPE_SRV)
    # target "node1" + pointer to "web.example" inside the question (offset 12 + 11).
    suffix = 12 + len(b"\x05_http\x04_tcp")
    target = b"\x05node1" + struct.pack("!H", 0xC000 | suffix)
    rdata = struct.pack("!HHH", 10, 5, 8080) + target
    response = parse_response(body + rr(POINTER_TO_QNAME, TYPE_SRV, 1, rdata))
    assert response.answers[0].data == SrvData(10, 5, 8080, "node1.web.example")


def test_other_record_types_come_back_without_data() -> None:
    cname = rr(POINTER_TO_QNAME, TYPE_CNAME, 10, encode_name("real.example"))
    message = header(an=1) + question("alias.example", TYPE_A) + cname
    assert parse_response(message).answers[0].data is None


def test_rcode_and_truncation_flag() -> None:
    response = parse_response(header(flags=0x8383, qd=0))
    assert response.rcode_name == "NXDOMAIN" and response.truncated


def test_pointer_loop_is_an_error_not_a_hang() -> None:
    message = header(qd=1) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    with pytest.raises(DnsFormatError, match="loop"):
        parse_response(message)


def test_pointer_past_the_end() -> None:
    with pytest.raises(DnsFormatError, match="past the end"):
        read_name(b"\xc0\xff", 0)


@pytest.mark.parametrize("cut", [5, 20, 33, 40])
def test_truncated_messages_name_what_was_cut(cut: int) -> None:
    message = (header(an=1) + question("api.example.com", TYPE_A)
               + rr(POINTER_TO_QNAME, TYPE_A, 30, bytes([10, 0, 0, 1])))
    with pytest.raises(DnsFormatError, match=r"truncated|past the end"):
        parse_response(message[:cut])


def test_bad_address_length_and_queries_are_refused() -> None:
    message = header(an=1) + question("x.example", TYPE_A) + rr(POINTER_TO_QNAME, TYPE_A, 1,
                                                                 b"\x01\x02\x03")
    with pytest.raises(DnsFormatError, match="not 4"):
        parse_response(message)
    with pytest.raises(DnsFormatError, match="query"):
        parse_response(encode_query(1, "x.example", TYPE_A))
