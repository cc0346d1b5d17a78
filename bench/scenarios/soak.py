"""soak: ten minutes of steady mixed load with faults; the proxy's memory and fds over time.

A real ``tulle proxy`` in front of four endpoints (`bench.soak_backend`, one process
each), three quick and one 100 ms slow, under a steady mix of clients running in
this process:

- keep-alive clients, each sending small and 10 KB GETs one after another;
- clients that open a new connection for every request;
- bodies both ways: 64 KiB POSTs and 200 KB chunked answers;
- slow readers: 2 MB answers read 16 KiB at a time with pauses (back-pressure);
- resets: clients that send a request and abort the connection (RST), before or
  while the answer arrives.

Faults: every ``kill_every`` seconds one quick endpoint is killed (SIGKILL) and
started again ``down_for`` seconds later, in turn. The proxy's resident memory and
open descriptors are sampled every second; the result is their least-squares
slope after a warm-up (pools, caches and the allocator's arenas fill first), and
a plot over time with the kills marked. A proxy that leaks shows a slope that does
not round to zero; one that is flat shows noise around a level.

``python -m bench soak`` (``make soak``): 600 s. ``--quick``: 20 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from bench import fuzz_upstream
from bench.harness import Harness
from bench.peers import PeerFailed, start_tulle
from bench.processes import Started, free_ports, wait_until
from bench.report import Report, Table
from bench.resource_watch import ResourceWatch

DESCRIPTION = "10 minutes of mixed load with endpoint kills, resets and a slow endpoint"
TOOLS = ("tulle",)

SERVICE = "soak"
QUICK_NAMES = ("q1", "q2", "q3")
SLOW_NAME = "slow"
SLOW_DELAY_MS = 100


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup: float  # seconds left out of the slope fit
    kill_every: float
    down_for: float


FULL = Settings(seconds=600.0, warmup=60.0, kill_every=60.0, down_for=5.0)
QUICK = Settings(seconds=20.0, warmup=5.0, kill_every=8.0, down_for=3.0)

# (client kind, how many run at once)
MIX = {"keep-alive": 6, "new-connection": 2, "bodies": 2, "slow-reader": 2, "reset": 1}
PAUSE = 0.02  # seconds each client waits between its requests: steady, not flat out

MANIFEST = f"""\
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {{name: {SERVICE}}}
spec:
  endpoints:
{{endpoints}}
  timeouts: {{request: 10s}}
"""


@dataclass
class Tally:
    """Outcomes by client kind."""

    outcomes: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, kind: str, outcome: str) -> None:
        self.outcomes.setdefault(kind, Counter())[outcome] += 1


class Endpoints:
    """The soak's endpoint processes; the quick ones can be killed and restarted."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        names = (*QUICK_NAMES, SLOW_NAME)
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.processes: dict[str, Started] = {}
        self.generation = 0
        for name in names:
            self.start(name)
        for name in names:
            self.wait_listening(name)

    def manifest_lines(self) -> str:
        return "".join(f'    - {{address: "127.0.0.1:{port}"}}\n' for port in self.ports.values())

    def start(self, name: str) -> None:
        self.generation += 1
        argv = [sys.executable, "-m", "bench.soak_backend",
                "--listen", f"127.0.0.1:{self.ports[name]}"]  # fmt: skip
        if name == SLOW_NAME:
            argv += ["--delay-ms", str(SLOW_DELAY_MS)]
        self.processes[name] = self.harness.group.start(
            f"endpoint-{name}-{self.generation}", argv, self.harness.pinning.others)

    def wait_listening(self, name: str) -> None:
        def listening() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.ports[name]), timeout=0.5):
                return True
            return False

        if not wait_until(listening, 10.0):
            raise PeerFailed(f"endpoint {name} did not listen:\n"
                             + self.processes[name].log_tail())

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.popen.kill()
        process.popen.wait()
        self.harness.group.stop(process)


# ---------------------------------------------------------------- clients


def _request(path: str, body: bytes = b"", close: bool = False) -> bytes:
    method = b"POST" if body else b"GET"
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path.encode(), SERVICE.encode())
    if body:
        head += b"Content-Length: %d\r\n" % len(body)
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


