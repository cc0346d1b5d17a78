"""A small sans-I/O DNS message codec: build queries, read A/AAAA/SRV answers.

Only what endpoint discovery needs (RFC 1035 §4, RFC 3596 for AAAA, RFC 2782 for
SRV): :func:`encode_query` makes a one-question query with recursion desired;
:func:`parse_response` reads the header, skips the questions and returns the answer
records, following name compression pointers (§4.1.4) with a bound on jumps so a
pointer loop cannot hang it. Records of other types (e.g. a CNAME before the A
records) are returned with ``data`` set to ``None``. Anything malformed —
truncated, a pointer out of range or looping, a label too long — raises
:class:`DnsFormatError` saying where.

No I/O here: the UDP client lives in ``tulle.discovery.dns``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
TYPE_SRV = 33
CLASS_IN = 1

RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
               5: "REFUSED"}

_HEADER = struct.Struct("!HHHHHH")
_MAX_POINTER_JUMPS = 32
_MAX_NAME_LENGTH = 255


class DnsFormatError(ValueError):
    """A message that is not valid DNS (or not one this codec can read)."""


@dataclass(frozen=True)
class SrvData:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Record:
    """One resource record; ``data`` is an address (A/AAAA), SrvData, or None."""

    name: str
    rtype: int
    ttl: int
    data: str | SrvData | None


@dataclass(frozen=True)
class Response:
    ident: int
    rcode: int
    truncated: bool
    answers: list[Record]

    @property
    def rcode_name(self) -> str:
        return RCODE_NAMES.get(self.rcode, f"RCODE{self.rcode}")


def encode_name(name: str) -> bytes:
    """``www.example.com`` as length-prefixed labels ending in the root label."""
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if not label:
            if name.strip(".") == "":
                break
            raise DnsFormatError(f"empty label in {name!r}")
        raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
        if len(raw) > 63:
            raise DnsFormatError(f"label {label!r} is longer than 63 bytes")
        out += bytes([len(raw)]) + raw
    out += b"\x00"
    if len(out) > _MAX_NAME_LENGTH:
        raise DnsFormatError(f"name {name!r} is longer than 255 bytes")
    return bytes(out)


def encode_query(ident: int, name: str, rtype: int) -> bytes:
    """A standard query for ``name``/``rtype`` (class IN), recursion desired."""
    flags = 0x0100  # RD
    return _HEADER.pack(ident & 0xFFFF, flags, 1, 0, 0, 0) + encode_name(name) + struct.pack(
        "!HH", rtype, CLASS_IN)


def read_name(message: bytes, offset: int) -> tuple[str, int]:
    """The name at ``offset`` (following pointers) and the offset just after it."""
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    length_total = 0
    while True:
        if offset >= len(message):
            raise DnsFormatError(f"name runs past the end of the message at byte {offset}")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(message):
                raise DnsFormatError(f"truncated compression pointer at byte {offset}")
            target = ((length & 0x3F) << 8) | message[offset + 1]
            if end is None:
                end = offset + 2
            jumps += 1
            if jumps > _MAX_POINTER_JUMPS:
                raise DnsFormatError(f"compression pointer loop at byte {offset}")
            if target >= len(message):
                raise DnsFormatError(f"compression pointer at byte {offset} points past "
                                     f"the end ({target})")
            offset = target
            continue
        if length & 0xC0:
            raise DnsFormatError(f"unsupported label type {length:#x} at byte {offset}")
        if length == 0:
            return ".".join(labels), (end if end is not None else offset + 1)
        start = offset + 1
        if start + length > len(message):
            raise DnsFormatError(f"label at byte {offset} runs past the end of the message")
        length_total += length + 1
        if length_total > _MAX_NAME_LENGTH:
            raise DnsFormatError(f"name at byte {offset} is longer than 255 bytes")
        labels.append(message[start:start + length].decode("ascii", errors="replace"))
        offset = start + length


def _need(message: bytes, offset: int, size: int, what: str) -> None:
    if offset + size > len(message):
        raise DnsFormatError(f"truncated {what} at byte {offset} (message is "
                             f"{len(message)} bytes)")


def _record(message: bytes, offset: int) -> tuple[Record, int]:
    name, offset = read_name(message, offset)
    _need(message, offset, 10, "record header")
    rtype, _rclass, ttl, rdlength = struct.unpack_from("!HHIH", message, offset)
    offset += 10
    _need(message, offset, rdlength, "record data")
    rdata = message[offset:offset + rdlength]
    data: str | SrvData | None = None
    if rtype == TYPE_A:
        if rdlength != 4:
            raise DnsFormatError(f"A record for {name} has {rdlength} bytes of data, not 4")
        data = str(ipaddress.IPv4Address(rdata))
    elif rtype == TYPE_AAAA:
        if rdlength != 16:
            raise DnsFormatError(f"AAAA record for {name} has {rdlength} bytes, not 16")
        data = str(ipaddress.IPv6Address(rdata))
    elif rtype == TYPE_SRV:
        if rdlength < 7:
            raise DnsFormatError(f"SRV record for {name} is too short ({rdlength} bytes)")
        priority, weight, port = struct.unpack_from("!HHH", message, offset)
        target, after = read_name(message, offset + 6)
        if after > offset + rdlength:
            raise DnsFormatError(f"SRV target of {name} runs past its record")
        data = SrvData(priority, weight, port, target)
    return Record(name, rtype, ttl & 0x7FFFFFFF, data), offset + rdlength


def parse_response(message: bytes) -> Response:
    """Read a response: header, questions skipped, answer records (other sections
    are not read)."""
    _need(message, 0, _HEADER.size, "header")
    ident, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(message, 0)
    if not flags & 0x8000:
        raise DnsFormatError("message is a query, not a response")
    offset = _HEADER.size
    for _ in range(qdcount):
        _, offset = read_name(message, offset)
        _need(message, offset, 4, "question")
        offset += 4
    answers = []
    for _ in range(ancount):
        record, offset = _record(message, offset)
        answers.append(record)
    return Response(ident=ident, rcode=flags & 0x000F, truncated=bool(flags & 0x0200),
                    answers=answers)
