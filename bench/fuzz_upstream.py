"""Socket-level fuzzing of the upstream response path: a real ``tulle proxy`` in front of
a backend that answers with generated and mutated responses.

Each case is a number. `make_case` turns it (with the run's seed) into the bytes the
backend writes for ``GET /case/N``, how it writes them (in one write or several, with
pauses) and what it does after (keep the connection, close it, reset it, or go
silent). A case is *valid* when those bytes are a well-formed response: the client
must then receive that status and that body exactly (a 5xx may instead be the
proxy's own answer after its retries). A *mutated* case has bytes flipped, tokens
spliced in, ranges cut or repeated, or bytes added after the response; for those the
client must receive a well-formed HTTP/1.1 response or a closed connection, nothing
else. Always: every response carries the proxy's ``Via`` (raw upstream bytes never
reach a client), none takes longer than the request timeout plus a margin (a hang),
the proxy process never exits, and its memory and open descriptors stay bounded
(sampled every second; the slope is reported). The backend closes a connection idle
for `BACKEND_IDLE` seconds, as a real server would; a response whose body waited on
the upstream past the request timeout is counted as ``late-body`` (the request
timeout stops at the response head).

The client side reads responses with its own strict HTTP/1.1 reader (`read_response`),
not Tulle's codec, so a codec bug cannot hide on both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

REQUEST_TIMEOUT = 2.0  # the fuzzed service's timeouts.request
# The backend closes a connection it has not heard from for this long, as a real
# server's keep-alive timeout would: a response it left unfinished ends there.
BACKEND_IDLE = 4.0
# No answer and no close this long after the request is a hang: the proxy had
# the request timeout before the response began, and the backend's close after.
HANG_AFTER = BACKEND_IDLE + 3.0
SERVICE = "fuzz"

# A manifest for the fuzzed service: the circuit breaker is kept from opening, so
# that a run of bad answers keeps exercising the response path instead of 503s.
MANIFEST = f"""\
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {{name: {SERVICE}}}
spec:
  endpoints: [{{address: "{{backend}}"}}]
  timeouts: {{request: {REQUEST_TIMEOUT:g}s}}
  circuitBreaker: {{consecutiveFailures: 1000000000}}