async def _one(port: int, request: bytes, conn: list[asyncio.StreamReader | asyncio.StreamWriter]
               ) -> str:
    """Send ``request`` on the kept connection in ``conn`` (opened when empty)."""
    if not conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        conn[:] = [reader, writer]
    reader, writer = conn  # type: ignore[assignment]
    writer.write(request)  # type: ignore[union-attr]
    response = await asyncio.wait_for(fuzz_upstream.read_response(reader, []), 30)  # type: ignore[arg-type]
    if response is None:
        raise ConnectionResetError("closed before the answer")
    if (response.header(b"connection") or b"").lower() == b"close":
        writer.close()  # type: ignore[union-attr]
        conn.clear()
    return str(response.status)


async def _client(kind: str, number: int, port: int, until: float, tally: Tally) -> None:
    conn: list[asyncio.StreamReader | asyncio.StreamWriter] = []
    turn = 0
    while time.monotonic() < until:
        turn += 1
        try:
            if kind == "keep-alive":
                outcome = await _one(port, _request(f"/bytes/{100 if turn % 2 else 10_000}"),
                                     conn)
            elif kind == "new-connection":
                outcome = await _one(port, _request("/", close=True), [])
            elif kind == "bodies":
                request = (_request("/echo", body=b"b" * 65536) if turn % 2
                           else _request("/chunked/200000"))
                outcome = await _one(port, request, conn)
            elif kind == "slow-reader":
                outcome = await _slow_read(port)
            else:
                outcome = await _reset(port, turn)
        except (OSError, asyncio.IncompleteReadError, TimeoutError,
                fuzz_upstream.Malformed) as exc:
            outcome = type(exc).__name__
            for item in conn[1:]:
                item.close()  # type: ignore[union-attr]
            conn.clear()
        tally.add(kind, outcome)
        await asyncio.sleep(PAUSE)


