"""end_to_end, append_forwarded_for and permitted_in_trailers: the header rules of a
forwarding proxy."""

from __future__ import annotations

import pytest

from tulle.http import HOP_BY_HOP, append_forwarded_for, end_to_end, permitted_in_trailers


def test_hop_by_hop_list_is_rfc_9110_plus_proxy_auth_and_expect() -> None:
    assert {
        b"connection", b"proxy-connection", b"keep-alive", b"te", b"transfer-encoding",
        b"upgrade", b"proxy-authenticate", b"proxy-authorization", b"expect",
    } == HOP_BY_HOP


@pytest.mark.parametrize("name", sorted(HOP_BY_HOP))
def test_each_hop_by_hop_header_is_dropped_whatever_its_case(name: bytes) -> None:
    for spelling in (name, name.upper(), name.title()):
        assert end_to_end([(b"Host", b"a"), (spelling, b"v"), (b"Accept", b"*/*")]) == [
            (b"Host", b"a"), (b"Accept", b"*/*"),
        ]


def test_end_to_end_headers_keep_their_order_and_duplicates() -> None:
    headers = [
        (b"Host", b"a"), (b"Keep-Alive", b"timeout=5"), (b"Set-Cookie", b"x=1"),
        (b"Via", b"1.1 p"), (b"TE", b"trailers"), (b"Set-Cookie", b"y=2"), (b"Accept", b"*/*"),
    ]
    assert end_to_end(headers) == [
        (b"Host", b"a"), (b"Set-Cookie", b"x=1"), (b"Via", b"1.1 p"),
        (b"Set-Cookie", b"y=2"), (b"Accept", b"*/*"),
    ]


def test_headers_named_in_connection_are_dropped() -> None:
    headers = [
        (b"X-Session", b"1"), (b"Connection", b"x-session, X-Trace ,close"),
        (b"x-trace", b"t"), (b"X-Keep", b"k"), (b"X-TRACE", b"again"),
    ]
    assert end_to_end(headers) == [(b"X-Keep", b"k")]


def test_names_from_several_connection_headers_are_all_dropped() -> None:
    headers = [
        (b"Connection", b"X-A"), (b"X-A", b"1"), (b"X-B", b"2"),
        (b"connection", b"x-b"), (b"X-C", b"3"),
    ]
    assert end_to_end(headers) == [(b"X-C", b"3")]


def test_connection_naming_nothing_extra_drops_only_itself() -> None:
    assert end_to_end([(b"Connection", b"keep-alive"), (b"Accept", b"*/*")]) == [
        (b"Accept", b"*/*"),
    ]
    assert end_to_end([(b"Connection", b""), (b"Accept", b"*/*")]) == [(b"Accept", b"*/*")]


def test_end_to_end_does_not_change_its_argument() -> None:
    headers = [(b"Connection", b"x-a"), (b"X-A", b"1")]
    end_to_end(headers)
    assert headers == [(b"Connection", b"x-a"), (b"X-A", b"1")]


def test_end_to_end_of_nothing_is_nothing() -> None:
    assert end_to_end([]) == []


def test_forwarded_for_is_added_when_absent() -> None:
    headers = [(b"Host", b"a")]
    append_forwarded_for(headers, b"10.0.0.7")
    assert headers == [(b"Host", b"a"), (b"x-forwarded-for", b"10.0.0.7")]


def test_forwarded_for_appends_to_an_existing_chain_in_place() -> None:
    headers = [(b"X-Forwarded-For", b"203.0.113.9, 10.0.0.1"), (b"Host", b"a")]
    append_forwarded_for(headers, b"10.0.0.7")
    assert headers == [
        (b"X-Forwarded-For", b"203.0.113.9, 10.0.0.1, 10.0.0.7"), (b"Host", b"a"),
    ]


def test_forwarded_for_is_found_whatever_its_case() -> None:
    headers = [(b"x-FORWARDED-for", b"1.2.3.4")]
    append_forwarded_for(headers, b"::1")
    assert headers == [(b"x-FORWARDED-for", b"1.2.3.4, ::1")]


def test_forwarded_for_over_several_lines_gets_the_address_last() -> None:
    headers = [(b"X-Forwarded-For", b"203.0.113.9"), (b"X-Forwarded-For", b"10.0.0.1")]
    append_forwarded_for(headers, b"10.0.0.7")
    chain = b", ".join(v for n, v in headers if n.lower() == b"x-forwarded-for")
    assert chain == b"203.0.113.9, 10.0.0.1, 10.0.0.7"


# -- trailers (RFC 9110 §6.5.1): one test per class of field it names ----------


def assert_refused(*names: bytes) -> None:
    for name in names:
        for spelling in (name, name.upper(), name.title()):
            assert not permitted_in_trailers(spelling.lower()), spelling


def test_trailers_may_not_carry_message_framing() -> None:
    assert_refused(b"transfer-encoding", b"content-length", b"trailer")


def test_trailers_may_not_carry_connection_options() -> None:
    assert_refused(*HOP_BY_HOP)


def test_trailers_may_not_carry_routing() -> None:
    assert_refused(b"host", b"forwarded", b"x-forwarded-for", b"x-forwarded-host",
                   b"x-forwarded-proto", b"via", b"max-forwards")


def test_trailers_may_not_carry_request_modifiers() -> None:
    # Controls (RFC 9110 §10.1) and conditionals (§13).
    assert_refused(b"cache-control", b"expect", b"pragma", b"range", b"te", b"if-match",
                   b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"if-range")


def test_trailers_may_not_carry_authentication_or_state() -> None:
    assert_refused(b"authorization", b"proxy-authorization", b"www-authenticate",
                   b"proxy-authenticate", b"cookie", b"set-cookie")


def test_trailers_may_not_carry_response_control_data() -> None:
    # Response context (RFC 9110 §10.2) and caching (RFC 9111 §5).
    assert_refused(b"age", b"expires", b"date", b"location", b"retry-after", b"vary",
                   b"allow", b"accept-ranges")


def test_trailers_may_not_say_how_to_process_the_content() -> None:
    assert_refused(b"content-type", b"content-encoding", b"content-range",
                   b"content-language", b"content-location", b"content-disposition",
                   b"content-md5")


@pytest.mark.parametrize(
    "name", [b"x-checksum", b"grpc-status", b"grpc-message", b"server-timing", b"digest",
             b"authentication-info", b"x-content-length-hint"]
)
def test_other_fields_are_permitted_in_trailers(name: bytes) -> None:
    assert permitted_in_trailers(name)