"""

STATUSES = [200, 200, 200, 201, 204, 206, 301, 304, 404, 418, 500, 503]
HEADER_NAMES = [b"Content-Type", b"X-Trace", b"Cache-Control", b"Set-Cookie", b"Server",
                b"Vary", b"ETag", b"X-Empty", b"Link"]
TRAILER_NAMES = [b"Grpc-Status", b"X-Checksum", b"Server-Timing", b"Host", b"Set-Cookie",
                 b"Content-Type", b"Authorization"]
# Tokens a mutation splices in: framing, separators and what confuses parsers.
TOKENS = [
    b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\x00", b" ", b"\t", b":", b";", b",",
    b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: xchunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n", b"Content-Length: 0\r\n",
    b"Content-Length: 99999\r\n", b"Content-Length: -1\r\n", b"ffffffffffffffff1\r\n",
    b"0\r\n\r\n", b"0\r\nContent-Length: 5\r\n\r\n", b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 101 Switching Protocols\r\n",
    b"HTTP/1.0 ", b"HTTP/2.0 ", b"Connection: close\r\n", b"Connection: keep-alive\r\n",
    b"Upgrade: h2c\r\n", b"\xff\xfe",
]
AFTER = ["keep", "keep", "keep", "close", "close", "reset", "silent"]


@dataclass(frozen=True, slots=True)
class Case:
    """What the backend does for one request."""

    number: int
    data: bytes
    writes: tuple[int, ...]  # where the data is cut into separate writes
    pause: float  # seconds between writes
    after: str  # keep | close | reset | silent
    status: int | None  # the status the client must see; None when mutated
    body: bytes  # the body the client must see (valid cases)
    mutations: tuple[str, ...] = ()


def _token(rng: random.Random) -> bytes:
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789-_.") for _ in range(
        rng.randint(1, 12)))


def _valid_response(rng: random.Random, close: bool) -> tuple[bytes, int, bytes, bool]:
    """A well-formed response: (bytes, status, body, framed by the close)."""
    status = rng.choice(STATUSES)
    head = [b"HTTP/1.1 %d %s" % (status, rng.choice([b"OK", b"Fine", b"", b"Whatever x"]))]
    if close:
        head.append(b"Connection: close")
    interim = b""
    for _ in range(rng.choice([0, 0, 0, 0, 1, 2])):
        code = rng.choice([100, 103])
        interim += b"HTTP/1.1 %d Interim\r\n" % code
        if code == 103:
            interim += b"Link: </style.css>; rel=preload\r\n"
        interim += b"\r\n"
    for _ in range(rng.randint(0, 4)):
        head.append(rng.choice(HEADER_NAMES) + b": " + _token(rng))
    size = rng.choice([0, 1, 10, 100, 1000, 5000, 20000]) if rng.random() < 0.97 else 200_000
    body = rng.randbytes(size)
    no_body = status in (204, 304)
    framing = rng.choice(["length", "length", "chunked", "chunked", "close"])
    if no_body:
        body = b""
        framing = "length"
    until_close = False
    if framing == "length":
        if not no_body:
            head.append(b"Content-Length: %d" % len(body))
        wire_body = body
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        wire_body = b""
        start = 0
        while start < len(body):
            step = rng.randint(1, max(1, len(body) // 3 + 1))
            ext = b";x=1" if rng.random() < 0.1 else b""
            piece = body[start:start + step]
            wire_body += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
            start += step
        wire_body += b"0\r\n"
        for _ in range(rng.choice([0, 0, 1, 2])):
            wire_body += rng.choice(TRAILER_NAMES) + b": " + _token(rng) + b"\r\n"
        wire_body += b"\r\n"
    else:
        if not close:
            head.append(b"Connection: close")
        wire_body = body
        until_close = True
    data = interim + b"\r\n".join(head) + b"\r\n\r\n" + wire_body
    return data, status, body, until_close


def _mutate(rng: random.Random, data: bytes, start: int) -> tuple[bytes, tuple[str, ...]]:
    """1–3 mutations of ``data`` at or after offset ``start``."""
    done = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["flip", "splice", "cut", "repeat", "truncate", "append"])
        at = rng.randint(min(start, len(data)), max(start, len(data) - 1))
        if kind == "flip" and data:
            data = data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]
        elif kind == "splice":
            data = data[:at] + rng.choice(TOKENS) + data[at:]
        elif kind == "cut":
            data = data[:at] + data[at + rng.randint(1, 16):]
        elif kind == "repeat":
            data = data[:at] + data[at:at + rng.randint(1, 64)] * 2 + data[at + 64:]
        elif kind == "truncate":
            data = data[:at]
        else:  # bytes after a complete response: issue 15 #1's trigger
            data += rng.choice([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", b"\r\n",
                                b"garbage", rng.choice(TOKENS)])
        done.append(kind)
    return data, tuple(done)


def make_case(seed: int, number: int, pooled: bool = True, mutated_share: float = 0.6) -> Case:
    """Case ``number`` of the run with ``seed`` (the same every time).

    With ``pooled`` False every answer says ``Connection: close`` on the line after
    its status line, mutations touch only what follows that line, and the backend
    closes after it: the proxy never puts the connection back in its pool.
    """
    rng = random.Random(seed * 1_000_003 + number)
    data, status, body, until_close = _valid_response(rng, close=not pooled)
    mutations: tuple[str, ...] = ()
    if rng.random() < mutated_share:
        start = 0 if pooled else data.index(b"\r\nConnection: close\r\n") + 21
        data, mutations = _mutate(rng, data, start)
    cuts = tuple(sorted(rng.randint(1, max(1, len(data) - 1)) for _ in range(
        rng.choice([0, 0, 1, 2, 3]))))
    after = "close" if until_close else rng.choice(AFTER)
    if not mutations and after == "silent":
        after = "keep"
    if not pooled and after == "keep":
        after = "close"
    return Case(
        number=number, data=data, writes=cuts, pause=rng.choice([0.0, 0.0, 0.001, 0.02]),
        after=after, status=None if mutations else status, body=body, mutations=mutations,
    )


# ---------------------------------------------------------------- the backend


class FuzzBackend:
    """Answers ``GET /case/N`` as `make_case` says; counts what it served."""

    def __init__(self, case_for: Callable[[int], Case]) -> None:
        self._case_for = case_for
        self.served = 0
        self._server: asyncio.Server | None = None
        self._silent: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0,
                                                  limit=1 << 20, backlog=1024)
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._silent:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BACKEND_IDLE)
                match = re.match(rb"GET /case/(\d+) ", head)
                if match is None:
                    break
                case = self._case_for(int(match.group(1)))
                self.served += 1
                start = 0
                for cut in (*case.writes, len(case.data)):
                    if cut > start:
                        writer.write(case.data[start:cut])
                        await writer.drain()
                        if case.pause and cut < len(case.data):
                            await asyncio.sleep(case.pause)
                    start = max(start, cut)
                if case.after == "close":
                    break
                if case.after == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                    break
                if case.after == "silent":
                    self._silent.add(writer)  # held until the proxy gives up on it
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(reader.read(), BACKEND_IDLE)
                    self._silent.discard(writer)
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                TimeoutError):
            pass
        finally:
            writer.close()


# ---------------------------------------------------------------- the client


class Malformed(Exception):
    """The proxy sent bytes that are not an HTTP/1.1 response."""


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5]\d\d) [\x09\x20-\x7e\x80-\xff]*")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x09\x20-\x7e\x80-\xff]*?)[ \t]*")


async def read_response(reader: asyncio.StreamReader, progress: list[float]
                        ) -> Response | None:
    """One response, strictly; None when the connection closed before its first byte.

    Raises Malformed on bytes HTTP/1.1 forbids, and asyncio.IncompleteReadError when
    the connection closed in the middle of a response (the proxy's way to fail one
    that had begun). Appends the time the final head arrived to ``progress``.
    """
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise
        except asyncio.LimitOverrunError as exc:
            raise Malformed("a response head over the reader's limit") from exc
        lines = head[:-4].split(b"\r\n")
        match = _STATUS_LINE.fullmatch(lines[0])
        if match is None:
            raise Malformed(f"status line {lines[0][:80]!r}")
        headers = []
        for line in lines[1:]:
            field_match = _HEADER.fullmatch(line)
            if field_match is None:
                raise Malformed(f"header line {line[:80]!r}")
            headers.append((field_match.group(1), field_match.group(2)))
        status = int(match.group(1))
        if status >= 200:
            break
    progress.append(time.monotonic())
    response = Response(status, headers, b"")
    te = response.header(b"transfer-encoding")
    length = response.header(b"content-length")
    if status in (204, 304):
        if te is not None:
            raise Malformed(f"{status} with Transfer-Encoding")
        return response
    if te is not None:
        if te.lower() != b"chunked" or length is not None:
            raise Malformed(f"Transfer-Encoding {te!r} (Content-Length {length!r})")
        response.body = await _read_chunked(reader)
    elif length is not None:
        if not length.isdigit():
            raise Malformed(f"Content-Length {length!r}")
        response.body = await reader.readexactly(int(length))
    else:
        response.body = await reader.read()  # framed by the close
    return response


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        line = (await reader.readuntil(b"\r\n"))[:-2]
        size_text = line.split(b";", 1)[0]
        if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size_text):
            raise Malformed(f"chunk size {line[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise Malformed("chunk not followed by CRLF")


# ---------------------------------------------------------------- the run


@dataclass
class FuzzTally:
    """What the clients saw, by outcome; ``failures`` keeps a few examples."""

    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    cases: int = 0

    def fail(self, kind: str, case: Case, detail: str) -> None:
        self.outcomes[kind] += 1
        if len(self.failures) < 20:
            self.failures.append(f"{kind}: case {case.number} {case.mutations or 'valid'} "
                                 f"after={case.after}: {detail}")

    @property
    def failed(self) -> int:
        return sum(n for kind, n in self.outcomes.items() if kind in FAILURES)


# Outcomes that are findings; the others are what a client may legitimately get.
FAILURES = frozenset({"malformed", "hang", "no-via", "mismatch"})


def judge(case: Case, response: Response, tally: FuzzTally) -> None:
    """Check one complete response against its case."""
    via = response.header(b"via") or b""
    if b"tulle" not in via:
        tally.fail("no-via", case, f"status {response.status} without the proxy's Via")
        return
    own = response.header(b"tulle-error") is not None
    if case.status is None:
        tally.outcomes["proxy-answered" if own else "forwarded"] += 1
        return
    if own and response.status >= 500:
        tally.outcomes["proxy-answered"] += 1  # e.g. a 5xx retried and then answered
        return
    if (response.status, response.body) != (case.status, case.body):
        tally.fail("mismatch", case, f"got {response.status} with {len(response.body)} bytes, "
                                     f"sent {case.status} with {len(case.body)}")
        return
    tally.outcomes["exact"] += 1


async def run_clients(port: int, numbers: range, concurrency: int, case_for: Callable[[int], Case],
                      tally: FuzzTally) -> None:
    """Send every case in ``numbers`` through the proxy on ``concurrency`` connections."""
    queue = iter(numbers)

    async def worker() -> None:
        reader = writer = None
        for number in queue:
            case = case_for(number)
            tally.cases += 1
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
            assert reader is not None
            writer.write(b"GET /case/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (number,
                                                                       SERVICE.encode()))
            started = time.monotonic()
            progress: list[float] = []
            try:
                response = await asyncio.wait_for(read_response(reader, progress), HANG_AFTER)
            except TimeoutError:
                tally.fail("hang", case, f"nothing for {time.monotonic() - started:.1f} s "
                                         f"({'after' if progress else 'before'} the head)")
                response = None
            except Malformed as exc:
                tally.fail("malformed", case, str(exc))
                response = None
            except (asyncio.IncompleteReadError, ConnectionError):
                tally.outcomes["cut"] += 1
                response = None
            else:
                if response is None:
                    tally.outcomes["closed"] += 1
                else:
                    judge(case, response, tally)
            if progress and time.monotonic() - progress[0] > REQUEST_TIMEOUT + 1.0:
                # The head went out, then the body waited on the upstream past the
                # request timeout: only the backend's close ended it.
                tally.outcomes["late-body"] += 1
            if response is None or (response.header(b"connection") or b"").lower() == b"close":
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