async def _slow_read(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        writer.write(_request("/bytes/2000000", close=True))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        received = 0
        while True:
            piece = await asyncio.wait_for(reader.read(16384), 30)
            if not piece:
                break
            received += len(piece)
            await asyncio.sleep(0.05)
        status = head.split(b" ", 2)[1].decode()
        return status if received == 2_000_000 else f"{status}-short"
    finally:
        writer.close()


async def _reset(port: int, turn: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_request("/bytes/500000" if turn % 2 else "/"))
    if turn % 2:
        await asyncio.wait_for(reader.read(1000), 30)  # while the answer arrives
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    return "reset"


# ---------------------------------------------------------------- the run


@dataclass
class SoakResult:
    settings: Settings
    watch: ResourceWatch
    tally: Tally
    kills: list[tuple[float, str]]
    proxy_exit: int | None


def soak(harness: Harness, settings: Settings) -> SoakResult:
    endpoints = Endpoints(harness)
    manifest = MANIFEST.replace("{endpoints}", endpoints.manifest_lines())
    peer, _ = start_tulle(harness.group, harness.workdir, manifest, harness.pinning.proxy)
    assert peer.process is not None
    watch = ResourceWatch(peer.process.pid)
    tally = Tally()
    kills: list[tuple[float, str]] = []

    async def faults(until: float) -> None:
        turn = 0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(settings.kill_every)
            if time.monotonic() + settings.down_for >= until:
                return
            name = QUICK_NAMES[turn % len(QUICK_NAMES)]
            turn += 1
            kills.append((time.monotonic() - watch.started, name))
            endpoints.kill(name)
            await asyncio.sleep(settings.down_for)
            endpoints.start(name)
            await loop.run_in_executor(None, endpoints.wait_listening, name)

    async def sample(until: float) -> None:
        while time.monotonic() < until:
            watch.take()
            await asyncio.sleep(1.0)

    async def go() -> None:
        until = time.monotonic() + settings.seconds
        watch.started = time.monotonic()
        tasks = [asyncio.create_task(faults(until)), asyncio.create_task(sample(until))]
        clients = [_client(kind, n, peer.port, until, tally)
                   for kind, count in MIX.items() for n in range(count)]
        progress = asyncio.create_task(_progress(harness, watch, settings.seconds))
        await asyncio.gather(*clients)
        for task in (*tasks, progress):
            task.cancel()
        watch.take()

    asyncio.run(go())
    exit_code = peer.process.popen.poll()
    return SoakResult(settings, watch, tally, kills, exit_code)


async def _progress(harness: Harness, watch: ResourceWatch, seconds: float) -> None:
    while True:
        await asyncio.sleep(60)
        last = watch.samples[-1] if watch.samples else None
        if last is not None:
            harness.log(f"soak: {last.at:.0f}/{seconds:.0f} s, RSS {last.rss_kib / 1024:.1f} "
                        f"MiB, {last.fds} fds")


def run(harness: Harness, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    result = soak(harness, settings)
    image = plot(result, harness.results_dir / "soak.png") if not quick else None
    return build_report(result, image)


def plot(result: SoakResult, path: Path) -> str:
    samples = result.watch.samples
    fig = Figure(figsize=(10, 5))
    rss_axis = fig.subplots()
    minutes = [s.at / 60 for s in samples]
    rss_axis.plot(minutes, [s.rss_kib / 1024 for s in samples], color="#4c72b0",
                  label="RSS (MiB)")
    rss_axis.set_xlabel("minutes")
    rss_axis.set_ylabel("RSS (MiB)", color="#4c72b0")
    rss_axis.set_ylim(bottom=0)
    fd_axis = rss_axis.twinx()
    fd_axis.plot(minutes, [s.fds for s in samples], color="#dd8452", label="open fds")
    fd_axis.set_ylabel("open fds", color="#dd8452")
    fd_axis.set_ylim(bottom=0)
    for at, name in result.kills:
        rss_axis.axvline(at / 60, color="#999999", linestyle=":", linewidth=1)
        rss_axis.text(at / 60, 1, f"kill {name}", rotation=90, fontsize=7, color="#666666")
    rss_axis.axvspan(0, result.settings.warmup / 60, color="#eeeeee")
    fig.suptitle("tulle proxy under the soak: memory and descriptors (grey: warm-up)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path.name


def build_report(result: SoakResult, image: str | None) -> Report:
    watch, settings = result.watch, result.settings
    after = watch.after(settings.warmup) or watch.samples
    rss_slope = watch.rss_slope_kib_per_min(settings.warmup) / 1024
    fd_slope = watch.fd_slope_per_min(settings.warmup)
    resources = Table(
        "Proxy resources",
        ["measure", "after warm-up", "at the end", "min", "max", "slope after warm-up",
         "over 10 min at that slope"],
        [
            ["RSS (MiB)", f"{after[0].rss_kib / 1024:.1f}", f"{after[-1].rss_kib / 1024:.1f}",
             f"{min(s.rss_kib for s in after) / 1024:.1f}",
             f"{max(s.rss_kib for s in after) / 1024:.1f}", f"{rss_slope:+.3f} MiB/min",
             f"{rss_slope * 10:+.1f} MiB"],
            ["open fds", str(after[0].fds), str(after[-1].fds), str(min(s.fds for s in after)),
             str(max(s.fds for s in after)), f"{fd_slope:+.3f} /min", f"{fd_slope * 10:+.1f}"],
        ],
        note=f"Sampled every second; slope: least squares over the {len(after)} samples "
             f"after the first {settings.warmup:g} s.",
    )
    load = Table("Load, by client kind", ["client", "requests", "outcomes"])
    for kind, outcomes in result.tally.outcomes.items():
        load.rows.append([kind, f"{sum(outcomes.values()):,}",
                          ", ".join(f"{k} {n:,}" for k, n in outcomes.most_common())])
    notes = [
        f"Clients at once: {', '.join(f'{k} {n}' for k, n in MIX.items())}, each pausing "
        f"{PAUSE * 1000:g} ms between requests; endpoints {', '.join(QUICK_NAMES)} quick, "
        f"{SLOW_NAME} {SLOW_DELAY_MS} ms slow.",
        "Kills (SIGKILL, restarted after "
        f"{settings.down_for:g} s): "
        + (", ".join(f"{name} at {at:.0f} s" for at, name in result.kills) or "none"),
        "Outcomes other than 200 come from the kills (a request on a connection the "
        "kernel reset mid-answer; 502/503 while the endpoint is down and not yet "
        "ejected), from the resets (`reset`: the client's own abort) and from slow "
        "readers cut short.",
        "The proxy " + ("ran to the end." if result.proxy_exit is None
                        else f"exited with {result.proxy_exit} during the run."),
    ]
    return Report(
        scenario="soak",
        title="Soak: steady mixed load with faults, memory and descriptors over time",
        description=(
            "A real `tulle proxy` in front of four endpoints (three quick, one 100 ms "
            "slow) under a steady mix of keep-alive clients, new connections, 64 KiB "
            "uploads and 200 KB chunked downloads, slow readers of 2 MB answers and "
            "clients that reset their connection, while quick endpoints are killed and "
            "restarted in turn. The proxy's RSS and open descriptors are sampled every "
            "second; the slope after the warm-up says whether anything grows."
        ),
        tables=[resources, load],
        images=[image] if image else [],
        notes=notes,
    )
