"""The fuzz scenario: its checks catch what they claim to, its case generator is
repeatable, its strict reader refuses what HTTP/1.1 forbids, and (marked ``bench``) the
quick run — 20,000 codec inputs under atheris, 1,800 upstream cases through a real
proxy, about 30 s — finds nothing.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from bench import fuzz_codec, fuzz_upstream
from bench.scenarios import fuzz
from tulle.http.h1 import parser as h1_parser


def test_the_seeds_pass_the_codec_checks(tmp_path: Path) -> None:
    fuzz_codec.write_seeds(tmp_path)
    seeds = sorted(tmp_path.iterdir())
    assert len(seeds) >= 30
    for seed in seeds:
        fuzz_codec.check_one(seed.read_bytes())


# Inputs the codec fuzzer found (base64 of the crash files), kept as regressions.
FOUND = {
    # status 052 passed as interim while llhttp read a chunked body for it
    "status-052": "AUhUVFAvMS4xIDIwMCBPMTBLZQ0KVHJhbnNmZXItRW5jb2Rpbmc6IGNodW5rZWQNCg0KMw0KYWJj"
                  "DQowDQp0dXM6IDDQT1NUIC8x//////////9udWUNCg0KSFRUUC8xLjEgMDUyIE5vILMgQ29udGll"
                  "DQpUcmFuc2Zlci1FbmNvZGluZzogY2h1bmtlZA0KDQowDQp0dXM6IDDQT1NUIP////91ZQ0KDQpI"
                  "VFRQLzEuMSA0NTIgTm8gs29hZG51Zf///251ZQ0KDQpIb2UNCg0KSFRUUA==",
    # a chunked response to HEAD with trailers in the same read
    "head-trailers": "F0hUVFAvMS4xIDIwMiDqUE9TVCAvdSBIVFRQLzEuMQ0KSG9zdDogYQ0KVHJhbnNmZXItRW5jb2Rp"
                     "bkc6IGNodW5rZWQNCg0KMDtleHQ9MQ0KaDF1ZXVtOiAxDQpIOnRvcyBldmlUUC/x8fHx8fHx8fHx"
                     "8fE6IDENCkhvc3Q6IGV2aVRQL/Hx8fHx8fHx8fHx8fHx8fHx8fHxMW5DLA0KZW5ndGj/ICA1DQpH"
                     "DQpIVFRQLzEuMSAyMDQgRVRlbPHx8fHx8fExbmVuZ3Ro/05vIENvDQoNCiAgNQ0K",
    # "POST /HTTP/1.1": an HTTP/0.9 line whose target ends in "HTTP/1.1", read as 1.1
    "target-ends-in-version": "AFBPU1QgL0hUVFAvMS4xDQpIb3N0OmEgDQoNCjUNbmNvZG9kaYlpbAoNCg==",
    # a 199 whose chunked body llhttp read while the raw scan took it for the next head
    "interim-with-a-body": "VUhUVFAvMS4xIDE5OSBLDQpUcmFuc2Zlci1FbmNvZGluZzogY2h1bmtlZA0KDQowDQpw"
                           "Y2F0dXM6IDBIVFQwIDZudWV1ZQ0KDQpIVFRQLzEuMSAyMDQgZQ0KDQo=",
    # a CONNECT whose head ended inside a read: the harness fed the next read to the
    # parser, which the proxy never does once a tunnel has the connection
    "connect-then-more": "FENPTk5FQ1QgVCBIVFRQLzEuMA0KSHQ6IGENClRyYW5zZmVyLUVuI2NvZGluZzogY2h1"
                         "bmtlZA0KDQo1O2V4dDogYQ0AAAAAAA0KVFAvMS4wDQpIdA==",
}


@pytest.mark.parametrize("found", FOUND.values(), ids=FOUND.keys())
def test_what_the_codec_fuzzer_found_stays_fixed(found: str) -> None:
    fuzz_codec.check_one(base64.b64decode(found))


# Found in the parser as rewritten for speed (heads read from the raw bytes): after
# interim and HEAD responses in one read, the raw scan of the next head reads other
# bytes than llhttp parsed, and int() of an empty Content-Length escapes feed() as a
# ValueError. Open, reported to the data-plane owner; strict, so the fix shows.
RAW_SCAN_DESYNC = (
    "W0hUVFAvMS4xIDEwMCBDbnVlSFRUUC8xLjEgMTAwIENudWUNCg0KSFRUUC8xLjEgMjA0IE5vIExUPVAN"
    "Cg0KSFRUUC8xLjEgMjA0IE5vIENvQ29udGVudHRp387MMA0KDQpIVFRQLzEuMSA1MDIgMA0KDQr/jo6O"
    "jo6Ojo6Ojo6Ojo6Ojg0KSG9zdDogYQ0KQ29udGVudC1MZW5ndGg6IDUNCg0Kbw0K"
)


def test_raw_head_scan_stays_in_step_with_llhttp() -> None:
    """After a response to HEAD ends at its head in the middle of a read, the replaced
    llhttp parser must not go on parsing the rest of that read (it did, and the head
    scan then read other bytes than llhttp had)."""
    fuzz_codec.check_one(base64.b64decode(RAW_SCAN_DESYNC))


def test_the_codec_check_catches_a_parser_that_hands_on_a_bad_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Undo the version rule: the check must notice an HTTP/2.0 head handed on.
    monkeypatch.setattr(h1_parser, "_VERSIONS", ("1.1", "1.0", "2.0"))
    with pytest.raises(fuzz_codec.FuzzFailure, match=r"HTTP/2\.0"):
        fuzz_codec.check_one(b"\x00GET / HTTP/2.0\r\nHost: a\r\n\r\n")


def test_the_codec_check_catches_a_forbidden_trailer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h1_parser, "permitted_in_trailers", lambda name: True)
    with pytest.raises(fuzz_codec.FuzzFailure, match="trailer"):
        fuzz_codec.check_one(b"\x00POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                             b"\r\n\r\n0\r\nHost: evil\r\n\r\n")


def test_the_dictionary_is_libfuzzer_syntax(tmp_path: Path) -> None:
    fuzz_codec.write_dictionary(tmp_path / "d")
    for line in (tmp_path / "d").read_text().splitlines():
        assert line.startswith('"') and line.endswith('"')


def test_cases_are_the_same_every_time_and_mostly_mutated() -> None:
    cases = [fuzz_upstream.make_case(7, n) for n in range(400)]
    assert cases == [fuzz_upstream.make_case(7, n) for n in range(400)]
    mutated = sum(1 for case in cases if case.mutations)
    assert 0.5 * 400 < mutated < 0.7 * 400  # 60% asked; binomial sd ~10


def test_fresh_cases_never_let_the_proxy_keep_the_connection() -> None:
    for n in range(300):
        case = fuzz_upstream.make_case(7, n, pooled=False)
        assert case.after != "keep"
        if case.status is not None:
            assert b"\r\nConnection: close\r\n" in case.data


async def _read(data: bytes) -> fuzz_upstream.Response | None:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await fuzz_upstream.read_response(reader, [])


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 O\x1cK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"garbage\r\n\r\n",
])
async def test_the_strict_reader_refuses_what_http_forbids(data: bytes) -> None:
    with pytest.raises(fuzz_upstream.Malformed):
        await _read(data)


async def test_the_strict_reader_reads_chunked_bodies_and_skips_interim_heads() -> None:
    response = await _read(b"HTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\n"
                           b"via: 1.1 tulle\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n")
    assert response is not None
    assert (response.status, response.body, response.header(b"via")) == (
        200, b"abc", b"1.1 tulle")


def test_judge_flags_a_response_without_via_and_a_changed_body() -> None:
    case = fuzz_upstream.Case(1, b"", (), 0.0, "keep", 200, b"abc")
    tally = fuzz_upstream.FuzzTally()
    fuzz_upstream.judge(case, fuzz_upstream.Response(200, [], b"abc"), tally)
    fuzz_upstream.judge(case, fuzz_upstream.Response(200, [(b"Via", b"1.1 tulle")], b"ab"),
                        tally)
    fuzz_upstream.judge(case, fuzz_upstream.Response(200, [(b"Via", b"1.1 tulle")], b"abc"),
                        tally)
    assert tally.outcomes == {"no-via": 1, "mismatch": 1, "exact": 1}
    assert tally.failed == 2


@pytest.mark.bench
def test_fuzz_quick_finds_nothing(tmp_path: Path) -> None:
    from bench.__main__ import run_scenario

    report, written = run_scenario("fuzz", quick=True, results_dir=tmp_path,
                                   peer_names=("tulle",), pin=False)
    assert not fuzz.findings_in(report), report.notes[0]
    codec = report.table("Codec").rows[0]
    assert codec[1] == f"{fuzz.CODEC_RUNS[True]:,}"
    fresh = report.table("Upstream").rows[0]
    assert fresh[:2] == ["fresh", f"{fuzz.FRESH_CASES[True]:,}"]
    assert fresh[4] == "0" and fresh[5] == "no"
    assert "exact" in fresh[6] and "forwarded" in fresh[6]
    assert written.exists()
